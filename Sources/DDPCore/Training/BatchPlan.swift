/// How one epoch's samples become steps and how each step's global batch splits across ranks.
///
/// Every rank computes the same permutation of the training set from (seed, epoch), so no data
/// moves between ranks. Step s covers positions [s·B, min((s+1)·B, n)) of the permutation;
/// rank r takes positions r, r + N, r + 2N, … of that range. The union over ranks is exactly
/// the batch one process would see, and a batch not divisible by N splits as evenly as possible.
public struct BatchPlan: Sendable {
    public let sampleCount: Int
    public let globalBatch: Int
    public let ranks: Int
    public let rank: Int
    public let stepsPerEpoch: Int

    public init(sampleCount: Int, loop: LoopConfig, ranks: Int, rank: Int) throws {
        self.sampleCount = sampleCount
        self.ranks = ranks
        self.rank = rank
        globalBatch = loop.batchSizePerRank.map { $0 * ranks } ?? loop.batchSize
        stepsPerEpoch = loop.dropLast ? sampleCount / globalBatch : (sampleCount + globalBatch - 1) / globalBatch
        guard stepsPerEpoch > 0 else {
            let key = loop.batchSizePerRank == nil ? "training.batch_size" : "training.batch_size_per_rank × \(ranks) ranks ="
            throw DDPError(.config, "\(key) \(globalBatch) with training.drop_last leaves no step for \(sampleCount) training samples")
        }
    }

    /// The most rows any rank holds in one step.
    public var maxLocalBatch: Int { (globalBatch + ranks - 1) / ranks }

    /// Samples in step `step` over all ranks.
    public func globalCount(step: Int) -> Int {
        min(globalBatch, sampleCount - step * globalBatch)
    }

    /// Fills `rows` with this rank's dataset rows for `step` and returns how many.
    public func localRows(step: Int, order: UnsafePointer<Int32>, into rows: UnsafeMutablePointer<Int32>) -> Int {
        var count = 0
        for position in localPositions(step: step) {
            rows[count] = order[position]
            count += 1
        }
        return count
    }

    /// This rank's positions in the epoch's permutation for `step`.
    public func localPositions(step: Int) -> StrideTo<Int> {
        let start = step * globalBatch
        return stride(from: start + rank, to: start + globalCount(step: step), by: ranks)
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
