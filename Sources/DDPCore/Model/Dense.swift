import _CBLAS

/// Fully connected layer, y = x·Wᵀ + b, with torch.nn.Linear's layout: W is (units, inputs)
/// row-major, so the exported tensor loads into nn.Linear unchanged. All three products go to
/// `cblas_sgemm` with transpose flags; nothing is transposed in memory.
///
/// Weight noise (`weight_noise: σ`, Graves 2011 "Practical variational inference", additive
/// Gaussian weight noise; a fixed σ, not learned): in training, forward and backward use
/// W̃ = W + σ·ε with ε ~ N(0, 1) drawn afresh each step, keyed by (seed, global step, layer,
/// index), so every rank draws the same W̃ and no rank or batch position enters. Since
/// ∂W̃/∂W = I, dL/dW = dL/dW̃ = dYᵀ·X accumulates into the noiseless kernel's gradient and the
/// optimizer updates W; dX = dY·W̃. Inference uses W. The bias gets no noise.
///
/// Frozen (`trainable: false`, as Keras's `layer.trainable = False` or torch's
/// `requires_grad_(False)`): backward skips the dW and db products and only passes dX on.
public final class Dense: Layer {
    public let configIndex: Int
    public let inputWidth: Int
    public let outputWidth: Int
    public let useBias: Bool
    public var displayName: String { "Dense" }
    public let parameterSpecs: [ParameterSpec]
    public let trainable: Bool

    private var weight: UnsafeMutablePointer<Float>!
    private var weightGradient: UnsafeMutablePointer<Float>?
    private var bias: UnsafeMutablePointer<Float>?
    private var biasGradient: UnsafeMutablePointer<Float>?
    /// σ of the kernel noise; 0 = none.
    public let weightNoise: Float
    /// W̃ of the current training step, (units, inputs); allocated in `reserve` when σ > 0.
    private var noisyKernel: UnsafeMutablePointer<Float>?

    /// `flattenedImage`: the image a `flatten` made the inputs from, if one did: the kernel is
    /// then exported for torch's (C, H, W) flatten order (`ExportLayout.denseAfterFlatten`).
    public init(configIndex: Int, inputs: Int, units: Int, useBias: Bool, flattenedImage: ImageShape? = nil,
                kernelInitializer: Initializer, biasInitializer: Initializer,
                kernelRegularizer: Penalty?, biasRegularizer: Penalty?, weightNoise: Float = 0,
                kernelConstraint: WeightConstraint? = nil, biasConstraint: WeightConstraint? = nil, trainable: Bool = true) {
        self.configIndex = configIndex
        self.trainable = trainable
        self.weightNoise = weightNoise
        inputWidth = inputs
        outputWidth = units
        self.useBias = useBias
        var specs = [ParameterSpec(name: "weight", shape: [units, inputs], role: .kernel,
                                   initializer: kernelInitializer, regularizer: kernelRegularizer,
                                   constraint: kernelConstraint, fanIn: inputs, fanOut: units,
                                   exportLayout: flattenedImage.map { .denseAfterFlatten(units: units, image: $0) })]
        if useBias {
            specs.append(ParameterSpec(name: "bias", shape: [units], role: .bias,
                                       initializer: biasInitializer, regularizer: biasRegularizer,
                                       constraint: biasConstraint, fanIn: inputs, fanOut: units))
        }
        parameterSpecs = specs
    }

    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>?,
                     buffers: UnsafeMutablePointer<Float>) {
        weight = parameters
        weightGradient = trainable ? gradients : nil
        if useBias {
            bias = parameters + inputWidth * outputWidth
            biasGradient = weightGradient.map { $0 + inputWidth * outputWidth }
        }
    }

    deinit { noisyKernel?.deallocate() }

    public func reserve(maxBatch: Int) {
        guard weightNoise > 0, noisyKernel == nil else { return }
        noisyKernel = .allocate(capacity: inputWidth * outputWidth)
        noisyKernel!.initialize(repeating: 0, count: inputWidth * outputWidth)
    }

    /// The kernel this step multiplies by: W̃, drawn here, in training with σ > 0; else W.
    /// Every rank draws W̃ even with no sample in the step, so the draw never depends on the batch.
    private func stepKernel(_ context: StepContext, draw: Bool) -> UnsafePointer<Float> {
        guard context.training, weightNoise > 0 else { return UnsafePointer(weight) }
        guard let noisyKernel else { preconditionFailure("Dense \(configIndex): weight_noise needs reserve(maxBatch:) before training") }
        if draw {
            WeightNoise.draw(weight, into: noisyKernel, count: inputWidth * outputWidth, sigma: weightNoise, context: context, layer: configIndex)
        }
        return UnsafePointer(noisyKernel)
    }

    /// input (B, in), output (B, out): output = input · Wᵀ (+ b), with W̃ for W in noisy training.
    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        let kernel = stepKernel(context, draw: true)
        guard batch > 0 else { return }
        let n = outputWidth, k = inputWidth
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(batch), Int32(n), Int32(k),
                    1, input, Int32(k), kernel, Int32(k), 0, output, Int32(n))
        if let bias {
            for row in 0..<batch {
                let y = output + row * n
                for j in 0..<n { y[j] += bias[j] }
            }
        }
    }

    /// dW (out, in) += dYᵀ·X; db += Σ_rows dY (= for both when `context.overwritesGradients`);
    /// dX (B, in) = dY·W (W̃ in noisy training: the
    /// one `forward` drew for this step).
    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        let n = outputWidth, k = inputWidth
        let overwrite = context.overwritesGradients
        guard batch > 0 else {
            if overwrite {
                weightGradient?.update(repeating: 0, count: n * k)
                biasGradient?.update(repeating: 0, count: n)
            }
            return
        }
        if let weightGradient {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n), Int32(k), Int32(batch),
                        1, outputGradient, Int32(n), input, Int32(k), overwrite ? 0 : 1, weightGradient, Int32(k))
        }
        if let biasGradient {
            if overwrite { biasGradient.update(repeating: 0, count: n) }
            for row in 0..<batch {
                let dy = outputGradient + row * n
                for j in 0..<n { biasGradient[j] += dy[j] }
            }
        }
        if let inputGradient {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(batch), Int32(k), Int32(n),
                        1, outputGradient, Int32(n), stepKernel(context, draw: false), Int32(k), 0, inputGradient, Int32(k))
        }
    }
}

