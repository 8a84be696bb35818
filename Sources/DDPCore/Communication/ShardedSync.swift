/// ZeRO stage 1 (Rajbhandari et al. 2020, "optimizer state partitioning"): the flat gradient
/// buffer is reduce-scattered, so rank r receives the global sum of its block r only; rank r
/// applies the penalties, clipping and the optimizer to that block, holding optimizer moments
/// for it alone; then the parameters are allgathered. Per step and rank:
///
///     MPI_Ireduce_scatter(gradients, P floats → P/N, in buckets)  (P = padded parameter count)
///     MPI_Allreduce([loss sum, samples, correct, non-finite, penalty share, Σg² share, stop], 7 doubles)
///     MPI_Allgather(parameters, P/N → P floats)
///
/// LARS's trust ratios need each tensor's ‖p‖ and ‖g‖, of which a rank holds the share inside
/// its block: the shares ride the 7-double allreduce (2 more doubles per tensor). LAMB's need
/// ‖u‖ of the update, known only once the moments are updated from the clipped gradient, after
/// that allreduce; so LAMB takes one more allreduce of 2 doubles per tensor between the halves
/// of its step (`Optimizer.beginLAMBStep`, `finishLayerwiseStep`).
///
/// The two big collectives move the same bytes as one allreduce (ring: 2·(N−1)/N·P each way),
/// but the memory-bound update runs over P/N parameters instead of P, and the moments take
/// 2·P/N floats instead of 2·P. Clipping by global norm needs only the 7-double allreduce: each
/// rank's share of Σg² rides it with the step's totals, and so does a preemption request.
///
/// On one node the two big collectives become memory reads. When every rank shares a node,
/// each rank's gradients live in its own slot of a node-shared window, and a second window
/// holds the parameters as published: each rank computes with its own copy of every parameter
/// and writes only its block r of the window. A step is then
///
///     barrier                       every rank's gradients are in its slot
///     sum slot 0 … N−1 over block r (in rank order: the same sum whichever rank computes it)
///     MPI_Allreduce(7 doubles)      as above; also: every rank has finished reading the slots
///     update block r                in the rank's own copy, each value also stored to block r
///                                   of the window in the same pass (without penalties or
///                                   clipping, the sum of the slots is taken here too, as the
///                                   optimizer reads each element)
///     barrier                       every block is published
///     copy the other blocks         from the window into the rank's own copy: no allgather
///
/// Each rank reads P floats of gradients and P − P/N of parameters and writes P/N to the
/// window, instead of MPI's copy-in/copy-out of 2·P floats each way through its shared-memory
/// transport: np = 2 ran 84.0k samples/s this way against 63.2k through MPI's reduce-scatter
/// and allgather (docs/PERFORMANCE.md, 'The sharded update (ShardedSync)').
///
/// Why every rank computes with its own copy, not with the window itself (as before): writing
/// memory that another core has read costs about twice writing memory only this core uses, and
/// most when this core has read it too (`benchmarks/cross_core.c`). On the window, copying the
/// updated block back took 38 µs a step; from the rank's own copy, whose window block only the
/// other rank reads, publishing takes 14 µs: np = 2 1.026–1.044× against computing on the
/// window. Storing the block from inside the Adam loop saves the copy's loads where the cores
/// share a cache and stalls the loop where they do not (`PublishChoice` takes the faster).
///
/// Overlapping communication with backward (MPI path): backward reports after each layer
/// which gradients are final (`gradientsReady`, last layers first). Once `distributed.bucket_kb`
/// (128 kB) of them are, their reduce-scatter starts nonblocking (MPI_Ireduce_scatter, each
/// rank receiving the part inside its own block, so shards stay contiguous and the optimizer,
/// the allgather and checkpoints are unchanged) and progresses while the earlier layers'
/// gradients are computed; the rest is started after backward, and all are waited for before
/// the update. On the default model that overlaps the last 68,618 floats with the first
/// layer's backward; its 200,704-float kernel gradient comes last and cannot overlap. Against
/// one blocking reduce-scatter: 1.11× on two hosts joined at 1 Gbit/s, 1.011× on one node
/// without shared memory (docs/PERFORMANCE.md, 'The sharded update (ShardedSync)'). On one
/// node with shared memory there is nothing to overlap: ranks wait at a barrier for the
/// slowest, then read memory.
///
/// The deterministic mode (`distributed.deterministic`, `VirtualShards`; also at np = 1) sums
/// only in orders that do not depend on np: the ranks' gradients fold over r in the virtual
/// shards' tree (the node's slots as before; across nodes each block is gathered to its owner,
/// one MPI_Gather per block, instead of MPI's reduce-scatter, whose order is its own); the
/// loss and activity sums reach every rank exactly (one slot per rank in the totals, each
/// value with one non-zero contributor) and fold alike; clipping's Σg² is taken per fixed
/// chunk of `normChunk` floats (blocks hold whole chunks) and summed in chunk order; the
/// penalty value is rank 0's over all parameters.
public final class ShardedSync: GradientSync {
    /// Floats per chunk of the deterministic mode's Σg² (blocks are multiples of it).
    public static let normChunk = 4096
    /// [loss sum, samples, correct, non-finite, penalty share, Σg² share, stop, activity]
    static let fixedTotals = 8
    public let optimizer: Optimizer
    private let network: Network
    /// The network's memory as this sync lays it out: one block per rank.
    private let buffers: SyncBuffers
    private let communicator: Communicator
    private let clipNorm: Float?
    /// This rank's block of the flat buffer, clipped to the real parameters (may be empty).
    private let shard: Range<Int>
    private let block: Int
    /// The reduced gradient of this rank's block (block floats).
    private let shardGradient: UnsafeMutableBufferPointer<Float>
    /// Node-shared mode: the window the ranks publish their updated blocks to (block r at
    /// offset r·block, as in the parameter buffer). Tried when the layers computed on the window,
    /// and each slower than the copy back it would replace (0.94–0.998×): Adam writing into the
    /// window in place, with or without PREFETCHW; a second window the layers swap to;
    /// non-temporal stores; Adam staged through an L1-sized buffer (docs/PERFORMANCE.md, 'The
    /// sharded update (ShardedSync)').
    private let published: UnsafeMutablePointer<Float>?
    private var publishing = PublishChoice()
    /// The `fixedTotals`, then under LARS its per-tensor sums (`Optimizer.addLARSShares`; in the
    /// deterministic mode per piece), summed over ranks; in the deterministic mode then each
    /// rank's loss and activity sums (N slots each) and each chunk's Σg² (`normChunk`) when clipping.
    private let totals: UnsafeMutableBufferPointer<Double>
    /// The deterministic mode (see the type's comment).
    public let deterministic: Bool
    /// Deterministic mode across nodes: every rank's part of this rank's block (N × block).
    private let gatheredBlocks: UnsafeMutableBufferPointer<Float>
    /// LAMB's per-tensor sums, summed over ranks between the halves of its step.
    private let lambSums: UnsafeMutableBufferPointer<Double>
    /// Deterministic mode: LAMB's and LARS's sums are per piece (`Optimizer.pieces`); the
    /// per-tensor sums made from them in piece order.
    private let tensorSums: UnsafeMutableBufferPointer<Double>
    /// Deterministic mode: where the totals' per-rank and per-chunk slots begin (after LARS's).
    private let deterministicShares: Int
    /// Node-shared mode: every rank's reduction buffer, rank r's at `base + r·stride`.
    private let gradientSlots: (base: UnsafeMutablePointer<Float>, stride: Int)?
    /// Node-shared mode without penalties or clipping, with Adam, AdamW or LAMB: the reduced
    /// gradient is never stored; the optimizer sums the slots as it reads them (`Optimizer.apply(_:gradients:
    /// copyTo:lr:)` with a `GradientSource` of N terms), one pass over them instead of a sum
    /// written and read back: np = 2 1.021× at 128 samples per rank (docs/PERFORMANCE.md, 'The
    /// sharded update (ShardedSync)').
    private let summingInUpdate: Bool
    /// MPI mode, this step: the gradients from here to the padded end are being reduced.
    private var unreducedEnd: Int
    private var bucketsBegun = 0
    /// Each begun bucket's receive counts, one per rank (MPI reads them until it finishes).
    private let bucketCounts: UnsafeMutablePointer<Int32>
    /// The fewest floats of final gradient that begin a bucket before backward ends
    /// (`distributed.bucket_kb`); 0: none does.
    private let minimumBucket: Int

