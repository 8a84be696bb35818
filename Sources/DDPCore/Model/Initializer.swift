/// Weight initializers with Keras names and Keras formulas (fan_in = inputs, fan_out = units).
///
/// `torch` reproduces nn.Linear's default, kaiming_uniform(a = √5): U(−1/√fan_in, 1/√fan_in).
/// The truncated normals draw N(0, 1) restricted to |z| < 2 and scale by stddev / 0.8796…,
/// as keras.initializers.VarianceScaling does.
public enum Initializer: String, Sendable, CaseIterable {
    case zeros, ones
    case glorotUniform = "glorot_uniform", glorotNormal = "glorot_normal"
    case heUniform = "he_uniform", heNormal = "he_normal"
    case lecunUniform = "lecun_uniform", lecunNormal = "lecun_normal"
    case torch

    /// Fills `values` for a tensor with the given fans; `key` makes every tensor's stream distinct.
    func fill(_ values: UnsafeMutableBufferPointer<Float>, fanIn: Int, fanOut: Int, seed: UInt64, key: UInt64) {
        let fanIn = Double(max(fanIn, 1)), fanOut = Double(max(fanOut, 1))
        switch self {
        case .zeros: values.update(repeating: 0)
        case .ones: values.update(repeating: 1)
        case .glorotUniform: uniform(values, limit: (6 / (fanIn + fanOut)).squareRoot(), seed, key)
        case .heUniform: uniform(values, limit: (6 / fanIn).squareRoot(), seed, key)
        case .lecunUniform: uniform(values, limit: (3 / fanIn).squareRoot(), seed, key)
        case .torch: uniform(values, limit: 1 / fanIn.squareRoot(), seed, key)
        case .glorotNormal: truncatedNormal(values, variance: 2 / (fanIn + fanOut), seed, key)
        case .heNormal: truncatedNormal(values, variance: 2 / fanIn, seed, key)
        case .lecunNormal: truncatedNormal(values, variance: 1 / fanIn, seed, key)
        }
    }

    private func uniform(_ values: UnsafeMutableBufferPointer<Float>, limit: Double, _ seed: UInt64, _ key: UInt64) {
        for i in values.indices {
            let u = CounterRandom.uniformDouble(seed, .initialization, key, UInt64(i))
            values[i] = Float((2 * u - 1) * limit)
        }
    }

    private func truncatedNormal(_ values: UnsafeMutableBufferPointer<Float>, variance: Double,
                                 _ seed: UInt64, _ key: UInt64) {
        let stddev = variance.squareRoot() / 0.879_625_661_034_239_78
        for i in values.indices {
            var attempt: UInt64 = 0
            var z = CounterRandom.normal(seed, .initialization, key, UInt64(i), attempt)
            while abs(z) >= 2 {
                attempt += 1
                z = CounterRandom.normal(seed, .initialization, key, UInt64(i), attempt)
            }
            values[i] = Float(z * stddev)
        }
    }
}

/// An L1/L2 (Elastic Net) penalty with Keras semantics: l1·Σ|w| + l2·Σw².
/// Its gradient is l1·sign(w) + 2·l2·w (so `l2: 0.01` on w = 0.5 adds 0.01 to the gradient).
public struct Penalty: Sendable, Equatable {
    public var l1: Float
    public var l2: Float
    public init(l1: Float = 0, l2: Float = 0) { self.l1 = l1; self.l2 = l2 }
    public var isZero: Bool { l1 == 0 && l2 == 0 }

    /// Adds the penalty's gradient into `gradients` and returns the penalty value (in Double).
    @inline(__always)
    func apply(values: UnsafePointer<Float>, gradients: UnsafeMutablePointer<Float>, count: Int) -> Double {
        var absSum: Float = 0, squareSum: Float = 0
        let l1 = self.l1, twoL2 = 2 * self.l2
        for i in 0..<count {
            let w = values[i]
            absSum += abs(w)
            squareSum += w * w
            let sign: Float = w > 0 ? 1 : (w < 0 ? -1 : 0)
            gradients[i] += l1 * sign + twoL2 * w
        }
        return Double(l1) * Double(absSum) + Double(self.l2) * Double(squareSum)
    }

    /// The penalty value alone.
    func value(of values: UnsafePointer<Float>, count: Int) -> Double {
        var absSum: Float = 0, squareSum: Float = 0
        for i in 0..<count {
            absSum += abs(values[i])
            squareSum += values[i] * values[i]
        }
        return Double(l1) * Double(absSum) + Double(l2) * Double(squareSum)
    }
}
