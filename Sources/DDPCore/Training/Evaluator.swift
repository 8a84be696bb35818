/// Loss and accuracy of the network in inference mode over a whole dataset, sharded across
/// ranks (rank r evaluates rows r, r + N, …) and reduced with one allreduce, so every rank
/// gets the same full-dataset figures. Inference has no collective inside the layers, so
/// ranks may hold different row counts. In the deterministic mode (`VirtualShards`) the rows
/// go in fixed chunks instead, whose sums add in chunk order whatever np.
public final class Evaluator {
    /// Rows per inference pass: 1024 (bigger GEMMs than a training batch, 1.3× on the MLP),
    /// fewer where a sample's activations and workspace are large (a CNN's: about 16 MiB of
    /// floats a chunk), never fewer than 64.
    public static func chunk(for model: ModelConfig) -> Int {
        min(1024, max(64, (1 << 22) / max(1, model.floatsPerSample())))
    }

    /// The most classes a confusion matrix is counted for (10,000² doubles: 800 MB); beyond it
    /// `evaluate` counts none, and the config refuses metrics that need one.
    public static let maximumConfusionClasses = 10_000

    /// Rows per inference pass of this evaluator's network.
    public let chunk: Int

    let network: Network
    let loss: Loss
    /// w_c per class (`loss.class_weight`): the mean loss is Σ w·ℓ / Σ w. Empty without.
    let classWeights: [Float]
    let context: StepContext
    private let labels: UnsafeMutableBufferPointer<Float>
    private let totals: UnsafeMutableBufferPointer<Double>
    /// (label, predicted) counts, classes × classes row-major; allocated by the first
    /// evaluation that counts them, zeroed by each.
    private var confusionCounts = UnsafeMutableBufferPointer<Double>(start: nil, count: 0)

    /// What `evaluate` measured over a dataset, the same on every rank.
    public struct Evaluation: Sendable {
        /// Mean loss, penalties included.
        public var loss: Double
        public var accuracy: Double?
        /// With `topK` > 0: the share of samples whose label is among the k largest logits.
        public var topKAccuracy: Double?
        /// With `countConfusion` and a classifier: rows the true class, columns the predicted one.
        public var confusion: [[Int]]?
    }

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
        confusionCounts.deallocate()
    }

    /// Mean loss (including the kernel/bias penalties, as Keras reports val_loss) and accuracy.
    /// With `countConfusion`, for a classifier (`Loss.confusionClasses`), it also counts each
    /// sample at (its label, the class predicted), summed over the ranks (`ClassificationReport`).
    /// With `topK` > 0 it also returns the top-k accuracy (see `ValidationMetrics`).
    public func evaluate(_ data: Dataset, transform: FeatureTransform, countConfusion: Bool = false,
                         topK: Int = 0) throws -> Evaluation {
        let classes = countConfusion ? loss.confusionClasses(width: network.outputWidth).flatMap { $0 <= Self.maximumConfusionClasses ? $0 : nil } : nil
        if let classes {
            if confusionCounts.count != classes * classes {
                confusionCounts.deallocate()
                confusionCounts = .allocate(capacity: classes * classes)
            }
            confusionCounts.initialize(repeating: 0)
        }
        let confusion = classes == nil ? nil : confusionCounts
        let communicator = context.communicator
        let wasTraining = context.training
        context.training = false
        defer { context.training = wasTraining }
        var lossSum = 0.0, correct = 0.0, count = 0, weightSum = 0.0, activitySum = 0.0, topKHits = 0.0
        /// The rows `context.sampleRows[0..<batch]`: their (loss, Σ w_y, activity) sums.
        func evaluateRows(_ batch: Int) throws -> (loss: Double, weight: Double, activity: Double) {
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
            if let confusion, let classes {
                for row in 0..<batch {
                    let predicted = loss.predictedClass(network.output + row * network.outputWidth, width: network.outputWidth)
                    let label = Int(labels[row])
                    if label >= 0 && label < classes { confusion[label * classes + predicted] += 1 }
                }
            }
            correct += result.correct
            count += batch
            return (result.lossSum, result.weightSum, activity)
        }
        if context.shards != nil {
            // Deterministic mode: fixed chunks of consecutive rows, chunk j on rank j mod N, and
            // each chunk's sums in slots of their own, added in chunk order after the allreduce
            // (each value has one non-zero contributor), so the figures do not depend on np.
            let chunks = (data.count + chunk - 1) / chunk
            var partials = [Double](repeating: 0, count: 3 * chunks)
            for index in stride(from: communicator.rank, to: chunks, by: communicator.size) {
                let first = index * chunk, batch = min(chunk, data.count - first)
                for row in 0..<batch { context.sampleRows[row] = Int32(first + row) }
                let sums = try evaluateRows(batch)
                partials[3 * index] = sums.loss
                partials[3 * index + 1] = sums.weight
                partials[3 * index + 2] = sums.activity
            }
            try partials.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
            for index in 0..<chunks {
                lossSum += partials[3 * index]
                weightSum += partials[3 * index + 1]
                activitySum += partials[3 * index + 2]
            }
        } else {
            var position = communicator.rank
            let stride = communicator.size
            while position < data.count {
                var batch = 0
                while batch < chunk && position < data.count {
                    context.sampleRows[batch] = Int32(position)
                    batch += 1
                    position += stride
                }
                let sums = try evaluateRows(batch)
                lossSum += sums.loss
                weightSum += sums.weight
                activitySum += sums.activity
            }
        }
        let deterministic = context.shards != nil
        totals[0] = deterministic && !communicator.isRoot ? 0 : lossSum
        totals[1] = correct
        totals[2] = Double(count)
        totals[3] = deterministic && !communicator.isRoot ? 0 : weightSum
        totals[4] = deterministic && !communicator.isRoot ? 0 : activitySum
        totals[5] = topKHits
        try communicator.allreduceSum(totals)
        if let confusion { try communicator.allreduceSum(confusion) }
        let n = max(totals[2], 1)
        // The losses over Σ w_y (the count without class weights); the activity penalties, a
        // sum over samples, over the count.
        let meanLoss = totals[3] > 0 ? totals[0] / totals[3] : 0
        return Evaluation(loss: meanLoss + totals[4] / n + network.weightPenalty(), accuracy: loss.hasAccuracy ? totals[1] / n : nil,
                          topKAccuracy: topK > 0 ? totals[5] / n : nil,
                          confusion: classes.map { c in (0..<c).map { row in (0..<c).map { Int(confusionCounts[row * c + $0]) } } })
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
