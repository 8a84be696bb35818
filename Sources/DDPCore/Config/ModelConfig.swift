/// One entry of the config's `model.layers`, already validated: its kind (see `LayerRegistry`)
/// and the keys every entry may have.
public struct LayerConfig: Sendable, Equatable {
    public var spec: any LayerSpec
    /// Keras activity_regularizer: a penalty on this layer's output, summed over units and
    /// averaged over the batch.
    public var activityRegularizer: Penalty?
    /// Keras `layer.trainable`: false freezes the layer's parameters (no update, no weight
    /// decay, no penalty, no gradient sync); a frozen BatchNorm also runs in inference mode.
    public var trainable: Bool

    public init(_ spec: any LayerSpec, activityRegularizer: Penalty? = nil, trainable: Bool = true) {
        self.spec = spec
        self.activityRegularizer = activityRegularizer
        self.trainable = trainable
    }

    public static func == (a: LayerConfig, b: LayerConfig) -> Bool {
        a.spec.isEqual(to: b.spec) && a.activityRegularizer == b.activityRegularizer && a.trainable == b.trainable
    }
}

/// The config's `model` section.
public struct ModelConfig: Sendable, Equatable {
    public var inputs: Int
    public var layers: [LayerConfig]
    /// A safetensors file with torch state_dict names to start from.
    public var initWeights: String?

    public init(inputs: Int, layers: [LayerConfig], initWeights: String? = nil) {
        self.inputs = inputs
        self.layers = layers
        self.initWeights = initWeights
    }

    /// The width of the model's output, from the config alone.
    public var outputWidth: Int {
        layers.reduce(inputs) { $1.spec.outputWidth(inputWidth: $0) }
    }
}
