/// Batch normalization over the features of (batch, features) input, with
/// torch.nn.BatchNorm1d semantics, or over the channels of (batch, height, width, channels)
/// input, with torch.nn.BatchNorm2d's (statistics over N, H and W; channels-last rows are
/// batch × height × width rows of channels, so both are one loop), synchronized across ranks
/// (torch's SyncBatchNorm):
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
    /// Features normalized on their own: a flat input's features, or an image's channels.
    public let channels: Int
    /// Values of each channel per sample: 1 for flat features, height × width for an image,
    /// whose channels-last rows are `positions` rows of `channels` (BatchNorm2d's statistics
    /// over (N, H, W)).
    public let positions: Int
    public var inputWidth: Int { channels * positions }
    public var outputWidth: Int { inputWidth }
    public var displayName: String { "BatchNorm" }
    public let momentum: Float
    public let epsilon: Float
    public let trainable: Bool

    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec(name: "weight", shape: [channels], role: .gamma, initializer: .ones, regularizer: nil,
                       fanIn: channels, fanOut: channels, exportLayout: exportLayout),
         ParameterSpec(name: "bias", shape: [channels], role: .beta, initializer: .zeros, regularizer: nil,
                       fanIn: channels, fanOut: channels, exportLayout: exportLayout)]
    }
    public var bufferSpecs: [BufferSpec] {
        [BufferSpec(name: "running_mean", shape: [channels], initialValue: 0, exportLayout: exportLayout),
         BufferSpec(name: "running_var", shape: [channels], initialValue: 1, exportLayout: exportLayout)]
    }
    /// After a flatten, its features follow the image's (H, W, C) order; the file's, nn.Flatten's
    /// (C, H, W), as BatchNorm1d after it expects.
    private var exportLayout: ExportLayout? { flattenedImage.map { .flattenedFeatures(image: $0) } }
    /// The image a `flatten` made the features from, if one did.
    public let flattenedImage: ImageShape?

    public var counterNames: [String] { ["num_batches_tracked"] }
    /// torch's num_batches_tracked: exported as int64, not used by the arithmetic. It lives in
    /// the network's counter buffer once bound; a layer on its own counts in `ownCounter`.
    public var batchesTracked: Int64 {
        get { counter.pointee }
        set { counter.pointee = newValue }
    }
    private var counter: UnsafeMutablePointer<Int64>
    private let ownCounter: UnsafeMutablePointer<Int64>

    private var gamma: UnsafeMutablePointer<Float>!
    private var beta: UnsafeMutablePointer<Float>!
    private var gammaGradient: UnsafeMutablePointer<Float>?
    private var betaGradient: UnsafeMutablePointer<Float>?
    private var runningMean: UnsafeMutablePointer<Float>!
    private var runningVariance: UnsafeMutablePointer<Float>!

    /// x̂ of the last training forward, (batch, features).
    private var normalized = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    /// μ and 1/√(σ² + ε) per feature, from the last training forward (backward reads them too).
    private let batchMean: UnsafeMutableBufferPointer<Float>
    private let inverseStd: UnsafeMutableBufferPointer<Float>
    /// Reduction buffer: forward (Σx, Σx², n) = 2C + 1, backward (Σg, Σg·x̂) = 2C.
    private let reduction: UnsafeMutableBufferPointer<Double>
    /// Global sample count of the last training forward.
    private var globalCount: Double = 0
    /// Per-feature coefficients of the row loops, so they run contiguously over (batch, features)
    /// instead of striding down columns: inference (scale, shift); backward's dx (scale, mean of
    /// g, mean of g·x̂).
    private let featureScale: UnsafeMutableBufferPointer<Float>
    private let featureShift: UnsafeMutableBufferPointer<Float>
    private let featureExtra: UnsafeMutableBufferPointer<Float>

    public init(configIndex: Int, channels width: Int, positions: Int = 1, momentum: Float, epsilon: Float, trainable: Bool = true,
                flattenedImage: ImageShape? = nil) {
        self.configIndex = configIndex
        self.flattenedImage = flattenedImage
        self.trainable = trainable
        channels = width
        self.positions = positions
        ownCounter = .allocate(capacity: 1)
        ownCounter.initialize(to: 0)
        counter = ownCounter
        self.momentum = momentum
        self.epsilon = epsilon
        func buffer<T: Numeric>(_ count: Int, _ value: T) -> UnsafeMutableBufferPointer<T> {
            let buffer = UnsafeMutableBufferPointer<T>.allocate(capacity: count)
            buffer.initialize(repeating: value)
            return buffer
        }
        batchMean = buffer(width, 0)
        inverseStd = buffer(width, 1)
        reduction = buffer(2 * width + 1, 0)
        featureScale = buffer(width, 0)
        featureShift = buffer(width, 0)
        featureExtra = buffer(width, 0)
    }

    deinit {
        ownCounter.deallocate()
        normalized.deallocate()
        batchMean.deallocate()
        inverseStd.deallocate()
        reduction.deallocate()
        featureScale.deallocate()
        featureShift.deallocate()
        featureExtra.deallocate()
    }

    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>?,
                     buffers: UnsafeMutablePointer<Float>) {
        gamma = parameters
        beta = parameters + channels
        gammaGradient = trainable ? gradients : nil
        betaGradient = trainable ? gradients.map { $0 + channels } : nil
        runningMean = buffers
        runningVariance = buffers + channels
    }

    public func bind(counters: UnsafeMutablePointer<Int64>) { counter = counters }

    public func reserve(maxBatch: Int) {
        normalized.deallocate()
        normalized = .allocate(capacity: max(maxBatch, 1) * inputWidth)
        normalized.initialize(repeating: 0)
    }

    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        let width = channels, rows = batch * positions
        guard context.training && trainable else {
            let affine = prepareInference()
            for row in 0..<rows { affine.apply(row: input + row * width, output: output + row * width, width: width) }
            return
        }
        let affine = try prepareTraining(input, rows: rows, context: context)
        let xHat = normalized.baseAddress!
        for row in 0..<rows {
            let o = row * width
            affine.apply(row: input + o, normalized: xHat + o, output: output + o, width: width)
        }
    }

    /// The per-element formulas of a training forward, over pointers taken once per step (so
    /// the row loops read no class property): x̂ = (x − μ)·(1/√(σ² + ε)), y = γ·x̂ + β. Both
    /// this layer's loops and the fused ones (`FusedNormActivation`) use them, so they agree
    /// to the bit.
    struct TrainingAffine {
        let mean, inverseStd, gamma, beta: UnsafePointer<Float>
        @inline(__always) func normalize(_ x: Float, _ j: Int) -> Float { (x - mean[j]) * inverseStd[j] }
        @inline(__always) func scaleAndShift(_ normalizedValue: Float, _ j: Int) -> Float { gamma[j] * normalizedValue + beta[j] }

        /// One row: x̂ into `h`, y into `y`, eight features at a time with the scalar's operations.
        @inline(__always) func apply(row x: UnsafePointer<Float>, normalized h: UnsafeMutablePointer<Float>,
                                     output y: UnsafeMutablePointer<Float>, width: Int) {
            let end = width - width % 8
            var j = 0
            while j < end {
                let normalizedValue = (load8(x + j) - load8(mean + j)) * load8(inverseStd + j)
                store8(normalizedValue, h + j)
                store8(load8(gamma + j) * normalizedValue + load8(beta + j), y + j)
                j += 8
            }
            while j < width {
                h[j] = normalize(x[j], j)
                y[j] = scaleAndShift(h[j], j)
                j += 1
            }
        }

        /// One row: y alone, x̂ computed and not kept (the fused pass recomputes it in backward
        /// from x, with the same operations, so it is the same x̂ to the bit).
        @inline(__always) func apply(row x: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>, width: Int) {
            let end = width - width % 8
            var j = 0
            while j < end {
                let normalizedValue = (load8(x + j) - load8(mean + j)) * load8(inverseStd + j)
                store8(load8(gamma + j) * normalizedValue + load8(beta + j), y + j)
                j += 8
            }
            while j < width {
                y[j] = scaleAndShift(normalize(x[j], j), j)
                j += 1
            }
        }
    }

    /// Inference: y = x·scale + shift with scale = γ/√(running_var + ε), shift = β − running_mean·scale.
    struct InferenceAffine {
        let scale, shift: UnsafePointer<Float>
        @inline(__always) func apply(_ x: Float, _ j: Int) -> Float { x * scale[j] + shift[j] }

        @inline(__always) func apply(row x: UnsafePointer<Float>, output y: UnsafeMutablePointer<Float>, width: Int) {
            let end = width - width % 8
            var j = 0
            while j < end {
                store8(load8(x + j) * load8(scale + j) + load8(shift + j), y + j)
                j += 8
            }
            while j < width { y[j] = apply(x[j], j); j += 1 }
        }
    }

    func prepareInference() -> InferenceAffine {
        let scale = featureScale.baseAddress!, shift = featureShift.baseAddress!
        for j in 0..<channels {
            scale[j] = gamma[j] / (runningVariance[j] + epsilon).squareRoot()
            shift[j] = beta[j] - runningMean[j] * scale[j]
        }
        return InferenceAffine(scale: scale, shift: shift)
    }

    /// Training statistics of the global batch: (Σx, Σx², n) in one allreduce, then μ and
    /// 1/√(σ² + ε) into `batchMean` and `inverseStd`, and the running statistics updated.
    /// `rows`: rows of `channels` values (batch × positions). With virtual shards
    /// (`distributed.deterministic`), each shard's sums are taken apart and combined in their
    /// fixed tree instead (`VirtualShards.combine`).
    func prepareTraining(_ input: UnsafePointer<Float>, rows batch: Int, context: StepContext) throws -> TrainingAffine {
        let width = channels
        let sums = reduction.baseAddress!
        if let shards = context.shards {
            let stride = 2 * width + 1, partials = shards.partials(width: stride)
            for shard in 0..<shards.local {
                let rows = shards.rows(shard), partial = partials + shard * stride
                Self.addStatistics(input, rows: rows.lowerBound * positions..<rows.upperBound * positions, width: width, into: partial)
                partial[2 * width] = Double(rows.count * positions)
            }
            try shards.combine(width: stride, into: sums)
        } else {
            reduction.update(repeating: 0)
            Self.addStatistics(input, rows: 0..<batch, width: width, into: sums)
            sums[2 * width] = Double(batch)
            try context.communicator.allreduceSum(reduction)
        }
        let n = sums[2 * width]
        guard n > 1 else {
            throw DDPError(.training, "BatchNorm (layer \(configIndex)) needs more than 1 \(positions > 1 ? "value per channel (samples × height × width)" : "sample per batch") in training, got \(Int(n)); set training.drop_last: true or change batch_size")
        }
        let m = momentum
        let bessel = n / (n - 1)
        for j in 0..<width {
            let mean = sums[j] / n
            let variance = max(sums[width + j] / n - mean * mean, 0)
            let invStd = Float(1 / (variance + Double(epsilon)).squareRoot())
            inverseStd[j] = invStd
            runningMean[j] = (1 - m) * runningMean[j] + m * Float(mean)
            runningVariance[j] = (1 - m) * runningVariance[j] + m * Float(variance * bessel)
            batchMean[j] = Float(mean)
        }
        batchesTracked += 1
        globalCount = n
        return TrainingAffine(mean: batchMean.baseAddress!, inverseStd: inverseStd.baseAddress!, gamma: gamma, beta: beta)
    }

    /// Σx into sums[0..<width] and Σx² into sums[width..<2·width] over `rows` rows of `width`.
    private static func addStatistics(_ input: UnsafePointer<Float>, rows: Range<Int>, width: Int, into sums: UnsafeMutablePointer<Double>) {
        let end = width - width % 8
        for row in rows {
            let x = input + row * width
            var j = 0
            while j < end {
                let value = SIMD8<Double>(load8(x + j))
                storeDouble8(loadDouble8(sums + j) + value, sums + j)
                storeDouble8(loadDouble8(sums + width + j) + value * value, sums + width + j)
                j += 8
            }
            while j < width {
                let value = Double(x[j])
                sums[j] += value
                sums[width + j] += value * value
                j += 1
            }
        }
    }


    /// dx = γ/√(σ²+ε) · (dy − Σdy/n − x̂·Σ(dy·x̂)/n), sums over the global batch.
    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        let width = channels, rows = batch * positions
        guard trainable else {
            guard let dx else { return }
            let scale = prepareInference().scale
            for row in 0..<rows {
                let o = row * width
                for j in 0..<width { dx[o + j] = dy[o + j] * scale[j] }
            }
            return
        }
        let xHat = normalized.baseAddress!
        for group in 0..<beginGradientSums(context: context) {
            let (sums, samples) = gradientSums(group: group, batch: batch, context: context)
            for row in samples.lowerBound * positions..<samples.upperBound * positions {
                sums.add(row: dy + row * width, normalized: xHat + row * width)
            }
        }
        guard let formula = try finishGradientSums(inputGradient: dx != nil, context: context), let dx else { return }
        for row in 0..<rows {
            let o = row * width
            formula.apply(row: dy + o, normalized: xHat + o, inputGradient: dx + o, width: width)
        }
    }

    /// Backward's per-feature sums in `reduction`: Σg in the first C, Σg·x̂ in the next C.
    struct GradientSums {
        let sums: UnsafeMutablePointer<Double>
        let width: Int
        @inline(__always) func add(_ gradient: Float, _ normalizedValue: Float, _ j: Int) {
            let g = Double(gradient)
            sums[j] += g
            sums[width + j] += g * Double(normalizedValue)
        }

        /// One row of g and x̂, eight features at a time with the scalar's operations.
        @inline(__always) func add(row g: UnsafePointer<Float>, normalized h: UnsafePointer<Float>) {
            let end = width - width % 8
            var j = 0
            while j < end {
                let gradient = SIMD8<Double>(load8(g + j))
                storeDouble8(loadDouble8(sums + j) + gradient, sums + j)
                storeDouble8(loadDouble8(sums + width + j) + gradient * SIMD8<Double>(load8(h + j)), sums + width + j)
                j += 8
            }
            while j < width { add(g[j], h[j], j); j += 1 }
        }

        /// One row of g, with x̂ recomputed from the row's input x as `affine` computed it.
        @inline(__always) func add(row g: UnsafePointer<Float>, input x: UnsafePointer<Float>, affine: TrainingAffine) {
            let end = width - width % 8
            var j = 0
            while j < end {
                let gradient = SIMD8<Double>(load8(g + j))
                let normalizedValue = (load8(x + j) - load8(affine.mean + j)) * load8(affine.inverseStd + j)
                storeDouble8(loadDouble8(sums + j) + gradient, sums + j)
                storeDouble8(loadDouble8(sums + width + j) + gradient * SIMD8<Double>(normalizedValue), sums + width + j)
                j += 8
            }
            while j < width { add(g[j], affine.normalize(x[j], j), j); j += 1 }
        }
    }

    /// dx of one element from its g and x̂: scale·(g − mean(g) − x̂·mean(g·x̂)), scale = γ/√(σ²+ε).
    struct InputGradientFormula {
        let scale, meanGradient, meanGradientXHat: UnsafePointer<Float>
        @inline(__always) func apply(_ g: Float, _ normalizedValue: Float, _ j: Int) -> Float {
            scale[j] * (g - meanGradient[j] - normalizedValue * meanGradientXHat[j])
        }

        @inline(__always) func apply(row g: UnsafePointer<Float>, normalized h: UnsafePointer<Float>,
                                     inputGradient dx: UnsafeMutablePointer<Float>, width: Int) {
            let end = width - width % 8
            var j = 0
            while j < end {
                store8(load8(scale + j) * (load8(g + j) - load8(meanGradient + j) - load8(h + j) * load8(meanGradientXHat + j)), dx + j)
                j += 8
            }
            while j < width { dx[j] = apply(g[j], h[j], j); j += 1 }
        }

        /// One row, with x̂ recomputed from the row's input x as `affine` computed it.
        @inline(__always) func apply(row g: UnsafePointer<Float>, input x: UnsafePointer<Float>, affine: TrainingAffine,
                                     inputGradient dx: UnsafeMutablePointer<Float>, width: Int) {
            let end = width - width % 8
            var j = 0
            while j < end {
                let h = (load8(x + j) - load8(affine.mean + j)) * load8(affine.inverseStd + j)
                store8(load8(scale + j) * (load8(g + j) - load8(meanGradient + j) - h * load8(meanGradientXHat + j)), dx + j)
                j += 8
            }
            while j < width { dx[j] = apply(g[j], affine.normalize(x[j], j), j); j += 1 }
        }
    }

    /// Zeroes backward's sums and returns how many groups of samples they come in: one, into
    /// `reduction`, or with virtual shards one per shard, each into a partial row of its own
    /// (`finishGradientSums` combines them). `gradientSums(group:)` gives each.
    func beginGradientSums(context: StepContext) -> Int {
        guard let shards = context.shards else {
            for j in 0..<2 * channels { reduction[j] = 0 }
            return 1
        }
        _ = shards.partials(width: 2 * channels)
        return shards.local
    }

    /// Group `group`'s sums and the samples of the batch it takes (see `beginGradientSums`).
    @inline(__always)
    func gradientSums(group: Int, batch: Int, context: StepContext) -> (sums: GradientSums, samples: Range<Int>) {
        guard let shards = context.shards else { return (GradientSums(sums: reduction.baseAddress!, width: channels), 0..<batch) }
        return (GradientSums(sums: shards.partialRows + group * 2 * channels, width: channels), shards.rows(group))
    }

    /// dγ += Σg·x̂ and dβ += Σg (local sums: the gradient sync sums them over ranks). When the
    /// input gradient is wanted, allreduces the sums (one collective of 2C) and returns dx's
    /// formula. Without one (BatchNorm as the first layer, the same on every rank) the global
    /// sums are not needed. With virtual shards the shards' sums are combined on every rank
    /// (`VirtualShards.combine`), and rank 0 alone adds the global dγ, dβ (the sync's sum over
    /// ranks then adds zeros to them, exactly).
    func finishGradientSums(inputGradient wanted: Bool, context: StepContext) throws -> InputGradientFormula? {
        let width = channels
        let sums = reduction.baseAddress!
        if let shards = context.shards { try shards.combine(width: 2 * width, into: sums) }
        if context.shards.map({ $0.rank == 0 }) ?? true, let gammaGradient, let betaGradient {
            for j in 0..<width {
                betaGradient[j] += Float(sums[j])
                gammaGradient[j] += Float(sums[width + j])
            }
        }
        guard wanted else { return nil }
        if context.shards == nil {
            try context.communicator.allreduceSum(UnsafeMutableBufferPointer(rebasing: reduction[0..<2 * width]))
        }
        let n = globalCount
        let scale = featureScale.baseAddress!, meanDy = featureShift.baseAddress!, meanDyXHat = featureExtra.baseAddress!
        for j in 0..<width {
            meanDy[j] = Float(sums[j] / n)
            meanDyXHat[j] = Float(sums[width + j] / n)
            scale[j] = gamma[j] * inverseStd[j]
        }
        return InputGradientFormula(scale: scale, meanGradient: meanDy, meanGradientXHat: meanDyXHat)
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

    public var hasParameters: Bool { true }
    public func outputShape(input: FeatureShape) throws -> FeatureShape { input }
    /// γ and β per feature, or per channel of an image.
    public func parameterCount(input: FeatureShape) -> Int { saturatingProduct(2, input.image?.channels ?? input.count) }
    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        let channels = input.image?.channels ?? input.count
        return [BatchNorm(configIndex: configIndex, channels: channels, positions: input.count / channels,
                          momentum: momentum, epsilon: epsilon, trainable: !frozen,
                          flattenedImage: input.image == nil ? input.flattenedImage : nil)]
    }
}
