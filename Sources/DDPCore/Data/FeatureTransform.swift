/// CaseIterable so config errors can list the accepted values.
public enum Normalization: String, Sendable, CaseIterable {
    case scale, standardize, none
}

/// Per-feature affine map x' = x * scale[f] + shift[f], fitted on the TRAINING set only and applied
/// to train, validation and test alike, so no statistic of held-out data leaks into training.
public struct FeatureTransform: Sendable, Equatable {
    public var scale: [Float]
    public var shift: [Float]

    public init(scale: [Float], shift: [Float]) {
        precondition(scale.count == shift.count, "FeatureTransform: \(scale.count) scales, \(shift.count) shifts")
        self.scale = scale
        self.shift = shift
    }

    public static func identity(featureCount: Int) -> FeatureTransform {
        FeatureTransform(scale: Array(repeating: 1, count: featureCount),
                         shift: Array(repeating: 0, count: featureCount))
    }

    /// scale: bytes storage → x/255 for every feature; float storage → per-feature min-max to [0,1],
    ///        x' = (x - min)/(max - min) (a constant feature maps to 0).
    /// standardize: x' = (x - mean)/std with population std from the training set (std 0 → divide by 1).
    /// none: identity.
    public static func fit(_ normalization: Normalization, on data: Dataset) -> FeatureTransform {
        let width = data.featureCount
        var transform = identity(featureCount: width)
        switch normalization {
        case .none:
            break
        case .scale:
            if data.holdsBytes {
                transform.scale = Array(repeating: 1 / 255, count: width)
                break
            }
            guard let stats = FeatureStatistics(data) else { break }
            for f in 0..<width {
                let range = stats.high[f] - stats.low[f]
                transform.scale[f] = range > 0 ? Float(1 / range) : 0
                transform.shift[f] = range > 0 ? Float(-stats.low[f] / range) : 0
            }
        case .standardize:
            guard let stats = FeatureStatistics(data) else { break }
            for f in 0..<width {
                let std = stats.variance[f].squareRoot()
                let divisor = std > 0 ? std : 1
                transform.scale[f] = Float(1 / divisor)
                transform.shift[f] = Float(-stats.mean[f] / divisor)
            }
        }
        return transform
    }
}

/// Per-feature min, max, mean and population variance in one pass over the rows. Sums are of
/// x - x₀ (x₀ = the first row), in Double, so var = E[(x-x₀)²] - E[x-x₀]² does not cancel badly.
private struct FeatureStatistics {
    var low: [Double], high: [Double], mean: [Double], variance: [Double]

    init?(_ data: Dataset) {
        guard data.count > 0, data.featureCount > 0 else { return nil }
        let width = data.featureCount, rows = data.count
        // Five columns of accumulators side by side: low, high, x₀, Σ(x-x₀), Σ(x-x₀)².
        var acc = [Double](repeating: 0, count: 5 * width)
        func accumulate(_ value: (Int) -> Double) {
            acc.withUnsafeMutableBufferPointer { acc in
                let low = acc.baseAddress!, high = low + width, origin = high + width
                let sum = origin + width, squares = sum + width
                for f in 0..<width { (low[f], high[f], origin[f]) = (value(f), value(f), value(f)) }
                for row in 0..<rows {
                    let base = row * width
                    for f in 0..<width {
                        let x = value(base + f)
                        low[f] = min(low[f], x)
                        high[f] = max(high[f], x)
                        let d = x - origin[f]
                        sum[f] += d
                        squares[f] += d * d
                    }
                }
            }
        }
        data.withFeatures(bytes: { v in accumulate { Double(v[$0]) } }, floats: { v in accumulate { Double(v[$0]) } })
        let n = Double(rows)
        low = Array(acc[0..<width])
        high = Array(acc[width..<2 * width])
        mean = (0..<width).map { acc[2 * width + $0] + acc[3 * width + $0] / n }
        variance = (0..<width).map { f in
            let m = acc[3 * width + f] / n
            return max(0, acc[4 * width + f] / n - m * m)
        }
    }
}

/// The fitted transform travels in the weights file's safetensors metadata (best, final and
/// checkpoint weights), so `ddp predict` and `ddp eval` normalize new data exactly as training
/// did without the training data. Each value is written as Swift's shortest decimal that reads
/// back to the same Float, comma-separated, under `ddp.input_scale` and `ddp.input_shift`
/// (`ddp.input_normalize` names the method, for people reading the header).
extension FeatureTransform {
    static let scaleKey = "ddp.input_scale", shiftKey = "ddp.input_shift", normalizeKey = "ddp.input_normalize"

    public func metadata(normalization: Normalization) -> [String: String] {
        [Self.normalizeKey: normalization.rawValue,
         Self.scaleKey: scale.map { "\($0)" }.joined(separator: ","),
         Self.shiftKey: shift.map { "\($0)" }.joined(separator: ",")]
    }

    /// The transform stored in `metadata`, or nil when the file carries none (written before
    /// ddp saved it, or by torch). `file` names the weights file in errors.
    public init?(metadata: [String: String], file: String) throws {
        guard let scaleText = metadata[Self.scaleKey], let shiftText = metadata[Self.shiftKey] else {
            if metadata[Self.scaleKey] != nil || metadata[Self.shiftKey] != nil {
                throw DDPError(.weights, "\(file): metadata holds only one of \(Self.scaleKey) and \(Self.shiftKey)")
            }
            return nil
        }
        func values(_ text: String, _ key: String) throws -> [Float] {
            try text.split(separator: ",", omittingEmptySubsequences: false).map { field in
                guard let value = Float(field), value.isFinite else {
                    throw DDPError(.weights, "\(file): metadata \(key) holds '\(field.prefix(40))', not a finite number")
                }
                return value
            }
        }
        let scale = try values(scaleText, Self.scaleKey), shift = try values(shiftText, Self.shiftKey)
        guard scale.count == shift.count else {
            throw DDPError(.weights, "\(file): metadata \(Self.scaleKey) has \(scale.count) values but \(Self.shiftKey) has \(shift.count)")
        }
        self.init(scale: scale, shift: shift)
    }
}
