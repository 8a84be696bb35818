import Foundation

/// Axis bounds and ticks at "nice" numbers (1, 2 or 5 × 10^k apart), as Heckbert's
/// "Nice numbers for graph labels" (Graphics Gems, 1990).
public struct NiceScale: Sendable, Equatable {
    public let lower: Double
    public let upper: Double
    public let step: Double
    public let ticks: [Double]

    /// - Parameters:
    ///   - expand: widen the bounds to the nearest ticks (else keep low…high and put ticks inside).
    ///   - integer: steps of at least 1 and whole numbers only (epochs, counts).
    public init(_ low: Double, _ high: Double, maxTicks: Int = 6, expand: Bool = true, integer: Bool = false) {
        var low = low.isFinite ? low : 0, high = high.isFinite ? high : 1
        if low > high { swap(&low, &high) }
        if high - low <= max(abs(low), abs(high)) * 1e-12 {
            let pad = integer ? 1 : (low == 0 ? 1 : abs(low) * 0.1)
            low -= pad
            high += pad
        }
        var step = Self.niceNumber((high - low) / Double(max(maxTicks - 1, 1)), round: true)
        if integer { step = max(1, step.rounded(.up)) }
        if expand {
            lower = (low / step).rounded(.down) * step
            upper = (high / step).rounded(.up) * step
        } else {
            lower = low
            upper = high
        }
        self.step = step
        let first = Int((lower / step - 1e-9).rounded(.up)), last = Int((upper / step + 1e-9).rounded(.down))
        ticks = first <= last ? (first...min(last, first + 60)).map { Double($0) * step } : []
    }

    /// The nice number near `x`: rounded to 1, 2, 5 or 10 × 10^k (or the ceiling of those).
    public static func niceNumber(_ x: Double, round: Bool) -> Double {
        guard x > 0, x.isFinite else { return 1 }
        let exponent = floor(log10(x))
        let fraction = x / pow(10, exponent)
        let nice: Double
        if round {
            nice = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        } else {
            nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
        }
        return nice * pow(10, exponent)
    }

    /// A tick label with just enough decimals for this scale's step.
    public func label(_ value: Double) -> String { Self.format(value, step: step) }

    public static func format(_ value: Double, step: Double) -> String {
        let magnitude = max(abs(value), step)
        if step < 1e-4 || magnitude >= 1e6 {
            return String(format: "%.1e", value)
        }
        let decimals = max(0, Int(-floor(log10(step) + 1e-9)))
        let text = String(format: "%.\(decimals)f", value)
        return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
    }
}

/// A linear map from a data interval to a pixel interval.
struct LinearMap {
    var domain: (Double, Double)
    var range: (Double, Double)
    func callAsFunction(_ value: Double) -> Double {
        let span = domain.1 - domain.0
        return range.0 + (span == 0 ? 0.5 : (value - domain.0) / span) * (range.1 - range.0)
    }
}
