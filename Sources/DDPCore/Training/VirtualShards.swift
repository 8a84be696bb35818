/// `distributed.deterministic`: the same bits at any rank count.
///
/// Float sums depend on their order, and the order in which a data-parallel step sums its
/// samples changes with the rank count: each rank's GEMM sums its own rows, then the ranks'
/// sums are added. So np = 1 and np = N agree only to rounding, which Adam turns into
/// full-size steps where a gradient is near zero. Here every global batch is split into V
/// fixed virtual shards instead (V = `distributed.virtual_shards`, a power of two):
///
///     shard v of a step holds its positions v, v + V, v + 2V, …
///     rank r of N (N divides V) owns shards r, r + N, r + 2N, … (its positions are then
///       r, r + N, …, the same rows as without shards), each shard's rows contiguous in its
///       local batch
///     every GEMM runs per shard (Dense, Conv2D), and every sum over samples is taken per
///       shard, so a shard's partial sums have the same shapes and order on any rank (loops
///       that only map rows to rows run once over the rank's batch)
///     shard sums combine in one fixed tree over the shard index v, the even/odd split
///       applied recursively:  F(v ∈ S) = F(even positions of S) + F(odd positions of S)
///
/// That tree is the same however the shards are spread: rank r's shards are exactly the
/// subtree whose low log₂N bits of v equal r, so a rank folds its own shards locally with the
/// same rule, and the N rank totals fold with it again over r. (Float addition is
/// commutative, so only the tree's shape matters.) Each shard's gradients sum its passes in
/// order under `training.accumulate_steps`, then fold locally layer by layer (`Network`), then
/// over ranks in the sync (`Optimizer.GradientSource`); small sums (BatchNorm's
/// statistics, the loss) reach every rank exactly, through an allreduce in which each value
/// has one non-zero contributor (x + 0 = x, in any order), and each rank folds them alike.
///
/// The guarantee covers the same config, seed, data, library versions and OpenBLAS kernel
/// table: GEMM results depend on the kernels and on BLAS threading, so OpenBLAS runs one
/// thread per rank in this mode, and the run header and the checkpoint name the kernels.
public final class VirtualShards {
    /// V: virtual shards per global batch.
    public let count: Int
    public let ranks: Int
    public let rank: Int
    /// Shards this rank owns: V / N.
    public let local: Int
    let communicator: Communicator
    /// Where local shard i's rows start in the current pass's local batch: `local + 1`
    /// entries, the last the batch's size (`BatchPlan.localRows` fills them).
    public let rowStarts: UnsafeMutablePointer<Int>
    /// The order backward visits the local shards in when a step has one pass (bit-reversed
    /// indices), so that adding each finished pair at once (`Network`) builds exactly the fold's
    /// tree while the pair is in cache: 0, 4, 2, 6, 1, … for 8.
    public let visitOrder: [Int]
    /// The pass within the step (`training.accumulate_steps`): on the first, each shard's
    /// parameter gradients replace what their buffer holds; on the last, backward folds them.
    public var microBatch = 0
    public var lastMicroBatch = true
    /// Per local shard: the loss's and the activity penalties' sums of the current step.
    let lossPartials: UnsafeMutablePointer<Double>
    let activityPartials: UnsafeMutablePointer<Double>
    /// `local` rows of partial sums, for a layer's per-shard sums (`partials(width:)`).
    private var scratch: UnsafeMutableBufferPointer<Double>
    /// N rows: each rank's folded sums, in its own row, zeros elsewhere.
    private var exchange: UnsafeMutableBufferPointer<Double>

    /// `maxWidth`: the widest per-shard sum a layer will combine (BatchNorm: 2·channels + 1).
    public init(count: Int, communicator: Communicator, maxWidth: Int) throws {
        let ranks = communicator.size
        guard count % ranks == 0 else {
            throw DDPError(.config, "distributed.virtual_shards: \(count) shards do not split evenly over \(ranks) ranks; the deterministic mode needs np to divide it (np = 1, 2, 4, … up to \(count))")
        }
        self.count = count
        self.ranks = ranks
        rank = communicator.rank
        local = count / ranks
        self.communicator = communicator
        rowStarts = .allocate(capacity: local + 1)
        rowStarts.initialize(repeating: 0, count: local + 1)
        let bits = local.trailingZeroBitCount
        visitOrder = (0..<local).map { index in
            var reversed = 0
            for bit in 0..<bits where index & (1 << bit) != 0 { reversed |= 1 << (bits - 1 - bit) }
            return reversed
        }
        lossPartials = .allocate(capacity: local)
        lossPartials.initialize(repeating: 0, count: local)
        activityPartials = .allocate(capacity: local)
        activityPartials.initialize(repeating: 0, count: local)
        let width = max(maxWidth, 2)
        scratch = .allocate(capacity: local * width)
        scratch.initialize(repeating: 0)
        exchange = .allocate(capacity: ranks * width)
        exchange.initialize(repeating: 0)
    }

