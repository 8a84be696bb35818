import CBLAS

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
public final class Dense: Layer {
    public let configIndex: Int
    public let inputWidth: Int
    public let outputWidth: Int
    public let useBias: Bool
    public var displayName: String { "Dense" }
    public let parameterSpecs: [ParameterSpec]

    private var weight: UnsafeMutablePointer<Float>!
    private var weightGradient: UnsafeMutablePointer<Float>!
    private var bias: UnsafeMutablePointer<Float>?
    private var biasGradient: UnsafeMutablePointer<Float>?
    /// σ of the kernel noise; 0 = none.
    public let weightNoise: Float
    /// W̃ of the current training step, (units, inputs); allocated in `reserve` when σ > 0.
    private var noisyKernel: UnsafeMutablePointer<Float>?

    public init(configIndex: Int, inputs: Int, units: Int, useBias: Bool,
                kernelInitializer: Initializer, biasInitializer: Initializer,
                kernelRegularizer: Penalty?, biasRegularizer: Penalty?, weightNoise: Float = 0) {
        self.configIndex = configIndex
        self.weightNoise = weightNoise
        inputWidth = inputs
        outputWidth = units
        self.useBias = useBias
        var specs = [ParameterSpec(name: "weight", shape: [units, inputs], role: .kernel,
                                   initializer: kernelInitializer, regularizer: kernelRegularizer,
                                   fanIn: inputs, fanOut: units)]
        if useBias {
            specs.append(ParameterSpec(name: "bias", shape: [units], role: .bias,
                                       initializer: biasInitializer, regularizer: biasRegularizer,
                                       fanIn: inputs, fanOut: units))
        }
        parameterSpecs = specs
    }

    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>,
                     buffers: UnsafeMutablePointer<Float>) {
        weight = parameters
        weightGradient = gradients
        if useBias {
            bias = parameters + inputWidth * outputWidth
            biasGradient = gradients + inputWidth * outputWidth
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
            let sigma = Double(weightNoise), w = weight!
            let key = CounterRandom.bits(context.seed, .weightNoise, UInt64(context.globalStep), UInt64(configIndex))
            for i in 0..<inputWidth * outputWidth {
                noisyKernel[i] = w[i] + Float(sigma * CounterRandom.normal(rowKey: key, unit: i))
            }
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

    /// dW (out, in) += dYᵀ·X; db += Σ_rows dY; dX (B, in) = dY·W (W̃ in noisy training: the
    /// one `forward` drew for this step).
    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        guard batch > 0 else { return }
        let n = outputWidth, k = inputWidth
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n), Int32(k), Int32(batch),
                    1, outputGradient, Int32(n), input, Int32(k), 1, weightGradient, Int32(k))
        if let biasGradient {
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