    /// `buffers`: the network's memory split into one block per rank (`makeNetworkAndSync`);
    /// node-shared when every rank's reduction buffer lives in one window.
    public init(network: Network, buffers: SyncBuffers, config: OptimizerConfig, communicator: Communicator,
                bucketFloats: Int = 1 << 15, deterministic: Bool = false) {
        self.deterministic = deterministic
        precondition(buffers.shards == communicator.size, "ShardedSync: \(buffers.shards) shards for \(communicator.size) ranks")
        self.network = network
        self.buffers = buffers
        published = buffers.nodeShared?.parameters
        minimumBucket = bucketFloats
        gradientSlots = buffers.nodeShared.map { (base: $0.gradientSlots, stride: $0.stride) }
        self.communicator = communicator
        clipNorm = config.clipNorm
        block = buffers.block
        let lower = min(communicator.rank * block, network.trainableCount)
        shard = lower..<min(lower + block, network.trainableCount)
        optimizer = Optimizer(config: config, layout: network.layout, range: shard, capacity: block,
                              pieceGrid: deterministic ? Self.normChunk : nil)
        summingInUpdate = gradientSlots != nil && config.clipNorm == nil && !network.hasWeightPenalties
            && (optimizer.updatesFromSummedSlots || config.kind == .lamb)
        shardGradient = .allocate(capacity: max(block, 1))
        shardGradient.initialize(repeating: 0)
        let layerwiseSums = optimizer.isLayerwise ? 2 * optimizer.slotCount : 0
        deterministicShares = Self.fixedTotals + (config.kind == .lars ? layerwiseSums : 0)
        tensorSums = .allocate(capacity: deterministic && optimizer.isLayerwise ? 2 * optimizer.tensorCount : 0)
        tensorSums.initialize(repeating: 0)
        let chunks = (communicator.size * block + Self.normChunk - 1) / Self.normChunk
        totals = .allocate(capacity: Self.fixedTotals + (config.kind == .lars ? layerwiseSums : 0)
                           + (deterministic ? 2 * communicator.size + (config.clipNorm == nil ? 0 : chunks) : 0))
        totals.initialize(repeating: 0)
        gatheredBlocks = .allocate(capacity: deterministic && gradientSlots == nil ? communicator.size * block : 0)
        gatheredBlocks.initialize(repeating: 0)
        lambSums = .allocate(capacity: config.kind == .lamb ? layerwiseSums : 0)
        lambSums.initialize(repeating: 0)
        unreducedEnd = communicator.size * block
        bucketCounts = .allocate(capacity: maxPendingReductions * communicator.size)
        bucketCounts.initialize(repeating: 0, count: maxPendingReductions * communicator.size)
    }

