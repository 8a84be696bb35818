/// A Keras weight constraint (keras.constraints, `axis=0`), projected onto a tensor after every
/// optimizer update. Keras's Dense kernel is (inputs, units), so axis 0 is each unit's incoming
/// weights: in our torch layout (units, inputs) that is one row per unit. A bias (units,) is one
/// row: axis 0 spans the whole vector. A conv2d kernel is one row per filter over (kh, kw, in):
/// Keras's `axis=[0, 1, 2]` on its (kh, kw, in, out) kernel, the axes its documentation
/// recommends for convolutions (its default `axis=0` would normalize each column of kh alone).
/// With n = ‖row‖₂ and Keras's epsilon 1e-7:
///
///     max_norm m:              w ← w · clip(n, 0, m) / (ε + n)
///     non_neg:                 w ← w · [w ≥ 0]
///     unit_norm:               w ← w / (ε + n)
///     min_max_norm {min, max, rate}:
///                              w ← w · (rate · clip(n, min, max) + (1 − rate) · n) / (ε + n)
public enum WeightConstraint: Sendable, Equatable {
    case maxNorm(Float)
    case nonNegative
    case unitNorm
    case minMaxNorm(min: Float, max: Float, rate: Float)

    /// keras.backend.epsilon().
    static let epsilon: Float = 1e-7

    /// Projects `rows` consecutive rows of `rowLength` floats starting at `values`.
    public func apply(_ values: UnsafeMutablePointer<Float>, rows: Int, rowLength: Int) {
        if case .nonNegative = self {
            for i in 0..<rows * rowLength where !(values[i] >= 0) { values[i] = 0 }
            return
        }
        for row in 0..<rows {
            let w = values + row * rowLength
            var squares: Float = 0
            for i in 0..<rowLength { squares += w[i] * w[i] }
            let norm = squares.squareRoot()
            let desired: Float
            switch self {
            case let .maxNorm(maximum): desired = min(max(norm, 0), maximum)
            case .unitNorm: desired = 1
            case let .minMaxNorm(minimum, maximum, rate): desired = rate * min(max(norm, minimum), maximum) + (1 - rate) * norm
            case .nonNegative: desired = norm
            }
            let factor = desired / (Self.epsilon + norm)
            for i in 0..<rowLength { w[i] *= factor }
        }
    }

    /// `kernel_constraint` / `bias_constraint` of a layer entry: `{max_norm: m}`,
    /// `{non_neg: true}`, `{unit_norm: true}` or `{min_max_norm: {min, max, rate}}`.
    static func parse(_ entry: inout ConfigSection, _ key: String) throws -> WeightConstraint? {
        guard var section = try entry.section(key) else { return nil }
        let path = entry.key(key)
        let present = ["max_norm", "non_neg", "unit_norm", "min_max_norm"].filter { section.node($0) != nil }
        guard present.count == 1 else {
            throw DDPError(.config, "\(path): expected exactly one of max_norm, non_neg, unit_norm, min_max_norm"
                           + (present.isEmpty ? "" : ", got \(present.joined(separator: " and "))"))
        }
        let constraint: WeightConstraint
        switch present[0] {
        case "max_norm":
            guard let maximum = try section.double("max_norm"), maximum > 0 else {
                throw DDPError(.config, "\(path).max_norm: expected a positive number")
            }
            constraint = .maxNorm(Float(maximum))
        case "non_neg", "unit_norm":
            guard try section.bool(present[0], default: false) else {
                throw DDPError(.config, "\(path).\(present[0]): expected true (leave the key out for no constraint)")
            }
            constraint = present[0] == "non_neg" ? .nonNegative : .unitNorm
        default:
            guard var bounds = try section.section("min_max_norm") else {
                throw DDPError(.config, "\(path).min_max_norm: expected a mapping {min, max, rate}")
            }
            let minimum = try bounds.float("min", default: 0, in: 0...1e9)
            let maximum = try bounds.float("max", default: 1, in: 0...1e9)
            let rate = try bounds.float("rate", default: 1, in: 0...1)
            try bounds.finish()
            guard minimum <= maximum else {
                throw DDPError(.config, "\(path).min_max_norm: min \(minimum) is above max \(maximum)")
            }
            constraint = .minMaxNorm(min: minimum, max: maximum, rate: rate)
        }
        try section.finish()
        return constraint
    }
}