/// `type: dense`: a torch nn.Linear / Keras Dense, with an optional inline activation.
public struct DenseSpec: KernelLayerSpec, Equatable {
    static let typeName = "dense"
    public var units: Int
    public var activation: ActivationFunction = .linear
    public var useBias = true
    public var kernelInitializer = Initializer.glorotUniform
    public var biasInitializer = Initializer.zeros
    public var kernelRegularizer: Penalty?
    public var biasRegularizer: Penalty?
    public var kernelConstraint: WeightConstraint?
    public var biasConstraint: WeightConstraint?
    /// σ of the additive Gaussian kernel noise in training (0 = none).
    public var weightNoise: Float = 0

    public init(units: Int, activation: ActivationFunction = .linear, useBias: Bool = true) {
        self.units = units
        self.activation = activation
        self.useBias = useBias
    }

    static func parse(_ entry: inout ConfigSection) throws -> DenseSpec {
        guard let units = try entry.int("units") else { throw DDPError(.config, "missing key '\(entry.key("units"))'") }
        guard units >= 1 else { throw DDPError(.config, "\(entry.key("units")): expected an integer ≥ 1, got \(units)") }
        var spec = DenseSpec(units: units, activation: try entry.choice("activation", default: ActivationFunction.linear),
                             useBias: try entry.bool("use_bias", default: true))
        try spec.parseKernelKeys(&entry)
        return spec
    }

    public var sizeKey: String? { "units" }
    public var hasParameters: Bool { true }
    public var inputKind: LayerInputKind { .features }

    /// A dense layer multiplies a vector: on an image it would mix pixels and channels without
    /// saying so (Keras applies it to the last axis alone), so it asks for a flatten instead.
    public func outputShape(input: FeatureShape) throws -> FeatureShape {
        if input.image != nil {
            throw DDPError(.config, "gets the image \(input); a dense layer takes flat features: put {type: flatten} "
                           + "(or a global pooling layer) before it")
        }
        return .features(units)
    }

    public func parameterCount(input: FeatureShape) -> Int {
        saturatingSum(saturatingProduct(input.count, units), useBias ? units : 0)
    }

    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        let inputWidth = input.count
        let dense = Dense(configIndex: configIndex, inputs: inputWidth, units: units, useBias: useBias, flattenedImage: input.flattenedImage,
                          kernelInitializer: kernelInitializer, biasInitializer: biasInitializer,
                          kernelRegularizer: kernelRegularizer, biasRegularizer: biasRegularizer, weightNoise: weightNoise,
                          kernelConstraint: kernelConstraint, biasConstraint: biasConstraint, trainable: !frozen)
        guard activation != .linear else { return [dense] }
        return [dense, Activation(configIndex: configIndex, function: activation, width: units)]
    }
}
