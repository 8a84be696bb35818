/// Spatial dropout over channels-last images, as Keras's SpatialDropout2D and torch's
/// nn.Dropout2d: in training each channel of each sample is zeroed with probability `rate`
/// for all its pixels at once, and kept channels are scaled by 1/(1 − rate); in inference it
/// is the identity. Neighbouring pixels of a feature map are strongly correlated, so dropping
/// single values (`Dropout`) barely regularizes a convolution's output; dropping whole maps
/// does (Tompson et al. 2015, "Efficient object localization using convolutional networks").
///
/// input and output (B, H, W, C). The keep factor of channel c of dataset sample i in epoch e
/// is drawn as `Dropout` draws unit c of a row: keyed (seed, epoch, sample, layer, channel)
/// through `CounterRandom.keepFactors`, C factors per sample, so a sample's mask does not
/// depend on its batch, its position there or the number of ranks.
public final class SpatialDropout2D: Layer {
    public let configIndex: Int
    public let image: ImageShape
    public let rate: Float
    public var inputWidth: Int { image.featureCount }
    public var outputWidth: Int { inputWidth }
    public var displayName: String { "SpatialDropout2D(\(rate))" }
    /// 0 or 1/(1 − rate) per (sample, channel) of the last training forward, (batch, C).
    private var mask = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    private var lastForwardWasTraining = false

    public init(configIndex: Int, image: ImageShape, rate: Float) {
        self.configIndex = configIndex
        self.image = image
        self.rate = rate
    }

    deinit { mask.deallocate() }

    public func reserve(maxBatch: Int) {
        mask.deallocate()
        mask = .allocate(capacity: max(maxBatch, 1) * image.channels)
        mask.initialize(repeating: 1)
    }

    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        lastForwardWasTraining = context.training && rate > 0
        guard lastForwardWasTraining else {
            output.update(from: input, count: batch * inputWidth)
            return
        }
        guard let mask = mask.baseAddress else { preconditionFailure("SpatialDropout2D \(configIndex): training before reserve(maxBatch:)") }
        let keepScale: Float = rate >= 1 ? 0 : 1 / (1 - rate)
        let seed = context.seed, epoch = UInt64(context.epoch), layer = UInt64(configIndex), channels = image.channels
        for row in 0..<batch {
            let rowKey = CounterRandom.bits(seed, .dropout, epoch, UInt64(context.sampleRows[row]), layer)
            CounterRandom.keepFactors(rowKey: rowKey, count: channels, rate: rate, scale: keepScale, into: mask + row * channels)
        }
        scaleChannels(input, by: mask, into: output, batch: batch)
    }

    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        guard let dx else { return }
        guard lastForwardWasTraining, let mask = mask.baseAddress else {
            dx.update(from: dy, count: batch * inputWidth)
            return
        }
        scaleChannels(dy, by: mask, into: dx, batch: batch)
    }

    /// y[b, p, c] = x[b, p, c] · mask[b, c], eight channels at a time.
    private func scaleChannels(_ x: UnsafePointer<Float>, by mask: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
        let channels = image.channels, end = channels - channels % 8, pixels = image.height * image.width
        for sample in 0..<batch {
            let factors = mask + sample * channels
            for pixel in 0..<pixels {
                let o = (sample * pixels + pixel) * channels
                var c = 0
                while c < end {
                    store8(load8(x + o + c) * load8(factors + c), y + o + c)
                    c += 8
                }
                while c < channels { y[o + c] = x[o + c] * factors[c]; c += 1 }
            }
        }
    }
}

/// `type: spatial_dropout2d`.
public struct SpatialDropout2DSpec: ParsableLayerSpec, Equatable {
    static let typeName = "spatial_dropout2d"
    public var rate: Float

    public init(rate: Float) { self.rate = rate }

    static func parse(_ entry: inout ConfigSection) throws -> SpatialDropout2DSpec {
        SpatialDropout2DSpec(rate: try entry.float("rate", default: 0.5, in: 0...0.999_999))
    }

    public var inputKind: LayerInputKind { .image }

    public func outputShape(input: FeatureShape) throws -> FeatureShape {
        _ = try input.requiredImage(by: Self.typeName, otherwise: "on flat features {type: dropout} drops single features")
        return input
    }

    public func parameterCount(input: FeatureShape) -> Int { 0 }

    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        [SpatialDropout2D(configIndex: configIndex, image: input.image!, rate: rate)]
    }
}
