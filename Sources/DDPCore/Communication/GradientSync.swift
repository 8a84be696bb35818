/// What every rank agrees on after a step's gradient synchronization.
public struct StepTotals: Sendable {
    /// Σ per-sample losses over the global batch (`TrainStep` adds `activity` to it and applies
    /// class weights' normalization).
    public var lossSum: Double
    /// Σ of the activity penalties' per-sample values over the global batch.
    public var activity: Double = 0
    public var samples: Double
    public var correct: Double
    /// Some rank's loss was NaN or infinite: no update may be applied.
    public var nonFinite: Bool
    /// Kernel and bias penalty value (Keras regularizers) of the parameters before the update.
    public var penalty: Double
    /// Some rank received a preemption signal: every rank stops after this step's update.
    public var stop: Bool
}

/// How a step's gradients become one update that leaves every rank with identical parameters.
/// The trainer calls, on every rank and in this order:
///
///     reduce(local figures)   the gradient of the global mean loss (all of it, or this rank's
///                             slice), the penalties' gradient added, the step's totals agreed
///     → stop here if totals.nonFinite
///     gatherGradient()        only in an epoch's last step with logging.histograms: rank 0's
///                             copy of the reduced gradient
///     update(lr)              clip by global norm, optimizer, and (sharded) allgather, or on
///                             one node a barrier; then the weight constraints
///
/// Two strategies: `AllreduceSync` (one fused allreduce, every rank repeats the whole update)
/// and `ShardedSync` (ZeRO stage 1: reduce-scatter, update a 1/N slice, allgather; on one node
/// through shared memory).
public protocol GradientSync: AnyObject {
    var optimizer: Optimizer { get }
    /// `lossSum`, `activity`, `samples`, `correct`: this rank's share of the step (in the
    /// deterministic mode, its fold of its virtual shards' sums); `nonFinite`: its own loss;
    /// `stop`: this rank received a preemption signal.
    func reduce(lossSum: Double, activity: Double, samples: Int, correct: Double, nonFinite: Bool, stop: Bool) throws -> StepTotals
    func update(lr: Float) throws
    /// Called by backward after each layer: the trainable gradients from `offset` on are final.
    /// A sync may start reducing them; it must not touch gradients before `offset`.
    func gradientsReady(from offset: Int) throws
    /// Collective: the optimizer's moments over the whole trainable buffer (trainableCount
    /// floats each), on rank 0; nil on the other ranks. Checkpoints stay independent of np.
    func gatherOptimizerState() throws -> (first: [Float], second: [Float])?
    /// Collective: rank 0's whole-buffer moments (nil elsewhere) become every rank's state.
    func scatterOptimizerState(_ state: (first: [Float], second: [Float])?) throws
    /// Collective, between `reduce` and `update` (every rank calls it, or none): the step's
    /// reduced gradient over the whole trainable buffer (trainableCount floats), the penalties'
    /// gradient included, before clipping and weight decay, on rank 0; nil on the other ranks.
    /// The same at any np, to rounding: TensorBoard's gradient histograms.
    func gatherGradient() throws -> [Float]?
}

extension GradientSync {
    public func gradientsReady(from offset: Int) throws {}

    /// A step without activity penalties.
    public func reduce(lossSum: Double, samples: Int, correct: Double, nonFinite: Bool, stop: Bool) throws -> StepTotals {
        try reduce(lossSum: lossSum, activity: 0, samples: samples, correct: correct, nonFinite: nonFinite, stop: stop)
    }
}

/// The network of a run and the strategy that updates it, built together because the sync
/// decides where the network's parameters and gradients live (`SyncBuffers`: padded to whole
/// shards, on one node in node-shared windows; the allreduce's with a tail for the step's
/// totals).
/// The update is sharded whenever there is more than one rank and `distributed.sharded_update`
/// is on (the default), and always in the deterministic mode, whose sums the sharded update
/// folds in their fixed tree at any np (`VirtualShards`). Collective: every rank calls it with
/// the same config.
public func makeNetworkAndSync(config: TrainingConfig, communicator: Communicator) throws -> (Network, GradientSync) {
    let deterministic = config.distributed.deterministic
    guard (config.distributed.shardedUpdate && communicator.size > 1) || deterministic else {
        return try AllreduceSync.make(model: config.model, optimizer: config.optimizer, communicator: communicator)
    }
    var made: SyncBuffers?
    let network = try Network(config: config.model) { layout in
        let buffers = try SyncBuffers(layout: layout, shards: communicator.size, tail: 0,
                                      nodeShared: config.distributed.sharedMemory && communicator.size > 1 ? communicator : nil,
                                      alignment: deterministic ? ShardedSync.normChunk : 16)
        made = buffers
        return buffers.memory
    }
    return (network, ShardedSync(network: network, buffers: made!, config: config.optimizer, communicator: communicator,
                                 bucketFloats: Int(config.distributed.bucketKilobytes * 1024 / 4), deterministic: deterministic))
}

