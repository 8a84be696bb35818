/// Batch normalization over the features of (batch, features) input, with
/// torch.nn.BatchNorm1d semantics and synchronized across ranks (torch's SyncBatchNorm):
///
///     y = γ·(x − μ)/√(σ² + ε) + β
///     training:  μ, σ² are the mean and *biased* variance of the global batch (all ranks);
///                running_mean ← (1 − m)·running_mean + m·μ
///                running_var  ← (1 − m)·running_var  + m·σ²·n/(n − 1)   (unbiased)
///     inference: μ, σ² are the running statistics.
///
/// Defaults m = 0.1, ε = 1e-5 as torch. The Keras equivalent is
/// BatchNormalization(momentum = 1 − m, epsilon = ε).
///
/// Communication: forward allreduces (Σx, Σx², n) per feature in one Double buffer; backward
/// allreduces (Σdy, Σdy·x̂) in one. So N ranks normalize exactly as one process with the
/// global batch. The parameter gradients dγ = Σdy·x̂ and dβ = Σdy stay local sums: the
/// fused gradient allreduce sums them.
///
/// Frozen (`trainable: false`): Keras's rule for BatchNormalization with trainable = False, it
/// runs in inference mode in training too: it normalizes with the running statistics, does not
/// update them, and backward is dx = dy·γ/√(running_var + ε) with no dγ, dβ and no collective.
public final class BatchNorm: Layer {
    public let configIndex: Int
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public var displayName: String { "BatchNorm" }
    public let momentum: Float
    public let epsilon: Float
    public let trainable: Bool

    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec(name: "weight", shape: [inputWidth], role: .gamma, initializer: .ones, regularizer: nil,
                       fanIn: inputWidth, fanOut: inputWidth),
         ParameterSpec(name: "bias", shape: [inputWidth], role: .beta, initializer: .zeros, regularizer: nil,
                       fanIn: inputWidth, fanOut: inputWidth)]
    }
    public var bufferSpecs: [BufferSpec] {
        [BufferSpec(name: "running_mean", shape: [inputWidth], initialValue: 0),
         BufferSpec(name: "running_var", shape: [inputWidth], initialValue: 1)]
    }

    /// torch's num_batches_tracked: exported as int64, not used by the arithmetic.
    public var batchesTracked: Int64 = 0

    private var gamma: UnsafeMutablePointer<Float>!
    private var beta: UnsafeMutablePointer<Float>!
    private var gammaGradient: UnsafeMutablePointer<Float>?
    private var betaGradient: UnsafeMutablePointer<Float>?
    private var runningMean: UnsafeMutablePointer<Float>!
    private var runningVariance: UnsafeMutablePointer<Float>!

    /// x̂ of the last training forward, (batch, features).
    private var normalized = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    /// 1/√(σ² + ε) per feature, from the last training forward.
    private let inverseStd: UnsafeMutableBufferPointer<Float>
    /// Reduction buffer: forward (Σx, Σx², n) = 2C + 1, backward (Σdy, Σdy·x̂) = 2C.
    private let reduction: UnsafeMutableBufferPointer<Double>
    /// Global sample count of the last training forward.
    private var globalCount: Double = 0
    /// Per-feature scratch (scale, shift, and one more for backward), so the row loops run
    /// contiguously over (batch, features) instead of striding down columns.
    private let featureScale: UnsafeMutableBufferPointer<Float>
    private let featureShift: UnsafeMutableBufferPointer<Float>
    private let featureExtra: UnsafeMutableBufferPointer<Float>

    public init(configIndex: Int, width: Int, momentum: Float, epsilon: Float, trainable: Bool = true) {
        self.configIndex = configIndex
        self.trainable = trainable
        inputWidth = width
        self.momentum = momentum
        self.epsilon = epsilon
        inverseStd = .allocate(capacity: width)
        inverseStd.initialize(repeating: 1)
        reduction = .allocate(capacity: 2 * width + 1)
        reduction.initialize(repeating: 0)
        featureScale = .allocate(capacity: width)
        featureScale.initialize(repeating: 0)
        featureShift = .allocate(capacity: width)
        featureShift.initialize(repeating: 0)
        featureExtra = .allocate(capacity: width)
        featureExtra.initialize(repeating: 0)
    }

    deinit {
        normalized.deallocate()
        inverseStd.deallocate()
        reduction.deallocate()
        featureScale.deallocate()
        featureShift.deallocate()
        featureExtra.deallocate()
    }

    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>?,
                     buffers: UnsafeMutablePointer<Float>) {
        gamma = parameters
        beta = parameters + inputWidth
        gammaGradient = trainable ? gradients : nil
        betaGradient = trainable ? gradients.map { $0 + inputWidth } : nil
        runningMean = buffers
        runningVariance = buffers + inputWidth
    }

    public func reserve(maxBatch: Int) {
        normalized.deallocate()
        normalized = .allocate(capacity: max(maxBatch, 1) * inputWidth)
        normalized.initialize(repeating: 0)
    }

    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        let width = inputWidth
        let scale = featureScale.baseAddress!, shift = featureShift.baseAddress!
        guard context.training && trainable else {
            for j in 0..<width {
                scale[j] = gamma[j] / (runningVariance[j] + epsilon).squareRoot()
                shift[j] = beta[j] - runningMean[j] * scale[j]
            }
            for row in 0..<batch {
                let x = input + row * width, y = output + row * width
                for j in 0..<width { y[j] = x[j] * scale[j] + shift[j] }
            }
            return
        }
        let sums = reduction.baseAddress!
        reduction.update(repeating: 0)
        for row in 0..<batch {
            let x = input + row * width
            for j in 0..<width {
                let value = Double(x[j])
                sums[j] += value
                sums[width + j] += value * value
            }
        }
        sums[2 * width] = Double(batch)
        try context.communicator.allreduceSum(reduction)
        let n = sums[2 * width]
        guard n > 1 else {
            throw DDPError(.training, "BatchNorm (layer \(configIndex)) needs more than 1 sample per batch in training, got \(Int(n)); set training.drop_last: true or change batch_size")
        }
        let m = momentum
        let bessel = n / (n - 1)
        let xHat = normalized.baseAddress!
        for j in 0..<width {
            let mean = sums[j] / n
            let variance = max(sums[width + j] / n - mean * mean, 0)
            let invStd = Float(1 / (variance + Double(epsilon)).squareRoot())
            inverseStd[j] = invStd
            runningMean[j] = (1 - m) * runningMean[j] + m * Float(mean)
            runningVariance[j] = (1 - m) * runningVariance[j] + m * Float(variance * bessel)
            scale[j] = invStd
            shift[j] = Float(mean)
        }
        for row in 0..<batch {
            let x = input + row * width, y = output + row * width, h = xHat + row * width
            for j in 0..<width {
                let normalizedValue = (x[j] - shift[j]) * scale[j]
                h[j] = normalizedValue
                y[j] = gamma[j] * normalizedValue + beta[j]
            }
        }
        batchesTracked += 1
        globalCount = n
    }

    /// dx = γ/√(σ²+ε) · (dy − Σdy/n − x̂·Σ(dy·x̂)/n), sums over the global batch.
    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        let width = inputWidth
        guard let gammaGradient, let betaGradient else {
            guard let dx else { return }
            let scale = featureScale.baseAddress!
            for j in 0..<width { scale[j] = gamma[j] / (runningVariance[j] + epsilon).squareRoot() }
            for row in 0..<batch {
                let o = row * width
                for j in 0..<width { dx[o + j] = dy[o + j] * scale[j] }
            }
            return
        }
        let sums = reduction.baseAddress!
        let xHat = normalized.baseAddress!
        for j in 0..<2 * width { sums[j] = 0 }
        for row in 0..<batch {
            let o = row * width
            for j in 0..<width {
                let g = Double(dy[o + j])
                sums[j] += g
                sums[width + j] += g * Double(xHat[o + j])
            }
        }
        for j in 0..<width {
            betaGradient[j] += Float(sums[j])
            gammaGradient[j] += Float(sums[width + j])
        }
        // Without an input gradient (BatchNorm as the first layer, the same on every rank) the
        // global sums are not needed: dγ and dβ stay local for the fused allreduce.
        guard let dx else { return }
        try context.communicator.allreduceSum(UnsafeMutableBufferPointer(rebasing: reduction[0..<2 * width]))
        let n = globalCount
        let scale = featureScale.baseAddress!, meanDy = featureShift.baseAddress!, meanDyXHat = featureExtra.baseAddress!
        for j in 0..<width {
            meanDy[j] = Float(sums[j] / n)
            meanDyXHat[j] = Float(sums[width + j] / n)
            scale[j] = gamma[j] * inverseStd[j]
        }
        for row in 0..<batch {
            let o = row * width
            for j in 0..<width {
                dx[o + j] = scale[j] * (dy[o + j] - meanDy[j] - xHat[o + j] * meanDyXHat[j])
            }
        }
    }
}

/// `type: batchnorm`: torch BatchNorm1d semantics (momentum is torch's, 1 − Keras's).
public struct BatchNormSpec: ParsableLayerSpec, Equatable {
    static let typeName = "batchnorm"
    public var momentum: Float = 0.1
    public var epsilon: Float = 1e-5

    public init(momentum: Float = 0.1, epsilon: Float = 1e-5) {
        self.momentum = momentum
        self.epsilon = epsilon
    }

    static func parse(_ entry: inout ConfigSection) throws -> BatchNormSpec {
        BatchNormSpec(momentum: try entry.float("momentum", default: 0.1, in: 0...1),
                      epsilon: try entry.float("epsilon", default: 1e-5, in: 1e-12...1))
    }

    public func outputWidth(inputWidth: Int) -> Int { inputWidth }
    public func parameterCount(inputWidth: Int) -> Int { inputWidth > Int.max / 2 ? .max : 2 * inputWidth }
    public func makeLayers(configIndex: Int, inputWidth: Int, frozen: Bool) -> [Layer] {
        [BatchNorm(configIndex: configIndex, width: inputWidth, momentum: momentum, epsilon: epsilon, trainable: !frozen)]
    }
}
