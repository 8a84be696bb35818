import _CDropoutMask

/// Counter-based randomness: every random number is a pure function of a key, so nothing
/// depends on call order, batch composition or which rank holds a sample.
///
/// A dropout mask for sample `i` in epoch `e` at layer `l`, unit `u` is
/// `uniform(rowKey: bits(seed, .dropout, e, i, l), unit: u)`: the same on 1 or N ranks and after
/// a resume.
/// The mixer is SplitMix64's finalizer (Steele, Lea, Flood 2014) applied to a running combination
/// of the key words, a bijective avalanche hash that passes BigCrush as a counter-mode generator.
public enum CounterRandom {
    /// Which stream a number belongs to, so that two uses with equal counters never collide.
    public enum Stream: UInt64, Sendable {
        case initialization = 1
        case shuffle = 2
        case dropout = 3
        case noise = 4
        case data = 5
        case weightNoise = 6
        case augmentation = 7
    }

    @inline(__always)
    public static func mix(_ z: UInt64) -> UInt64 {
        var z = z &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 64 random bits for the key (seed, stream, a, b, c, d).
    @inline(__always)
    public static func bits(_ seed: UInt64, _ stream: Stream, _ a: UInt64, _ b: UInt64 = 0,
                            _ c: UInt64 = 0, _ d: UInt64 = 0) -> UInt64 {
        var h = mix(seed ^ (stream.rawValue &* 0xD6E8_FEB8_6659_FD93))
        h = mix(h ^ a)
        h = mix(h ^ b)
        h = mix(h ^ c)
        return mix(h ^ d)
    }

    /// A uniform Float in [0, 1) with 24 random bits.
    @inline(__always)
    public static func uniform(_ seed: UInt64, _ stream: Stream, _ a: UInt64, _ b: UInt64 = 0,
                               _ c: UInt64 = 0, _ d: UInt64 = 0) -> Float {
        Float(bits(seed, stream, a, b, c, d) >> 40) * 0x1p-24
    }

    /// A uniform Double in [0, 1) with 53 random bits.
    @inline(__always)
    public static func uniformDouble(_ seed: UInt64, _ stream: Stream, _ a: UInt64, _ b: UInt64 = 0,
                                     _ c: UInt64 = 0, _ d: UInt64 = 0) -> Double {
        Double(bits(seed, stream, a, b, c, d) >> 11) * 0x1p-53
    }

    /// A uniform Float in [0, 1) for element `unit` of a row whose key is `bits(…)` of the row:
    /// one mixing round per element instead of five, for the per-element hot loops.
    @inline(__always)
    public static func uniform(rowKey: UInt64, unit: Int) -> Float {
        Float(mix(rowKey ^ (UInt64(unit) &* 0x9E37_79B9_7F4A_7C15)) >> 40) * 0x1p-24
    }

    /// Dropout's keep factors for units 0..<count of a row whose key is `bits(…)` of the row:
    /// out[unit] = uniform(rowKey:, unit:) < rate ? 0 : scale. The same draw, in C compiled per
    /// CPU (`ddp_dropout_keep_row`: 2.5× faster with AVX-512), bit for bit.
    @inline(__always)
    public static func keepFactors(rowKey: UInt64, count: Int, rate: Float, scale: Float, into out: UnsafeMutablePointer<Float>) {
        ddp_dropout_keep_row(rowKey, count, rate, scale, out)
    }

    /// A standard normal Double for element `unit` of a row whose key is `bits(…)` of the row.
    @inline(__always)
    public static func normal(rowKey: UInt64, unit: Int) -> Double {
        boxMuller(mix(rowKey ^ (UInt64(unit) &* 0x9E37_79B9_7F4A_7C15)))
    }

    /// A standard normal Double by Box–Muller from two independent uniforms of the same key.
    @inline(__always)
    public static func normal(_ seed: UInt64, _ stream: Stream, _ a: UInt64, _ b: UInt64 = 0,
                              _ c: UInt64 = 0, _ d: UInt64 = 0) -> Double {
        boxMuller(bits(seed, stream, a, b, c, d))
    }

    /// Box–Muller from one 64-bit word and its remix: two independent uniforms.
    @inline(__always)
    static func boxMuller(_ word: UInt64) -> Double {
        let u1 = (Double(word >> 11) + 1) * 0x1p-53          // (0, 1]: log is finite
        let u2 = Double(mix(word) >> 11) * 0x1p-53
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) private func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Darwin
@inline(__always) private func _log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
