/// Additive zero-mean Gaussian noise (keras.layers.GaussianNoise): x + N(0, stddev²) in
/// training, identity in inference. Noise is keyed like dropout masks, by sample not by rank.
public final class GaussianNoise: Layer {
    public let configIndex: Int
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public var displayName: String { "GaussianNoise(\(stddev))" }
    public let stddev: Float

    public init(configIndex: Int, width: Int, stddev: Float) {
        self.configIndex = configIndex
        inputWidth = width
        self.stddev = stddev
    }

    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        let width = inputWidth
        guard context.training && stddev > 0 else {
            output.update(from: input, count: batch * width)
            return
        }
        let seed = context.seed, epoch = UInt64(context.epoch), layer = UInt64(configIndex)
        for row in 0..<batch {
            let rowKey = CounterRandom.bits(seed, .noise, epoch, UInt64(context.sampleRows[row]), layer)
            for unit in 0..<width {
                let z = CounterRandom.normal(rowKey: rowKey, unit: unit)
                output[row * width + unit] = input[row * width + unit] + stddev * Float(z)
            }
        }
    }

    /// The noise is additive, so dx = dy.
    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        dx?.update(from: dy, count: batch * inputWidth)
    }
}

/// `type: gaussian_noise`.
public struct GaussianNoiseSpec: ParsableLayerSpec, Equatable {
    static let typeName = "gaussian_noise"
    public var stddev: Float

    public init(stddev: Float) { self.stddev = stddev }

    static func parse(_ entry: inout ConfigSection) throws -> GaussianNoiseSpec {
        GaussianNoiseSpec(stddev: try entry.float("stddev", default: 0.1, in: 0...1e6))
    }

    public func outputShape(input: FeatureShape) throws -> FeatureShape { input }
    public func parameterCount(input: FeatureShape) -> Int { 0 }
    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        [GaussianNoise(configIndex: configIndex, width: input.count, stddev: stddev)]
    }
}