    deinit {
        shardGradient.deallocate()
        totals.deallocate()
        gatheredBlocks.deallocate()
        lambSums.deallocate()
        tensorSums.deallocate()
        bucketCounts.deallocate()
    }

    /// MPI mode: once at least `minimumBucket` more floats of gradient are final, starts their
    /// reduce-scatter while backward goes on (each rank receives the part of them inside its
    /// own block, so the shards stay contiguous); otherwise lets begun ones progress.
    public func gradientsReady(from offset: Int) throws {
        guard gradientSlots == nil, !deterministic else { return }
        if minimumBucket > 0 && unreducedEnd - offset >= minimumBucket && bucketsBegun < maxPendingReductions - 1 {
            try beginBucket(offset..<unreducedEnd)
        } else if bucketsBegun > 0 {
            try communicator.progressReductions()
        }
    }

    private func beginBucket(_ range: Range<Int>) throws {
        let size = communicator.size, rank = communicator.rank
        let counts = bucketCounts + bucketsBegun * size
        for r in 0..<size {
            let count = max(0, min(range.upperBound, (r + 1) * block) - max(range.lowerBound, r * block))
            guard let count32 = Int32(exactly: count) else {
                throw DDPError(.communication, "a gradient bucket of \(count) floats for rank \(r) exceeds MPI's 32-bit counts; use more ranks or a smaller model")
            }
            counts[r] = count32
        }
        let receive = counts[rank] > 0 ? max(range.lowerBound, rank * block) - rank * block : 0
        try communicator.beginReduceScatterSum(UnsafePointer(buffers.paddedGradients.baseAddress! + range.lowerBound),
                                               counts: counts, into: shardGradient.baseAddress! + receive)
        unreducedEnd = range.lowerBound
        bucketsBegun += 1
    }

