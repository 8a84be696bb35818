import Foundation
import XCTest
@testable import DDPCore

/// Dropout, GaussianNoise and BatchNorm behaviour beyond their gradients: training versus
/// inference, scaling, masks keyed by sample, batch statistics and running statistics.
final class LayerBehaviourTests: XCTestCase {

    // MARK: Dropout

    /// The mask (output ÷ input with inputs of 1) of each batch row.
    private func dropoutMasks(rate: Float, width: Int, rows: [Int], seed: UInt64 = 42, epoch: Int = 0,
                              configIndex: Int = 1) throws -> [[Float]] {
        let probe = LayerProbe(Dropout(configIndex: configIndex, width: width, rate: rate), batch: rows.count,
                               training: true, seed: seed, epoch: epoch, rows: rows)
        probe.input.update(repeating: 1)
        try probe.forward()
        return (0..<rows.count).map { Array(probe.output[$0 * width..<($0 + 1) * width]) }
    }

    func testDropoutIsIdentityInInference() throws {
        let probe = LayerProbe(Dropout(configIndex: 0, width: 8, rate: 0.5), batch: 4, training: false)
        var random = TestRandom(seed: 1)
        store(random.array(32, -3, 3), into: probe.input)
        store(random.array(32, -1, 1), into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), Array(probe.input))
        XCTAssertEqual(Array(probe.inputGradient), Array(probe.upstream))
    }

    func testDropoutScalesKeptUnitsAndPreservesTheMean() throws {
        let rate: Float = 0.3, width = 64, batch = 256
        let probe = LayerProbe(Dropout(configIndex: 0, width: width, rate: rate), batch: batch, training: true)
        var random = TestRandom(seed: 2)
        let inputs = random.array(width * batch, 0.5, 1.5)
        store(inputs, into: probe.input)
        try probe.forward()
        var dropped = 0, outputSum = 0.0, inputSum = 0.0
        for i in 0..<width * batch {
            let y = probe.output[i], x = inputs[i]
            if y == 0 {
                dropped += 1
            } else {
                // kept units are x/(1 − rate)
                XCTAssertEqual(Double(y), Double(x) / 0.7, accuracy: 1e-6 * Double(x))
            }
            outputSum += Double(y)
            inputSum += Double(x)
        }
        let fraction = Double(dropped) / Double(width * batch)
        XCTAssertEqual(fraction, 0.3, accuracy: 0.02)          // σ ≈ 0.0036
        XCTAssertEqual(outputSum / inputSum, 1, accuracy: 0.03) // the expected activation is unchanged
    }

    func testDropoutMaskFollowsTheSampleNotTheBatchPosition() throws {
        let a = try dropoutMasks(rate: 0.5, width: 64, rows: [10, 20, 30, 40])
        let b = try dropoutMasks(rate: 0.5, width: 64, rows: [40, 30, 99])
        XCTAssertEqual(a[3], b[0], "sample 40 at positions 3 and 0")
        XCTAssertEqual(a[2], b[1], "sample 30 at positions 2 and 1")
        XCTAssertNotEqual(a[3], a[2], "different samples get different masks")
        XCTAssertNotEqual(b[2], a[3])
        // A batch of one sample alone gets that sample's mask too.
        XCTAssertEqual(try dropoutMasks(rate: 0.5, width: 64, rows: [20])[0], a[1])
    }

    func testDropoutMaskChangesWithEpochSeedAndLayer() throws {
        let base = try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], epoch: 0)
        XCTAssertEqual(try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], epoch: 0), base, "deterministic")
        let nextEpoch = try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], epoch: 1)
        XCTAssertNotEqual(nextEpoch[0], base[0])
        XCTAssertNotEqual(nextEpoch[1], base[1])
        XCTAssertNotEqual(try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], seed: 43)[0], base[0])
        XCTAssertNotEqual(try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], configIndex: 2)[0], base[0])
    }

    /// The C row loop that the layers call (compiled per CPU: on this machine its AVX-512 or
    /// AVX2 clone) draws exactly what the scalar definition `uniform(rowKey:unit:)` does, at
    /// widths around the vector lengths and at the rates' edges.
    func testKeepFactorsMatchTheScalarDrawBitForBit() {
        let out = UnsafeMutablePointer<Float>.allocate(capacity: 301)
        defer { out.deallocate() }
        for width in [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 256, 300] {
            for rate: Float in [0, 0.3, 0.5, 0.999, 1] {
                for sample in 0..<4 {
                    let rowKey = CounterRandom.bits(42, .dropout, 3, UInt64(sample * 1_000_003), 5)
                    out.initialize(repeating: .nan, count: 301)
                    CounterRandom.keepFactors(rowKey: rowKey, count: width, rate: rate, scale: 2.5, into: out)
                    for unit in 0..<width {
                        let expected: Float = CounterRandom.uniform(rowKey: rowKey, unit: unit) < rate ? 0 : 2.5
                        XCTAssertEqual(out[unit].bitPattern, expected.bitPattern, "width \(width), rate \(rate), unit \(unit)")
                    }
                    XCTAssertTrue(out[width].isNaN, "nothing written past the row (width \(width))")
                }
            }
        }
    }

    func testDropoutInsideANetwork() throws {
        let network = try makeNetwork(inputs: 16, [Layers.dropout(0.5)], maxBatch: 2)
        network.input.update(repeating: 1)
        try network.forward(batch: 2, context: makeContext(maxBatch: 2, training: false))
        XCTAssertEqual(copyOf(network.output, count: 32), Array(repeating: 1, count: 32))
        try network.forward(batch: 2, context: makeContext(maxBatch: 2, training: true))
        let output = copyOf(network.output, count: 32)
        XCTAssertTrue(output.allSatisfy { $0 == 0 || $0 == 2 })
        XCTAssertTrue(output.contains(0) && output.contains(2))
    }

    // MARK: GaussianNoise

    func testGaussianNoise() throws {
        let width = 64, batch = 64
        let inference = LayerProbe(GaussianNoise(configIndex: 0, width: width, stddev: 0.5), batch: batch, training: false)
        var random = TestRandom(seed: 3)
        store(random.array(width * batch, -1, 1), into: inference.input)
        try inference.forward()
        XCTAssertEqual(Array(inference.output), Array(inference.input), "identity in inference")

        let training = LayerProbe(GaussianNoise(configIndex: 0, width: width, stddev: 0.5), batch: batch, training: true)
        store(Array(inference.input), into: training.input)
        try training.forward()
        let noise = (0..<width * batch).map { Double(training.output[$0] - training.input[$0]) }
        let mean = noise.reduce(0, +) / Double(noise.count)
        let std = (noise.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(noise.count)).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 0.03)          // σ/√4096 ≈ 0.008
        XCTAssertEqual(std, 0.5, accuracy: 0.025)

        // Keyed by sample like dropout: the same sample in another position gets the same noise.
        let a = LayerProbe(GaussianNoise(configIndex: 0, width: 8, stddev: 1), batch: 2, training: true, rows: [5, 6])
        let b = LayerProbe(GaussianNoise(configIndex: 0, width: 8, stddev: 1), batch: 2, training: true, rows: [6, 5])
        try a.forward()
        try b.forward()
        XCTAssertEqual(Array(a.output[0..<8]), Array(b.output[8..<16]))
        XCTAssertNotEqual(Array(a.output[0..<8]), Array(a.output[8..<16]))
    }

    // MARK: BatchNorm

    /// A network that is one BatchNorm over 3 features, with the given γ and β.
    private func batchNormNetwork(batch: Int, momentum: Float = 0.1, epsilon: Float = 1e-5,
                                  gamma: [Float] = [2, 0.5, 1], beta: [Float] = [1, -1, 0.3]) throws -> Network {
        let network = try makeNetwork(inputs: 3, [Layers.batchNorm(momentum: momentum, epsilon: epsilon)], maxBatch: batch)
        store(gamma + beta, into: network.parameters)
        return network
    }

    /// Features with different means and spreads.
    private func features(_ batch: Int, seed: UInt64) -> [Float] {
        var random = TestRandom(seed: seed)
        return (0..<batch).flatMap { _ in [random.uniform(-3, 3) + 5, random.uniform(-0.2, 0.2) - 2, random.uniform(-1, 1)] }
    }

    private func columnStatistics(_ values: [Float], width: Int) -> (mean: [Double], biasedVariance: [Double]) {
        let rows = values.count / width
        var mean = [Double](repeating: 0, count: width), variance = [Double](repeating: 0, count: width)
        for j in 0..<width {
            for r in 0..<rows { mean[j] += Double(values[r * width + j]) }
            mean[j] /= Double(rows)
            for r in 0..<rows { variance[j] += pow(Double(values[r * width + j]) - mean[j], 2) }
            variance[j] /= Double(rows)
        }
        return (mean, variance)
    }

    func testBatchNormTrainingNormalizesWithBatchStatistics() throws {
        let batch = 64
        let network = try batchNormNetwork(batch: batch)
        let x = features(batch, seed: 4)
        store(x, into: network.input)
        try network.forward(batch: batch, context: makeContext(maxBatch: batch, training: true))
        let y = copyOf(network.output, count: batch * 3)
        let input = columnStatistics(x, width: 3), output = columnStatistics(y, width: 3)
        let gamma: [Double] = [2, 0.5, 1], beta: [Double] = [1, -1, 0.3]
        for j in 0..<3 {
            XCTAssertEqual(output.mean[j], beta[j], accuracy: 1e-4, "mean of feature \(j) is β")
            // biased variance: γ²·σ²/(σ² + ε) ≈ γ²
            let expected = gamma[j] * gamma[j] * input.biasedVariance[j] / (input.biasedVariance[j] + 1e-5)
            XCTAssertEqual(output.biasedVariance[j], expected, accuracy: 1e-4 * expected, "variance of feature \(j)")
            XCTAssertEqual(output.biasedVariance[j], gamma[j] * gamma[j], accuracy: 2e-3 * gamma[j] * gamma[j])
        }
        // Each output is exactly γ(x − μ)/√(σ² + ε) + β with the batch's biased σ².
        for r in [0, 17, 63] {
            for j in 0..<3 {
                let expected = gamma[j] * (Double(x[r * 3 + j]) - input.mean[j]) / (input.biasedVariance[j] + 1e-5).squareRoot() + beta[j]
                XCTAssertEqual(Double(y[r * 3 + j]), expected, accuracy: 1e-4)
            }
        }
    }

    func testBatchNormRunningStatisticsUseMomentumAndUnbiasedVariance() throws {
        let batch = 8, momentum = 0.2
        let network = try batchNormNetwork(batch: batch, momentum: Float(momentum))
        XCTAssertEqual(Array(network.state), [0, 0, 0, 1, 1, 1], "running_mean 0, running_var 1 initially")
        var runningMean = [Double](repeating: 0, count: 3), runningVariance = [Double](repeating: 1, count: 3)
        for (step, seed) in [UInt64(5), 6, 7].enumerated() {
            let x = features(batch, seed: seed)
            store(x, into: network.input)
            try network.forward(batch: batch, context: makeContext(maxBatch: batch, training: true))
            let statistics = columnStatistics(x, width: 3)
            for j in 0..<3 {
                let unbiased = statistics.biasedVariance[j] * Double(batch) / Double(batch - 1)
                runningMean[j] = (1 - momentum) * runningMean[j] + momentum * statistics.mean[j]
                runningVariance[j] = (1 - momentum) * runningVariance[j] + momentum * unbiased
                XCTAssertEqual(Double(network.state[j]), runningMean[j], accuracy: 1e-5, "running_mean[\(j)] after \(step + 1)")
                XCTAssertEqual(Double(network.state[3 + j]), runningVariance[j], accuracy: 1e-5 * runningVariance[j],
                               "running_var[\(j)] after \(step + 1)")
            }
            XCTAssertEqual(network.batchNorms[0].batchesTracked, Int64(step + 1))
        }
        // The biased variance would be visibly different with 8 samples (factor 8/7): the check can fail.
        let x = features(batch, seed: 7)
        let biased = columnStatistics(x, width: 3).biasedVariance[0]
        XCTAssertGreaterThan(abs(biased * 8 / 7 - biased) * momentum, 1e-3)
    }

    func testBatchNormInferenceUsesRunningStatistics() throws {
        let network = try batchNormNetwork(batch: 4, epsilon: 1e-3)
        let runningMean: [Float] = [4, -2, 0.5], runningVariance: [Float] = [9, 0.01, 2]
        store(runningMean + runningVariance, into: network.state)
        let x = features(4, seed: 8)
        store(x, into: network.input)
        // A single row works in inference (no batch statistics) and gives the same as in a batch.
        try network.forward(batch: 1, context: makeContext(maxBatch: 4, training: false))
        let single = copyOf(network.output, count: 3)
        try network.forward(batch: 4, context: makeContext(maxBatch: 4, training: false))
        let y = copyOf(network.output, count: 12)
        XCTAssertEqual(single, Array(y[0..<3]))
        let gamma: [Double] = [2, 0.5, 1], beta: [Double] = [1, -1, 0.3]
        for r in 0..<4 {
            for j in 0..<3 {
                let expected = gamma[j] * (Double(x[r * 3 + j]) - Double(runningMean[j])) / (Double(runningVariance[j]) + 1e-3).squareRoot() + beta[j]
                XCTAssertEqual(Double(y[r * 3 + j]), expected, accuracy: 1e-4 * max(1, abs(expected)))
            }
        }
        // Inference leaves the running statistics and the batch counter alone.
        XCTAssertEqual(Array(network.state), runningMean + runningVariance)
        XCTAssertEqual(network.batchNorms[0].batchesTracked, 0)
    }

    func testBatchesTrackedCountsTrainingForwardsAndResets() throws {
        let network = try batchNormNetwork(batch: 4)
        store(features(4, seed: 9), into: network.input)
        for _ in 0..<3 { try network.forward(batch: 4, context: makeContext(maxBatch: 4, training: true)) }
        try network.forward(batch: 4, context: makeContext(maxBatch: 4, training: false))
        XCTAssertEqual(network.batchNorms[0].batchesTracked, 3)
        network.initialize(seed: 1)
        XCTAssertEqual(network.batchNorms[0].batchesTracked, 0)
        XCTAssertEqual(Array(network.state), [0, 0, 0, 1, 1, 1])
        XCTAssertEqual(Array(network.parameters), [1, 1, 1, 0, 0, 0], "γ = 1, β = 0 as torch")
    }

    func testBatchNormTrainingNeedsTwoSamples() throws {
        let network = try batchNormNetwork(batch: 2)
        assertDDPError(.training, containing: ["BatchNorm", "more than 1 sample"]) {
            try network.forward(batch: 1, context: makeContext(maxBatch: 2, training: true))
        }
    }

    // MARK: The gradient convention

    /// Backward adds parameter gradients into the gradient view; zeroGradients clears them.
    func testParameterGradientsAccumulate() throws {
        let network = try makeNetwork(inputs: 3, [Layers.dense(4, .tanh), Layers.batchNorm(), Layers.dense(2)], maxBatch: 5)
        var random = TestRandom(seed: 10)
        store(random.array(15, -1, 1), into: network.input)
        let context = makeContext(maxBatch: 5, training: true)
        let upstream = random.array(10, -1, 1)
        func pass() throws {
            try network.forward(batch: 5, context: context)
            for i in 0..<10 { network.outputGradient[i] = upstream[i] }
            try network.backward(batch: 5, context: context)
        }
        network.zeroGradients()
        try pass()
        let once = Array(network.gradients)
        XCTAssertGreaterThan(once.map(abs).max() ?? 0, 0.01)
        try pass()
        for (twice, single) in zip(network.gradients, once) { XCTAssertEqual(twice, 2 * single, accuracy: 1e-5 * max(1, abs(single))) }
        network.zeroGradients()
        XCTAssertTrue(network.gradients.allSatisfy { $0 == 0 })
    }
}