/// One MPI_Allreduce per step over [gradients | loss sum, samples, correct, non-finite, stop, activity]; every
/// rank then applies the penalties, clipping and the optimizer to all parameters. Its one
/// collective makes it the cheaper choice where latency dominates (tiny models, slow links).
public final class AllreduceSync: GradientSync {
    /// The tail's floats: loss sum, samples, correct, non-finite, stop, activity.
    public static let tail = 6
    public let optimizer: Optimizer
    private let network: Network
    private let buffers: SyncBuffers
    private let communicator: Communicator
    private let clipNorm: Float?

    /// `buffers`: the network's memory, one shard with the tail (`makeNetworkAndSync`).
    public init(network: Network, buffers: SyncBuffers, config: OptimizerConfig, communicator: Communicator) {
        precondition(buffers.shards == 1 && buffers.reductionBuffer.count == network.trainableCount + Self.tail,
                     "AllreduceSync: the network's buffers are not laid out for it")
        self.network = network
        self.buffers = buffers
        self.communicator = communicator
        clipNorm = config.clipNorm
        optimizer = Optimizer(config: config, layout: network.layout)
    }

    /// A network with its memory laid out for this sync, and the sync (one process, or tests).
    public static func make(model: ModelConfig, optimizer: OptimizerConfig, communicator: Communicator) throws -> (Network, AllreduceSync) {
        var made: SyncBuffers?
        let network = try Network(config: model) { layout in
            let buffers = try SyncBuffers(layout: layout, shards: 1, tail: tail)
            made = buffers
            return buffers.memory
        }
        return (network, AllreduceSync(network: network, buffers: made!, config: optimizer, communicator: communicator))
    }

    public func reduce(lossSum: Double, activity: Double, samples: Int, correct: Double, nonFinite: Bool, stop: Bool) throws -> StepTotals {
        let tail = buffers.tail
        tail[5] = Float(activity)
        tail[0] = Float(lossSum)
        tail[1] = Float(samples)
        tail[2] = Float(correct)
        tail[3] = nonFinite ? 1 : 0
        tail[4] = stop ? 1 : 0
        try communicator.allreduceSum(buffers.reductionBuffer)
        var totals = StepTotals(lossSum: Double(tail[0]), samples: Double(tail[1]), correct: Double(tail[2]),
                                nonFinite: tail[3] != 0 || !tail[0].isFinite || !tail[5].isFinite, penalty: 0, stop: tail[4] != 0)
        totals.activity = Double(tail[5])
        if !totals.nonFinite { totals.penalty = network.applyWeightPenalties() }
        return totals
    }

    public func update(lr: Float) throws {
        if let clipNorm { Optimizer.clipByGlobalNorm(network.gradients, maxNorm: clipNorm) }
        optimizer.apply(parameters: network.parameters, gradients: network.gradients, lr: lr)
        if network.hasConstraints { network.applyConstraints() }
    }

    public func gatherOptimizerState() throws -> (first: [Float], second: [Float])? {
        guard communicator.isRoot else { return nil }
        let count = optimizer.count
        let second = optimizer.keepsSecondMoment ? Array(optimizer.secondMoment.prefix(count)) : [Float](repeating: 0, count: count)
        return (Array(optimizer.firstMoment.prefix(count)), second)
    }

    public func scatterOptimizerState(_ state: (first: [Float], second: [Float])?) throws {
        if let state {
            _ = optimizer.firstMoment.update(fromContentsOf: state.first)
            if optimizer.keepsSecondMoment { _ = optimizer.secondMoment.update(fromContentsOf: state.second) }
        }
        try communicator.broadcast(optimizer.firstMoment)
        if optimizer.keepsSecondMoment { try communicator.broadcast(optimizer.secondMoment) }
    }

    /// Every rank holds the whole reduced gradient already: rank 0 copies it, no transport.
    public func gatherGradient() throws -> [Float]? {
        communicator.isRoot ? Array(network.gradients) : nil
    }
}