    public func reduce(lossSum: Double, activity: Double, samples: Int, correct: Double, nonFinite: Bool, stop: Bool) throws -> StepTotals {
        if let gradientSlots {
            try communicator.barrier()
            if !summingInUpdate { sumSlots(gradientSlots.base, stride: gradientSlots.stride) }
        } else if deterministic {
            try gatherAndFoldBlocks()
        } else {
            if unreducedEnd > 0 { try beginBucket(0..<unreducedEnd) }
            try communicator.finishReductions()
            unreducedEnd = communicator.size * block
            bucketsBegun = 0
        }
        let gradient = shardGradient.baseAddress!
        totals[0] = lossSum
        totals[1] = Double(samples)
        totals[2] = correct
        totals[3] = nonFinite ? 1 : 0
        totals[4] = network.applyWeightPenalties(range: shard, gradients: gradient)
        totals[5] = clipNorm == nil || deterministic ? 0 : Optimizer.sumOfSquares(UnsafeBufferPointer(start: gradient, count: shard.count))
        totals[6] = stop ? 1 : 0
        totals[7] = activity
        if optimizer.config.kind == .lars {
            UnsafeMutableBufferPointer(rebasing: totals[Self.fixedTotals...]).update(repeating: 0)
            optimizer.addLARSShares(parameters: buffers.paddedParameters.baseAddress! + shard.lowerBound, gradients: gradient,
                                    into: totals.baseAddress! + Self.fixedTotals)
        }
        if deterministic { placeDeterministicShares(lossSum: lossSum, activity: activity) }
        try communicator.allreduceSum(totals)
        if deterministic { foldDeterministicShares() }
        return StepTotals(lossSum: totals[0], activity: totals[7], samples: totals[1], correct: totals[2],
                          nonFinite: totals[3] != 0 || !totals[0].isFinite || !totals[7].isFinite, penalty: totals[4], stop: totals[6] != 0)
    }

    /// Deterministic mode: the sums the allreduce may not add in its own order go to slots of
    /// their own instead (zeros elsewhere): this rank's loss and activity sums, and each of its
    /// chunks' Σg²; the penalty value is rank 0's over every parameter.
    private func placeDeterministicShares(lossSum: Double, activity: Double) {
        let size = communicator.size, rank = communicator.rank, shares = totals.baseAddress! + deterministicShares
        totals[0] = 0
        totals[7] = 0
        totals[4] = rank == 0 ? network.weightPenalty() : 0
        totals[5] = 0
        UnsafeMutableBufferPointer(rebasing: totals[deterministicShares...]).update(repeating: 0)
        shares[rank] = lossSum
        shares[size + rank] = activity
        guard clipNorm != nil else { return }
        let gradient = shardGradient.baseAddress!
        for start in stride(from: 0, to: shard.count, by: Self.normChunk) {
            let chunk = (shard.lowerBound + start) / Self.normChunk
            shares[2 * size + chunk] = Optimizer.sumOfSquares(UnsafeBufferPointer(start: gradient + start, count: min(Self.normChunk, shard.count - start)))
        }
    }

