/// Loss and accuracy of the network in inference mode over a whole dataset, sharded across
/// ranks (rank r evaluates rows r, r + N, …) and reduced with one allreduce, so every rank
/// gets the same full-dataset figures. Inference has no collective inside the layers, so
/// ranks may hold different row counts.
public final class Evaluator {
    /// Rows per inference pass: 1024 (bigger GEMMs than a training batch, 1.3× on the MLP),
    /// fewer where a sample's activations and workspace are large (a CNN's: about 16 MiB of
    /// floats a chunk), never fewer than 64.
    public static func chunk(for model: ModelConfig) -> Int {
        min(1024, max(64, (1 << 22) / max(1, model.floatsPerSample())))
    }

    /// Rows per inference pass of this evaluator's network.
    public let chunk: Int

    let network: Network
    let loss: Loss
    /// w_c per class (`loss.class_weight`): the mean loss is Σ w·ℓ / Σ w. Empty without.
    let classWeights: [Float]
    let context: StepContext
    private let labels: UnsafeMutableBufferPointer<Float>
    private let totals: UnsafeMutableBufferPointer<Double>

    public init(network: Network, loss: Loss, context: StepContext, classWeights: [Float] = []) {
        self.network = network
        self.loss = loss
        self.classWeights = classWeights
        self.context = context
        // No more rows than the context's sample rows hold (the trainer's hold a whole chunk).
        chunk = min(Self.chunk(for: network.config), context.maxBatch)
        network.reserve(maxBatch: chunk)
        labels = .allocate(capacity: max(network.maxBatch, chunk))
        labels.initialize(repeating: 0)
        totals = .allocate(capacity: 6)
        totals.initialize(repeating: 0)
    }

    deinit {
        labels.deallocate()
        totals.deallocate()
    }

    /// Mean loss (including the kernel/bias penalties, as Keras reports val_loss) and accuracy.
    /// Given `confusion` (classes × classes, zeroed), it also counts each sample at (its label,
    /// the class predicted), summed over the ranks (`ddp eval`'s `ClassificationReport`).
    /// With `topK` > 0 it also returns the top-k accuracy (see `ValidationMetrics`).
    public func evaluate(_ data: Dataset, transform: FeatureTransform, confusion: UnsafeMutableBufferPointer<Double>? = nil,
                         topK: Int = 0) throws -> (loss: Double, accuracy: Double?, topKAccuracy: Double?) {
        let communicator = context.communicator
        let wasTraining = context.training
        context.training = false
        defer { context.training = wasTraining }
        var lossSum = 0.0, correct = 0.0, count = 0, weightSum = 0.0, activitySum = 0.0, topKHits = 0.0
        var position = communicator.rank
        let stride = communicator.size
        while position < data.count {
            var batch = 0
            while batch < chunk && position < data.count {
                context.sampleRows[batch] = Int32(position)
                batch += 1
                position += stride
            }
            data.gather(rows: context.sampleRows, count: batch, transform: transform,
                        inputs: network.input.baseAddress!, labels: labels.baseAddress!)
            let activity = try network.forward(batch: batch, context: context)
            let result = classWeights.withUnsafeBufferPointer { weights in
                loss.evaluate(output: network.output, labels: labels.baseAddress!, batch: batch, width: network.outputWidth,
                              gradient: nil, classWeights: weights.isEmpty ? nil : weights.baseAddress)
            }
            if topK > 0 {
                let width = network.outputWidth
                for row in 0..<batch {
                    let z = network.output + row * width, target = z[Int(labels[row])]
                    var above = 0
                    for j in 0..<width where z[j] > target { above += 1 }
                    if above < topK { topKHits += 1 }
                }
            }
            if let confusion {
                let classes = Int(Double(confusion.count).squareRoot())
                for row in 0..<batch {
                    let predicted = loss.predictedClass(network.output + row * network.outputWidth, width: network.outputWidth)
                    let label = Int(labels[row])
                    if label >= 0 && label < classes { confusion[label * classes + predicted] += 1 }
                }
            }
            lossSum += result.lossSum
            activitySum += activity
            correct += result.correct
            count += batch
            weightSum += result.weightSum
        }
        totals[0] = lossSum
        totals[1] = correct
        totals[2] = Double(count)
        totals[3] = weightSum
        totals[4] = activitySum
        totals[5] = topKHits
        try communicator.allreduceSum(totals)
        if let confusion { try communicator.allreduceSum(confusion) }
        let n = max(totals[2], 1)
        // The losses over Σ w_y (the count without class weights); the activity penalties, a
        // sum over samples, over the count.
        let meanLoss = totals[3] > 0 ? totals[0] / totals[3] : 0
        return (meanLoss + totals[4] / n + network.weightPenalty(), loss.hasAccuracy ? totals[1] / n : nil,
                topK > 0 ? totals[5] / n : nil)
    }

    /// Predictions for `rows` rows of already-normalized inputs, in inference mode (single process).
    public func predict(inputs: UnsafePointer<Float>, rows: Int, into output: UnsafeMutablePointer<Float>) throws {
        let wasTraining = context.training
        context.training = false
        defer { context.training = wasTraining }
        var start = 0
        while start < rows {
            let batch = min(chunk, rows - start)
            network.input.baseAddress!.update(from: inputs + start * network.inputWidth, count: batch * network.inputWidth)
            try network.forward(batch: batch, context: context)
            (output + start * network.outputWidth).update(from: network.output, count: batch * network.outputWidth)
            start += batch
        }
    }
}
