/// How one epoch's samples become steps and how each step's global batch splits across ranks.
///
/// Every rank computes the same permutation of the training set from (seed, epoch), so no data
/// moves between ranks. Step s covers positions [s·B, min((s+1)·B, n)) of the permutation;
/// rank r takes positions r, r + N, r + 2N, … of that range. The union over ranks is exactly
/// the batch one process would see, and a batch not divisible by N splits as evenly as possible.
///
/// With `training.accumulate_steps: K` a step's B = K × b samples pass through the network as
/// K micro-batches of b (the last step's last one may be smaller): micro-batch k covers
/// positions [s·B + k·b, s·B + (k + 1)·b), split over the ranks the same way.
///
/// With `distributed.deterministic` (`VirtualShards`) a rank takes the same positions, ordered
/// by virtual shard: shard v of a step holds positions v, v + V, …, rank r owns shards r,
/// r + N, …, and each shard's rows are contiguous in the rank's batch.
public struct BatchPlan: Sendable {
    public let sampleCount: Int
    /// Samples per optimizer step (all micro-batches, all ranks).
    public let globalBatch: Int
    /// Samples per forward and backward pass over all ranks: the global batch without accumulation.
    public let microBatch: Int
    public let ranks: Int
    public let rank: Int
    public let stepsPerEpoch: Int
    /// V under `distributed.deterministic`; nil without.
    public let virtualShards: Int?

    public init(sampleCount: Int, loop: LoopConfig, ranks: Int, rank: Int, virtualShards: Int? = nil) throws {
        self.virtualShards = virtualShards
        self.sampleCount = sampleCount
        self.ranks = ranks
        self.rank = rank
        // The config bounds batch_size × accumulate_steps; × ranks (batch_size_per_rank) is checked here.
        let micro = (loop.batchSizePerRank ?? loop.batchSize).multipliedReportingOverflow(by: loop.batchSizePerRank == nil ? 1 : ranks)
        let global = micro.partialValue.multipliedReportingOverflow(by: loop.accumulateSteps)
        guard !micro.overflow, !global.overflow, global.partialValue <= Int(Int32.max) else {
            throw DDPError(.config, "training.batch_size_per_rank × \(ranks) ranks × training.accumulate_steps is more than \(Int32.max) samples a step")
        }
        microBatch = micro.partialValue
        globalBatch = global.partialValue
        stepsPerEpoch = sampleCount / globalBatch + (loop.dropLast || sampleCount % globalBatch == 0 ? 0 : 1)
        guard stepsPerEpoch > 0 else {
            let key = (loop.batchSizePerRank == nil ? "training.batch_size" : "training.batch_size_per_rank × \(ranks) ranks")
                + (loop.accumulateSteps > 1 ? " × training.accumulate_steps =" : " =")
            throw DDPError(.config, "\(key) \(globalBatch) with training.drop_last leaves no step for \(sampleCount) training samples")
        }
    }

    /// The most rows any rank holds in one forward pass.
    public var maxLocalBatch: Int { (microBatch + ranks - 1) / ranks }

    /// Samples in step `step` over all ranks.
    public func globalCount(step: Int) -> Int {
        min(globalBatch, sampleCount - step * globalBatch)
    }

    /// Forward and backward passes in step `step`.
    public func microBatches(step: Int) -> Int {
        (globalCount(step: step) + microBatch - 1) / microBatch
    }

    /// The fewest samples any forward pass of an epoch sees over all ranks (BatchNorm's
    /// statistics are per pass).
    public var smallestMicroBatch: Int {
        let last = stepsPerEpoch - 1
        return min(microBatch, globalCount(step: last) - (microBatches(step: last) - 1) * microBatch)
    }

    /// Fills `rows` with this rank's dataset rows for micro-batch `micro` of `step` and returns
    /// how many. With virtual shards, in shard order, each shard's first row into `shardStarts`
    /// (V/N + 1 entries, the last the count).
    public func localRows(step: Int, micro: Int = 0, order: UnsafePointer<Int32>, into rows: UnsafeMutablePointer<Int32>,
                          shardStarts: UnsafeMutablePointer<Int>? = nil) -> Int {
        var count = 0
        if let virtualShards, let shardStarts {
            let stepStart = step * globalBatch, start = stepStart + micro * microBatch
            let end = min(start + microBatch, stepStart + globalCount(step: step))
            for local in 0..<(virtualShards / ranks) {
                shardStarts[local] = count
                for position in stride(from: start + rank + local * ranks, to: end, by: virtualShards) {
                    rows[count] = order[position]
                    count += 1
                }
            }
            shardStarts[virtualShards / ranks] = count
            return count
        }
        for position in localPositions(step: step, micro: micro) {
            rows[count] = order[position]
            count += 1
        }
        return count
    }

    /// This rank's positions in the epoch's permutation for micro-batch `micro` of `step`.
    public func localPositions(step: Int, micro: Int = 0) -> StrideTo<Int> {
        let stepStart = step * globalBatch, start = stepStart + micro * microBatch
        return stride(from: start + rank, to: min(start + microBatch, stepStart + globalCount(step: step)), by: ranks)
    }

    /// The positions of the pass after micro-batch `micro` of `step` (the next step's first),
    /// for prefetching; nil after the epoch's last.
    public func nextPositions(step: Int, micro: Int) -> StrideTo<Int>? {
        if micro + 1 < microBatches(step: step) { return localPositions(step: step, micro: micro + 1) }
        return step + 1 < stepsPerEpoch ? localPositions(step: step + 1) : nil
    }

    /// The epoch's permutation of 0..<n (Fisher–Yates keyed by (seed, epoch)), or the identity.
    public static func fillOrder(_ order: UnsafeMutableBufferPointer<Int32>, seed: UInt64, epoch: Int, shuffle: Bool) {
        for i in order.indices { order[i] = Int32(i) }
        guard shuffle, order.count > 1 else { return }
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            let j = Int(CounterRandom.bits(seed, .shuffle, UInt64(epoch), UInt64(i)) % UInt64(i + 1))
            order.swapAt(i, j)
        }
    }
}