    deinit {
        rowStarts.deallocate()
        lossPartials.deallocate()
        activityPartials.deallocate()
        scratch.deallocate()
        exchange.deallocate()
    }

    /// Zeroes the step's loss and activity sums, which every pass of the step adds to.
    func beginStep() {
        lossPartials.update(repeating: 0, count: local)
        activityPartials.update(repeating: 0, count: local)
    }

    /// Rows of local shard `index` in the current local batch.
    @inline(__always) public func rows(_ index: Int) -> Range<Int> { rowStarts[index]..<rowStarts[index + 1] }

    /// The global index of local shard `index`.
    @inline(__always) public func globalShard(_ index: Int) -> Int { rank + index * ranks }

    /// The rows `partials(width:)` last handed out, not zeroed again.
    var partialRows: UnsafeMutablePointer<Double> { scratch.baseAddress! }

    /// `local` zeroed rows of `width` doubles, local shard i's at i·width, for `combine`.
    public func partials(width: Int) -> UnsafeMutablePointer<Double> {
        precondition(width * local <= scratch.count, "VirtualShards: a sum of \(width) is wider than reserved")
        let rows = scratch.baseAddress!
        rows.update(repeating: 0, count: width * local)
        return rows
    }

    /// The global batch's sum of the per-shard rows `partials(width:)` handed out, into
    /// `result` (`width` doubles), the same bits on every rank and at any np: folds this
    /// rank's rows, makes every rank's fold known to all (one allreduce whose values each have
    /// one non-zero contributor), and folds those over the ranks.
    public func combine(width: Int, into result: UnsafeMutablePointer<Double>) throws {
        let rows = scratch.baseAddress!
        Self.fold(rows, count: local, width: width)
        try exchangeFold(rows, width: width, into: result)
    }

    /// This rank's fold of its shards' loss and activity sums; the sync folds the ranks' folds
    /// (`ShardedSync`).
    func foldLoss() -> (loss: Double, activity: Double) {
        Self.fold(lossPartials, count: local, width: 1)
        Self.fold(activityPartials, count: local, width: 1)
        return (lossPartials[0], activityPartials[0])
    }

    /// `row` (width doubles, this rank's fold) to every rank; their fold over ranks into `result`.
    private func exchangeFold(_ row: UnsafePointer<Double>, width: Int, into result: UnsafeMutablePointer<Double>) throws {
        guard ranks > 1 else {
            result.update(from: row, count: width)
            return
        }
        let all = exchange.baseAddress!
        all.update(repeating: 0, count: ranks * width)
        (all + rank * width).update(from: row, count: width)
        try communicator.allreduceSum(UnsafeMutableBufferPointer(start: all, count: ranks * width))
        Self.fold(all, count: ranks, width: width)
        result.update(from: all, count: width)
    }

    /// Folds `count` rows of `width` in place into row 0 with the tree of the type's comment.
    public static func fold(_ rows: UnsafeMutablePointer<Double>, count: Int, width: Int) {
        foldPairs(count: count) { target, source in
            let into = rows + target * width, from = rows + source * width
            for j in 0..<width { into[j] += from[j] }
        }
    }

    /// The fold of `count` terms in place into term 0, as the tree of the type's comment adds
    /// them: `add(target, source)` adds term `source` into term `target`, the terms at even
    /// positions folded first, then those at odd ones, recursively. The one definition of the
    /// tree for whatever the terms are (rows of sums here, gradient buffers in `Network`).
    static func foldPairs(count: Int, _ add: (_ target: Int, _ source: Int) -> Void) {
        foldPairs(first: 0, step: 1, count: count, add)
    }

    private static func foldPairs(first: Int, step: Int, count: Int, _ add: (_ target: Int, _ source: Int) -> Void) {
        guard count > 1 else { return }
        foldPairs(first: first, step: 2 * step, count: (count + 1) / 2, add)
        foldPairs(first: first + step, step: 2 * step, count: count / 2, add)
        add(first, first + step)
    }
}