    /// After the allreduce: the ranks' loss and activity sums folded in the virtual shards'
    /// tree over r, the chunks' Σg² summed in chunk order.
    private func foldDeterministicShares() {
        let size = communicator.size, shares = totals.baseAddress! + deterministicShares
        if optimizer.config.kind == .lars {
            optimizer.tensorSums(fromPieces: totals.baseAddress! + Self.fixedTotals, into: tensorSums.baseAddress!)
        }
        VirtualShards.fold(shares, count: size, width: 1)
        VirtualShards.fold(shares + size, count: size, width: 1)
        totals[0] = shares[0]
        totals[7] = shares[size]
        guard clipNorm != nil else { return }
        var squares = 0.0
        for chunk in 0..<(totals.count - deterministicShares - 2 * size) { squares += shares[2 * size + chunk] }
        totals[5] = squares
    }

    /// Deterministic mode without shared memory: every rank's part of block r reaches rank r
    /// (one gather per block, rank order), which folds them with the tree of `sumSlots`.
    private func gatherAndFoldBlocks() throws {
        let size = communicator.size, rank = communicator.rank
        let gradients = buffers.paddedGradients.baseAddress!
        guard size > 1 else {
            shardGradient.baseAddress!.update(from: gradients, count: shard.count)
            return
        }
        for owner in 0..<size {
            try communicator.gather(UnsafeBufferPointer(start: gradients + owner * block, count: block),
                                    into: owner == rank ? gatheredBlocks.baseAddress : nil, root: owner)
        }
        storeSum(of: Optimizer.GradientSource(UnsafePointer(gatheredBlocks.baseAddress!), stride: block, terms: size, folded: true))
    }

    public func update(lr: Float) throws {
        let gradient = UnsafeMutableBufferPointer(rebasing: shardGradient[0..<shard.count])
        var clipScale: Float = 1
        if let clipNorm {
            clipScale = Optimizer.scale(gradient, toNorm: clipNorm, from: Float(totals[5].squareRoot()))
        }
        let parameters = UnsafeMutableBufferPointer(rebasing: buffers.paddedParameters[shard])
        if optimizer.isLayerwise {
            try layerwiseStep(parameters: parameters.baseAddress!, gradient: gradient.baseAddress!, lr: lr, clipScale: clipScale)
            try publishAndGather(published: published != nil)
        } else if summingInUpdate, let gradientSlots, let published {
            publishTimed(published) { mirror in
                optimizer.apply(parameters.baseAddress!,
                                gradients: .init(UnsafePointer(gradientSlots.base + shard.lowerBound),
                                                 stride: gradientSlots.stride, terms: communicator.size, folded: deterministic),
                                copyTo: mirror, lr: lr)
            }
            try publishAndGather(published: true)
        } else {
            optimizer.apply(parameters: parameters, gradients: gradient, lr: lr)
            try publishAndGather(published: false)
        }
    }

