/// What a layer's parameter is, which decides its default weight decay and regularizer slot.
public enum ParameterRole: String, Sendable {
    case kernel, bias, gamma, beta
}

/// One trainable tensor a layer asks for. The network packs all of them into one flat buffer.
public struct ParameterSpec: Sendable {
    public var name: String          // torch state_dict suffix: "weight" or "bias"
    /// The shape as stored and computed with (a conv kernel: (out, kh, kw, in)).
    public var shape: [Int]
    public var role: ParameterRole
    public var initializer: Initializer
    public var regularizer: Penalty?
    /// Projected after every update (Keras kernel_constraint / bias_constraint).
    public var constraint: WeightConstraint? = nil
    /// The layer's fans, which the initializer formulas use (for a bias too: torch draws
    /// nn.Linear's bias from U(±1/√fan_in) with the layer's input width).
    public var fanIn: Int
    public var fanOut: Int
    /// How the file (torch's state_dict) orders it; nil: as stored.
    public var exportLayout: ExportLayout? = nil
}

/// One non-trainable tensor (BatchNorm running statistics), packed into the flat state buffer.
public struct BufferSpec: Sendable {
    public var name: String          // "running_mean", "running_var"
    public var shape: [Int]
    public var initialValue: Float
    /// How the file orders it; nil: as stored.
    public var exportLayout: ExportLayout? = nil
}

/// Everything a layer needs to know about the step it runs in. One instance lives for the whole
/// run and is updated in place each step (no per-step allocation).
public final class StepContext {
    public var training = false
    public var seed: UInt64 = 0
    public var epoch = 0
    /// Optimizer steps taken before this one (the trainer's global step): keys weight noise,
    /// which is the same for every sample of a step.
    public var globalStep = 0
    /// Dataset row of each local batch row: keys dropout masks and noise to the sample, not to
    /// the batch position or rank.
    public var sampleRows: UnsafeMutablePointer<Int32>
    /// Rows `sampleRows` holds: the most a training step or an inference chunk may use.
    public let maxBatch: Int
    public let communicator: Communicator
    /// `distributed.deterministic`: the virtual shards of the training pass, whose rows the
    /// network runs per shard and whose sums BatchNorm combines in a fixed tree; nil without
    /// (and unused in inference).
    public var shards: VirtualShards?
    /// Set around a backward call whose parameter gradients must replace what their buffer
    /// holds rather than add to it (the deterministic mode's per-shard gradients: one write
    /// instead of zeroing the buffer first). Layers with parameters honour it (Dense, Conv2D);
    /// BatchNorm never runs with it.
    public var overwritesGradients = false
    /// The first row of the current call within the pass's batch: the deterministic mode calls
    /// a layer with parameters once per virtual shard, and a layer that keeps per-row
    /// workspace from forward for backward (Conv2D's patches) places it at this row.
    public var rowOffset = 0

    public init(communicator: Communicator, maxBatch: Int) {
        self.communicator = communicator
        self.maxBatch = max(maxBatch, 1)
        sampleRows = .allocate(capacity: max(maxBatch, 1))
        sampleRows.initialize(repeating: 0, count: max(maxBatch, 1))
    }

    deinit { sampleRows.deallocate() }
}

/// A layer of a sequential network. Shapes: input is (batch, inputWidth) row-major,
/// output (batch, outputWidth). Backward receives dL/dy (in training, L is the mean loss over
/// the global batch, so summing the ranks' gradients gives its gradient), writes dL/dx when
/// `inputGradient` is non-nil and adds parameter gradients into its gradient view (or writes
/// them, when `StepContext.overwritesGradients` says so).
public protocol Layer: AnyObject {
    /// Position in the config's `model.layers`, which names tensors as torch's nn.Sequential does.
    var configIndex: Int { get }
    /// Keras-like class name for `ddp summary`.
    var displayName: String { get }
    var inputWidth: Int { get }
    var outputWidth: Int { get }
    var parameterSpecs: [ParameterSpec] { get }
    var bufferSpecs: [BufferSpec] { get }
    /// Integer state a layer keeps beside its tensors, by torch state_dict suffix
    /// ("num_batches_tracked"): one Int64 each, in the network's counter buffer, exported as
    /// 0-dim int64 tensors and restored with the weights.
    var counterNames: [String] { get }
    /// False for a layer the config freezes (`trainable: false`): it gets no gradient views and
    /// computes no parameter gradients.
    var trainable: Bool { get }
    /// Gives the layer its views into the flat parameter, gradient and state buffers (in spec
    /// order); `gradients` is nil for a frozen layer.
    func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>?,
              buffers: UnsafeMutablePointer<Float>)
    /// Gives the layer its view into the network's counter buffer (one Int64 per counter name).
    func bind(counters: UnsafeMutablePointer<Int64>)
    /// Allocates any per-batch workspace once, before training.
    func reserve(maxBatch: Int)
    func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                 batch: Int, context: StepContext) throws
    func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                  outputGradient: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
                  batch: Int, context: StepContext) throws
}

extension Layer {
    public var parameterSpecs: [ParameterSpec] { [] }
    public var bufferSpecs: [BufferSpec] { [] }
    public var counterNames: [String] { [] }
    public func bind(counters: UnsafeMutablePointer<Int64>) {}
    public var trainable: Bool { true }
    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>?,
                     buffers: UnsafeMutablePointer<Float>) {}
    public func reserve(maxBatch: Int) {}
}
