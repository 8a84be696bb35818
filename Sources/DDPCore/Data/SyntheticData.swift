#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Two-dimensional toy problems generated from counter-based randomness, so every rank builds
/// the same data bit for bit from the seed alone. The first counter word names the use
/// (below) so the shuffle, the noise and the circle points never share random numbers.
enum SyntheticData {
    private static let shuffleKey: UInt64 = 1, noiseKey: UInt64 = 2, pointKey: UInt64 = 3

    /// sklearn.datasets.make_moons(n_samples, noise, shuffle=True): n_out = n/2 outer points
    /// (cos t, sin t), t = linspace(0, π, n_out), label 0; n_in = n - n_out inner points
    /// (1 - cos t, 1 - sin t - 0.5), t = linspace(0, π, n_in), label 1; rows shuffled
    /// (Fisher–Yates), then N(0, noise²) added to each coordinate.
    static func moons(samples: Int, noise: Double, seed: UInt64) throws -> Dataset {
        try checkSamples(samples, "moons")
        guard noise >= 0, noise.isFinite else {
            throw DDPError(.config, "moons: noise must be a finite number ≥ 0, got \(noise)")
        }
        let outer = samples / 2, inner = samples - outer
        func linspace(_ i: Int, _ n: Int) -> Double { n > 1 ? Double.pi * Double(i) / Double(n - 1) : 0 }
        var points = [(x: Double, y: Double, label: Float)]()
        points.reserveCapacity(samples)
        for i in 0..<outer {
            let t = linspace(i, outer)
            points.append((cos(t), sin(t), 0))
        }
        for i in 0..<inner {
            let t = linspace(i, inner)
            points.append((1 - cos(t), 1 - sin(t) - 0.5, 1))
        }
        for i in stride(from: samples - 1, to: 0, by: -1) {
            let u = CounterRandom.uniformDouble(seed, .data, shuffleKey, UInt64(i))
            points.swapAt(i, min(i, Int(u * Double(i + 1))))
        }
        var features = [Float]()
        features.reserveCapacity(2 * samples)
        for (row, point) in points.enumerated() {
            features.append(Float(point.x + noise * CounterRandom.normal(seed, .data, noiseKey, UInt64(row), 0)))
            features.append(Float(point.y + noise * CounterRandom.normal(seed, .data, noiseKey, UInt64(row), 1)))
        }
        return Dataset(count: samples, featureCount: 2, storage: .floats(features),
                       labels: points.map(\.label), origin: "moons(samples: \(samples), noise: \(noise))")
    }

    /// Points uniform in [-2, 2]², label 1 if x₁² + x₂² > radiusSquared else 0. The label is
    /// computed from the stored Float coordinates, so it agrees with the features exactly.
    static func circles(samples: Int, radiusSquared: Double, seed: UInt64) throws -> Dataset {
        try checkSamples(samples, "circles")
        guard radiusSquared > 0, radiusSquared.isFinite else {
            throw DDPError(.config, "circles: radiusSquared must be a finite number > 0, got \(radiusSquared)")
        }
        var features = [Float]()
        var labels = [Float]()
        features.reserveCapacity(2 * samples)
        labels.reserveCapacity(samples)
        for row in 0..<samples {
            let x1 = Float(-2 + 4 * CounterRandom.uniformDouble(seed, .data, pointKey, UInt64(row), 0))
            let x2 = Float(-2 + 4 * CounterRandom.uniformDouble(seed, .data, pointKey, UInt64(row), 1))
            features.append(x1)
            features.append(x2)
            labels.append(Double(x1) * Double(x1) + Double(x2) * Double(x2) > radiusSquared ? 1 : 0)
        }
        return Dataset(count: samples, featureCount: 2, storage: .floats(features), labels: labels,
                       origin: "circles(samples: \(samples), radiusSquared: \(radiusSquared))")
    }

    private static func checkSamples(_ samples: Int, _ name: String) throws {
        guard samples >= 2, samples <= Int(Int32.max) else {
            throw DDPError(.config, "\(name): samples must be between 2 and \(Int32.max), got \(samples)")
        }
    }
}