    /// LAMB or LARS over this rank's block, with the per-tensor sums over all ranks. On one node
    /// the block is published to the window too: by the second pass itself or copied after it,
    /// whichever `publishing` finds faster (timed without the allreduce, whose wait is the other
    /// ranks').
    private func layerwiseStep(parameters: UnsafeMutablePointer<Float>, gradient: UnsafeMutablePointer<Float>, lr: Float,
                               clipScale: Float) throws {
        var sums: UnsafePointer<Double>
        var gradientScale = clipScale
        if optimizer.config.kind == .lamb {
            lambSums.update(repeating: 0)
            var source = Optimizer.GradientSource(gradient)
            if summingInUpdate, let gradientSlots {
                source = .init(UnsafePointer(gradientSlots.base + shard.lowerBound), stride: gradientSlots.stride, terms: communicator.size, folded: deterministic)
            }
            optimizer.beginLAMBStep(parameters: parameters, gradients: source, update: gradient, lr: lr, sums: lambSums.baseAddress!)
            try communicator.allreduceSum(lambSums)
            sums = UnsafePointer(lambSums.baseAddress!)
            if deterministic {
                optimizer.tensorSums(fromPieces: lambSums.baseAddress!, into: tensorSums.baseAddress!)
                sums = UnsafePointer(tensorSums.baseAddress!)
            }
            gradientScale = 1
        } else {
            sums = UnsafePointer(deterministic ? tensorSums.baseAddress! : totals.baseAddress! + Self.fixedTotals)
        }
        guard let published else {
            optimizer.finishLayerwiseStep(parameters: parameters, gradients: gradient, lr: lr, sums: sums, gradientScale: gradientScale)
            return
        }
        publishTimed(published) { mirror in
            optimizer.finishLayerwiseStep(parameters: parameters, gradients: gradient, lr: lr, sums: sums, gradientScale: gradientScale,
                                          copyTo: mirror)
        }
    }

    /// Runs `update` over this rank's block, handing it where to store each updated value as
    /// well (block r of `published`) or nil, and publishes the block: by those stores, or by a
    /// copy after the update, whichever `publishing` has timed faster (see `PublishChoice`).
    private func publishTimed(_ published: UnsafeMutablePointer<Float>, _ update: (UnsafeMutablePointer<Float>?) -> Void) {
        let mirrored = publishing.mirrors(), start = ContinuousClock.now
        update(mirrored ? published + shard.lowerBound : nil)
        if !mirrored {
            (published + shard.lowerBound).update(from: buffers.paddedParameters.baseAddress! + shard.lowerBound, count: shard.count)
        }
        publishing.record(mirrored: mirrored, time: ContinuousClock.now - start)
    }

    /// After this rank's block is updated in place: every rank's block reaches every rank (the
    /// window and a barrier on one node, else the allgather), then the weight constraints.
    /// `published`: the update already stored the block to the window.
    private func publishAndGather(published alreadyPublished: Bool) throws {
        if let published {
            let own = buffers.paddedParameters.baseAddress!
            if !alreadyPublished { (published + shard.lowerBound).update(from: own + shard.lowerBound, count: shard.count) }
            try communicator.barrier()
            own.update(from: published, count: shard.lowerBound)
            (own + shard.upperBound).update(from: published + shard.upperBound, count: network.trainableCount - shard.upperBound)
        } else {
            try communicator.allgather(buffers.paddedParameters, block: block)
        }
        if network.hasConstraints { network.applyConstraints() }
    }

    /// shardGradient = Σ_r slot_r[shard] in rank order (the deterministic mode: folded over r as
    /// `VirtualShards` folds): the sum the optimizer takes itself
    /// when nothing needs it stored (`Optimizer.GradientSource`), so both paths agree bit for bit.
    private func sumSlots(_ base: UnsafeMutablePointer<Float>, stride: Int) {
        storeSum(of: Optimizer.GradientSource(UnsafePointer(base + shard.lowerBound), stride: stride, terms: communicator.size,
                                              folded: deterministic))
    }

    /// shardGradient[0..<shard.count] = the sum `terms` reads, eight elements at a time.
    private func storeSum(of terms: Optimizer.GradientSource) {
        let out = shardGradient.baseAddress!, count = shard.count
        let vectorEnd = count - count % 8
        var i = 0
        while i < vectorEnd {
            store8(terms.sum8(i), out + i)
            i += 8
        }
        while i < count { out[i] = terms.sum(i); i += 1 }
    }

