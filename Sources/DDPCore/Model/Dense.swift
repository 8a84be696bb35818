import CBLAS

/// Fully connected layer, y = x·Wᵀ + b, with torch.nn.Linear's layout: W is (units, inputs)
/// row-major, so the exported tensor loads into nn.Linear unchanged. All three products go to
/// `cblas_sgemm` with transpose flags; nothing is transposed in memory.
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

    public init(configIndex: Int, inputs: Int, units: Int, useBias: Bool,
                kernelInitializer: Initializer, biasInitializer: Initializer,
                kernelRegularizer: Penalty?, biasRegularizer: Penalty?) {
        self.configIndex = configIndex
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

    /// input (B, in), output (B, out): output = input · Wᵀ (+ b).
    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        guard batch > 0 else { return }
        let n = outputWidth, k = inputWidth
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(batch), Int32(n), Int32(k),
                    1, input, Int32(k), weight, Int32(k), 0, output, Int32(n))
        if let bias {
            for row in 0..<batch {
                let y = output + row * n
                for j in 0..<n { y[j] += bias[j] }
            }
        }
    }

    /// dW (out, in) += dYᵀ·X; db += Σ_rows dY; dX (B, in) = dY·W.
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
                        1, outputGradient, Int32(n), weight, Int32(k), 0, inputGradient, Int32(k))
        }
    }
}
