/// Inverted dropout as torch.nn.Dropout: in training each unit is zeroed with probability
/// `rate` and kept units are scaled by 1/(1 − rate), so the expected activation is unchanged;
/// in inference it is the identity.
///
/// The mask of unit u of dataset sample i in epoch e is drawn from the counter-based generator
/// keyed (seed, epoch, sample, layer, unit): the same whichever batch or rank the sample is in.
/// One full hash per (sample, layer) row, then one mixing round per unit.
public final class Dropout: Layer {
    public let configIndex: Int
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public var displayName: String { "Dropout(\(rate))" }
    public let rate: Float
    /// 0 or 1/(1 − rate) per element of the last training forward.
    private var mask = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    private var lastForwardWasTraining = false

    public init(configIndex: Int, width: Int, rate: Float) {
        self.configIndex = configIndex
        inputWidth = width
        self.rate = rate
    }

    deinit { mask.deallocate() }

    public func reserve(maxBatch: Int) {
        mask.deallocate()
        mask = .allocate(capacity: max(maxBatch, 1) * inputWidth)
        mask.initialize(repeating: 1)
    }

    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        let width = inputWidth
        lastForwardWasTraining = context.training && rate > 0
        guard lastForwardWasTraining else {
            output.update(from: input, count: batch * width)
            return
        }
        let keepScale: Float = rate >= 1 ? 0 : 1 / (1 - rate)
        let seed = context.seed, epoch = UInt64(context.epoch), layer = UInt64(configIndex)
        let mask = self.mask.baseAddress!, rate = self.rate
        for row in 0..<batch {
            let rowKey = CounterRandom.bits(seed, .dropout, epoch, UInt64(context.sampleRows[row]), layer)
            let offset = row * width
            CounterRandom.keepFactors(rowKey: rowKey, count: width, rate: rate, scale: keepScale, into: mask + offset)
            for unit in offset..<offset + width { output[unit] = input[unit] * mask[unit] }
        }
    }

    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        guard let dx else { return }
        let count = batch * inputWidth
        guard lastForwardWasTraining else {
            dx.update(from: dy, count: count)
            return
        }
        let mask = self.mask.baseAddress!
        for i in 0..<count { dx[i] = dy[i] * mask[i] }
    }
}

/// `type: dropout`.
public struct DropoutSpec: ParsableLayerSpec, Equatable {
    static let typeName = "dropout"
    public var rate: Float

    public init(rate: Float) { self.rate = rate }

    static func parse(_ entry: inout ConfigSection) throws -> DropoutSpec {
        DropoutSpec(rate: try entry.float("rate", default: 0.5, in: 0...0.999_999))
    }

    public func outputShape(input: FeatureShape) throws -> FeatureShape { input }
    public func parameterCount(input: FeatureShape) -> Int { 0 }
    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        [Dropout(configIndex: configIndex, width: input.count, rate: rate)]
    }
}
