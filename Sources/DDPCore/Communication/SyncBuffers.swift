/// The gradient sync's own layout of the network's flat buffers, built from its
/// `ParameterLayout`: the trainable prefix split into `shards` equal blocks (1: no split), the
/// buffers padded with zeros to whole blocks, a tail of `tail` floats after the gradients for
/// the step's totals (the allreduce sums it with them), and, on one node, the memory in
/// node-shared windows. The network computes in views of it (`memory`).
///
///     parameters   [ trainable … | frozen … | zeros to shards × block ]   (the longer of the two)
///     reduction    [ gradients … | zeros to shards × block | tail ]
///
/// Blocks are ⌈trainable / shards⌉ rounded up to 16 floats (64-byte lines), so no two ranks'
/// slices share a cache line. The padding of the trainable blocks may overlap the frozen
/// tensors; no rank's slice reaches past `trainableCount`, and the allgather only copies
/// values every rank already holds. Nothing writes the padding, so it stays zero.
public final class SyncBuffers {
    public let layout: ParameterLayout
    public let shards: Int
    /// Floats per block: ⌈trainableCount / shards⌉ rounded up to 16; `trainableCount` itself
    /// when `shards` is 1.
    public let block: Int
    /// The network's parameters, then zeros up to shards × block where that is longer.
    public let paddedParameters: UnsafeMutableBufferPointer<Float>
    /// The gradients padded to shards × block, then the tail.
    public let reductionBuffer: UnsafeMutableBufferPointer<Float>
    /// Set when every rank's reduction buffer lives in one node-shared window: the window
    /// (rank r's buffer at `gradientSlots + r·stride`) and a second one the ranks publish
    /// their updated blocks to (see `ShardedSync`).
    public let nodeShared: (parameters: UnsafeMutablePointer<Float>, gradientSlots: UnsafeMutablePointer<Float>, stride: Int)?
    private let parameterMemory: HugePageFloats
    private let ownsReduction: Bool
    /// The communicator whose node-shared windows hold the reduction buffers: kept as long as
    /// these buffers, so the windows outlive every network that computes in them.
    private let windowOwner: Communicator?

    /// `tail`: floats after the gradients for the step's totals. `nodeShared`: put the
    /// reduction buffers in node-shared windows through this communicator when all its ranks
    /// share a node (collective: every rank calls it alike); else each rank owns its own.
    /// `alignment`: floats each block (with several) is a multiple of; the deterministic mode
    /// asks for `ShardedSync.normChunk`, so a block holds whole chunks at any np.
    public init(layout: ParameterLayout, shards: Int, tail: Int, nodeShared communicator: Communicator? = nil,
                alignment: Int = 16) throws {
        precondition(shards >= 1, "SyncBuffers: shards must be at least 1")
        self.layout = layout
        self.shards = shards
        let trainable = layout.trainableCount
        block = shards == 1 ? trainable : ((trainable + shards - 1) / shards + alignment - 1) / alignment * alignment
        let reduction = shards * block + tail
        parameterMemory = HugePageFloats(counts: [max(shards * block, layout.parameterCount)])
        paddedParameters = parameterMemory.parts[0]
        let stride = (reduction + 15) / 16 * 16
        if let communicator,
           let published = try communicator.nodeSharedFloats(paddedParameters.count),
           let slots = try communicator.nodeSharedFloats(stride * communicator.size) {
            nodeShared = (published, slots, stride)
            reductionBuffer = UnsafeMutableBufferPointer(start: slots + communicator.rank * stride, count: reduction)
            reductionBuffer.update(repeating: 0)
            ownsReduction = false
            windowOwner = communicator
        } else {
            nodeShared = nil
            windowOwner = nil
            reductionBuffer = .allocate(capacity: reduction)
            reductionBuffer.initialize(repeating: 0)
            ownsReduction = true
        }
    }

    deinit {
        if ownsReduction { reductionBuffer.deallocate() }
    }

    /// The views the network computes in.
    public var memory: ParameterMemory {
        ParameterMemory(parameters: paddedParameters.baseAddress!, gradients: reductionBuffer.baseAddress!, owner: self)
    }

    public var paddedGradients: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(rebasing: reductionBuffer[0..<shards * block])
    }

    /// The floats after the padded gradients.
    public var tail: UnsafeMutablePointer<Float> { reductionBuffer.baseAddress! + shards * block }
}
