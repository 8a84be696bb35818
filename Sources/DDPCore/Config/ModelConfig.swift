/// One entry of the config's `model.layers`, already validated.
public struct LayerConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case dense(units: Int, activation: ActivationFunction, useBias: Bool,
                   kernelInitializer: Initializer, biasInitializer: Initializer,
                   kernelRegularizer: Penalty?, biasRegularizer: Penalty?)
        case batchNorm(momentum: Float, epsilon: Float)
        case dropout(rate: Float)
        case activation(ActivationFunction)
        case gaussianNoise(stddev: Float)
    }
    public var kind: Kind
    /// Keras activity_regularizer: a penalty on this layer's output, summed over units and
    /// averaged over the batch.
    public var activityRegularizer: Penalty?
    /// Dense layers only: σ of the additive Gaussian noise on the kernel in training (0 = none).
    public var weightNoise: Float

    public init(_ kind: Kind, activityRegularizer: Penalty? = nil, weightNoise: Float = 0) {
        self.kind = kind
        self.activityRegularizer = activityRegularizer
        self.weightNoise = weightNoise
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
}