    public func gatherOptimizerState() throws -> (first: [Float], second: [Float])? {
        let size = communicator.size, count = network.trainableCount
        var first = [Float](repeating: 0, count: communicator.isRoot ? size * block : 0)
        var second = first
        try first.withUnsafeMutableBufferPointer { full in
            try communicator.gather(UnsafeBufferPointer(rebasing: optimizer.firstMoment[0..<block]), into: full.baseAddress, root: 0)
        }
        if optimizer.keepsSecondMoment {
            try second.withUnsafeMutableBufferPointer { full in
                try communicator.gather(UnsafeBufferPointer(rebasing: optimizer.secondMoment[0..<block]), into: full.baseAddress, root: 0)
            }
        }
        guard communicator.isRoot else { return nil }
        return (Array(first.prefix(count)), Array(second.prefix(count)))
    }

    public func scatterOptimizerState(_ state: (first: [Float], second: [Float])?) throws {
        let size = communicator.size
        let kept = optimizer.keepsSecondMoment ? [optimizer.firstMoment, optimizer.secondMoment] : [optimizer.firstMoment]
        for (index, moment) in kept.enumerated() {
            var full = [Float](repeating: 0, count: communicator.isRoot ? size * block : 0)
            if let state { full.replaceSubrange(0..<network.trainableCount, with: index == 0 ? state.first : state.second) }
            try full.withUnsafeBufferPointer { full in
                try communicator.scatter(full.baseAddress, into: UnsafeMutableBufferPointer(rebasing: moment[0..<block]), root: 0)
            }
        }
    }

    /// Each rank's block of the reduced gradient, gathered to rank 0 as the moments are. Summing
    /// in the update, the sum is never stored: it is taken here into `shardGradient`, which the
    /// update does not read then (it sums the slots again, to the same bits), and before the
    /// update's barrier, after which ranks may write their slots again.
    public func gatherGradient() throws -> [Float]? {
        if summingInUpdate, let gradientSlots { sumSlots(gradientSlots.base, stride: gradientSlots.stride) }
        var full = [Float](repeating: 0, count: communicator.isRoot ? communicator.size * block : 0)
        try full.withUnsafeMutableBufferPointer { full in
            try communicator.gather(UnsafeBufferPointer(rebasing: shardGradient[0..<block]), into: full.baseAddress, root: 0)
        }
        guard communicator.isRoot else { return nil }
        full.removeLast(full.count - network.trainableCount)
        return full
    }
}

/// How a rank's updated block reaches the published window when the Adam loop can store it
/// itself: mirrored (each value stored to the window inside the loop) or copied after the loop.
/// Which is faster depends on where the other ranks' cores are, so each rank times both and
/// takes the faster; both store the same values, so the choice never changes a result, and
/// ranks need not agree on it. Neither way wins everywhere: with the cores sharing a cache,
/// mirroring ran np = 2 1.02× faster than the copy; with them apart (as ranks on different
/// CCXs or sockets) it made the update 3.5× slower, each store stalling on a line another
/// core's cache holds (docs/PERFORMANCE.md, 'The sharded update (ShardedSync)').
struct PublishChoice {
    /// Time of the update (loop and publishing) per way: a running mean over the steps that
    /// took it as the faster, or the latest trial.
    private var mirroredTime = Duration.zero
    private var copiedTime = Duration.zero
    private var steps = 0
    private var trial = false
    /// Every `trialEvery`-th step takes the slower way once, so a change of layout is noticed;
    /// its time replaces that way's figure outright (an old mean would take hundreds of steps
    /// to forget a layout).
    static let trialEvery = 128
    /// The running mean moves 1/meanSpan of the way to each new step's time.
    static let meanSpan = 8

    /// Whether this step mirrors: the first two steps try each way, then the faster, except
    /// every `trialEvery`-th step.
    mutating func mirrors() -> Bool {
        defer { steps += 1 }
        trial = steps < 2 || steps % Self.trialEvery == 0
        if steps < 2 { return steps == 0 }
        let faster = mirroredTime <= copiedTime
        return trial ? !faster : faster
    }

    mutating func record(mirrored: Bool, time: Duration) {
        func updated(_ figure: Duration) -> Duration { trial ? time : figure + (time - figure) / Self.meanSpan }
        if mirrored { mirroredTime = updated(mirroredTime) } else { copiedTime = updated(copiedTime) }
    }
}
