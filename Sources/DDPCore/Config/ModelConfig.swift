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
    /// One input sample's shape: `model.inputs` (an integer, or [height, width, channels]),
    /// else the data's image shape (`data.image_shape`, or the IDX file's header). An image
    /// when the first layer that cares takes images (conv2d, pooling, flatten), flat features
    /// otherwise, so an MLP on Fashion-MNIST still sees 784 features.
    public var inputShape: FeatureShape
    public var layers: [LayerConfig]
    /// A safetensors file with torch state_dict names to start from.
    public var initWeights: String?

    /// Values per input sample.
    public var inputs: Int { inputShape.count }

    public init(inputShape: FeatureShape, layers: [LayerConfig], initWeights: String? = nil) {
        self.inputShape = inputShape
        self.layers = layers
        self.initWeights = initWeights
    }

    /// A model over `inputs` flat features.
    public init(inputs: Int, layers: [LayerConfig], initWeights: String? = nil) {
        self.init(inputShape: .features(inputs), layers: layers, initWeights: initWeights)
    }

    /// Each layer's output shape, in `layers` order, or an error naming the first layer that
    /// cannot take what comes before it ("model.layers[4] (dense): gets the image …").
    public func shapes() throws -> [FeatureShape] {
        guard inputShape.count > 0 else { throw DDPError(.config, "model.inputs must be a positive integer, got \(inputShape.count)") }
        var shape = inputShape
        return try layers.enumerated().map { index, layer in
            do {
                shape = try layer.spec.outputShape(input: shape)
            } catch let error as DDPError {
                throw DDPError(error.kind, "model.layers[\(index)] (\(layer.spec.kindName)): \(error.message)")
            }
            return shape
        }
    }

    /// The width of the model's output, from the config alone (0 for a config `shapes()` refuses).
    public var outputWidth: Int {
        (try? shapes().last?.count) ?? 0
    }

    /// Floats one sample takes in a forward pass: its input, each layer's output and any
    /// layer's workspace (a convolution's unfolded patches). Saturates at Int.max.
    public func floatsPerSample() -> Int {
        let floats = floatsPerSampleByKind()
        return saturatingSum(floats.activations, floats.workspace)
    }

    /// `floatsPerSample()` apart: the activations (input and every layer's output) and the
    /// layers' workspace (unfolded patches, pooling indices), as `ddp summary` states them.
    public func floatsPerSampleByKind() -> (activations: Int, workspace: Int) {
        guard let shapes = try? shapes() else { return (.max, 0) }
        var activations = inputShape.count, workspace = 0, input = inputShape
        for (layer, output) in zip(layers, shapes) {
            activations = saturatingSum(activations, output.count)
            workspace = saturatingSum(workspace, layer.spec.workspacePerSample(input: input))
            input = output
        }
        return (activations, workspace)
    }

    /// Whether the input is an image for these layers: the first layer that takes one kind of
    /// input only decides (a batchnorm or dropout first takes either).
    public static func takesImage(_ layers: [LayerConfig]) -> Bool {
        layers.lazy.compactMap { $0.spec.inputKind.takesImage }.first ?? false
    }
}
