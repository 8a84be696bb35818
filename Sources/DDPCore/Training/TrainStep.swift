/// One optimizer step on one rank, a call per phase in the order llm.c's loop reads:
///
///     gather   this rank's rows of the micro-batch → network.input, labels (normalized,
///              augmented; the next pass's rows prefetched)
///     forward  (SyncBatchNorm: one allreduce per BN layer)
///     loss     d(Σ per-sample losses)/d(output) × 1/(global batch size), or with class
///              weights × 1/(the global batch's Σ w_y)
///     backward adds into the gradients (on the step's last micro-batch it tells the sync
///              which gradients are final, so it may start reducing them)
///     … gather, forward, loss, backward again for each further micro-batch
///              (`training.accumulate_steps`; one without)
///     sync     the mean gradient and the step's totals agreed on every rank
///     update   penalties, clipping, the optimizer (and, sharded, the parameters made whole)
///
/// Accumulated, every micro-batch's gradient is scaled by 1/(the whole step's count), so the
/// summed gradient is the one of the step's mean loss: without BatchNorm, K micro-batches of b
/// take the step of one batch of K·b. BatchNorm normalizes each micro-batch by its own
/// statistics and updates its running ones once per micro-batch, as torch (and Lightning's
/// accumulate_grad_batches) do. Dropout masks and augmentation are keyed by sample and epoch,
/// so they do not change with K.
///
/// The global batch's size is known up front from the plan, so scaling each rank's gradient by
/// 1/(global count) and summing over ranks gives the gradient of the global mean loss: N ranks
/// compute the step of one process with the same global batch. So is its Σ w_y under class
/// weights: every rank holds the training labels and the epoch's order, and sums the weights
/// of the whole global batch in position order, the same bits on every rank and at any np.
///
/// Nothing here watches the step: `StepObserver` is told where each phase ends. Every buffer
/// is allocated once, in `init`.
final class TrainStep {
    let network: Network
    let sync: GradientSync
    let plan: BatchPlan
    let context: StepContext
    private let loss: Loss
    private let data: RunData
    /// `data.augment`, applied to each gathered training batch; nil without one.
    private let augmentation: Augmentation?
    private let labels: UnsafeMutableBufferPointer<Float>
    /// w_c per class (`loss.class_weight`); empty without.
    private let classWeights: [Float]

    init(network: Network, sync: GradientSync, plan: BatchPlan, context: StepContext, loss: Loss, data: RunData,
         augmentation: Augmentation?, classWeights: [Float] = []) {
        self.classWeights = classWeights
        self.network = network
        self.sync = sync
        self.plan = plan
        self.context = context
        self.loss = loss
        self.data = data
        self.augmentation = augmentation
        labels = .allocate(capacity: max(network.maxBatch, 1))
        labels.initialize(repeating: 0)
    }

    deinit { labels.deallocate() }

    /// Step `step` of `epoch` (0-based) over the epoch's permutation `order`, the run's
    /// `globalStep`-th, at learning rate `lr`. Returns the totals every rank agreed on; when
    /// they are non-finite the update was not applied, and the caller ends the run.
    @inline(__always)
    func run(step: Int, epoch: Int, order: UnsafePointer<Int32>, globalStep: Int, lr: Float,
             observer: StepObserver) throws -> StepTotals {
        context.globalStep = globalStep
        let count = plan.globalCount(step: step)
        let weightSum = classWeights.isEmpty ? Double(count) : globalWeightSum(step: step, order: order)
        // The loss's mean divides by Σ w_y; the activity penalties' (a sum over samples) by the count.
        let perSample = 1 / Float(count)
        let scale: Float = classWeights.isEmpty ? perSample : (weightSum > 0 ? Float(1 / weightSum) : 0)
        network.zeroGradients()
        var lossSum = 0.0, correct = 0.0, activity = 0.0, samples = 0
        let passes = plan.microBatches(step: step)
        context.shards?.beginStep()
        for micro in 0..<passes {
            context.shards?.microBatch = micro
            context.shards?.lastMicroBatch = micro == passes - 1
            let batch = gather(step: step, micro: micro, epoch: epoch, order: order)
            observer.ended(.data)
            activity += try network.forward(batch: batch, context: context)
            let result = lossAndGradient(batch: batch, scale: scale)
            observer.ended(.forward)
            try backward(batch: batch, scale: perSample, final: micro == passes - 1)
            observer.ended(.backward)
            lossSum += result.lossSum
            correct += result.correct
            samples += batch
        }
        if let shards = context.shards { (lossSum, activity) = shards.foldLoss() }
        var totals = try sync.reduce(lossSum: lossSum, activity: activity, samples: samples, correct: correct,
                                     nonFinite: !(lossSum + activity).isFinite, stop: observer.preemptionRequested)
        // Weighted, the step's loss is Σ w·ℓ / Σ w (torch's batch loss); the totals report it per
        // sample, as the epoch loss averages steps by their sample counts.
        if !classWeights.isEmpty { totals.lossSum = weightSum > 0 ? totals.lossSum * Double(count) / weightSum : 0 }
        totals.lossSum += totals.activity
        guard !totals.nonFinite else { return totals }
        if capturesEpochGradient && step + 1 == plan.stepsPerEpoch { epochGradient = try sync.gatherGradient() }
        try sync.update(lr: lr)
        observer.ended(.update)
        return totals
    }

    /// This rank's rows of micro-batch `micro` → network.input and labels; returns how many.
    @inline(__always)
    private func gather(step: Int, micro: Int, epoch: Int, order: UnsafePointer<Int32>) -> Int {
        let batch = plan.localRows(step: step, micro: micro, order: order, into: context.sampleRows,
                                   shardStarts: context.shards?.rowStarts)
        data.train.gather(rows: context.sampleRows, count: batch, transform: data.transform,
                          inputs: network.input.baseAddress!, labels: labels.baseAddress!)
        augmentation?.apply(rows: context.sampleRows, count: batch, epoch: epoch, inputs: network.input.baseAddress!)
        if let next = plan.nextPositions(step: step, micro: micro) { data.train.prefetch(rows: order, positions: next) }
        return batch
    }

    /// The loss's per-sample sum, and its gradient scaled to the global mean into the network's
    /// output gradient. With virtual shards, per shard, each shard's sum into its partial.
    @inline(__always)
    private func lossAndGradient(batch: Int, scale: Float) -> (lossSum: Double, correct: Double) {
        classWeights.withUnsafeBufferPointer { weights in
            let width = network.outputWidth, weights = weights.isEmpty ? nil : weights.baseAddress
            guard let shards = context.shards else {
                let result = loss.evaluate(output: network.output, labels: labels.baseAddress!, batch: batch, width: width,
                                           gradient: network.outputGradient, gradientScale: scale, classWeights: weights)
                return (result.lossSum, result.correct)
            }
            var lossSum = 0.0, correct = 0.0
            for shard in 0..<shards.local {
                let rows = shards.rows(shard), offset = rows.lowerBound * width
                let result = loss.evaluate(output: network.output + offset, labels: labels.baseAddress! + rows.lowerBound, batch: rows.count,
                                           width: width, gradient: network.outputGradient + offset, gradientScale: scale, classWeights: weights)
                shards.lossPartials[shard] += result.lossSum
                lossSum += result.lossSum
                correct += result.correct
            }
            return (lossSum, correct)
        }
    }

    /// Σ w_y over the whole global batch of `step`, in position order.
    private func globalWeightSum(step: Int, order: UnsafePointer<Int32>) -> Double {
        let start = step * plan.globalBatch
        var sum = 0.0
        data.train.labels.withUnsafeBufferPointer { labels in
            classWeights.withUnsafeBufferPointer { weights in
                for position in start..<(start + plan.globalCount(step: step)) {
                    sum += Double(weights[loss.weightClass(label: labels[Int(order[position])])])
                }
            }
        }
        return sum
    }

    /// `final`: the step's last micro-batch, whose finished gradients the sync may begin reducing.
    @inline(__always)
    private func backward(batch: Int, scale: Float, final: Bool) throws {
        try network.backward(batch: batch, context: context, gradientScale: scale) { if final { try sync.gradientsReady(from: $0) } }
    }

    // MARK: The epoch's gradient, for TensorBoard's histograms

    /// `logging.histograms`: the epoch's last step gathers its gradient to rank 0 between
    /// `reduce` and `update`, where every sync still holds it unclipped and undecayed (a
    /// collective: the flag and the step are the same on every rank). Off, no step gathers.
    var capturesEpochGradient = false
    /// Rank 0, capturing: the reduced gradient of the latest epoch's last step
    /// (`GradientSync.gatherGradient`); nil on the other ranks and when not capturing.
    private(set) var epochGradient: [Float]?
}
