import Foundation
import XCTest
@testable import DDPCore

/// BatchNorm: its backward pass against central differences (training, and inference as an
/// affine map of the running statistics); normalization by batch statistics, running statistics
/// with momentum and the unbiased variance, inference, and the batch counter.
final class BatchNormTests: XCTestCase {
    // MARK: Gradients against central differences

    func testBatchNormTrainingGammaBetaAndInput() throws {
        let norm = BatchNorm(configIndex: 0, channels: 3, momentum: 0.1, epsilon: 1e-5)
        let probe = LayerProbe(norm, batch: 6, training: true)
        var random = TestRandom(seed: 5)
        store(random.array(3, 0.5, 1.5) + random.array(3, -0.5, 0.5), into: probe.parameters)   // γ, β
        // Features with different means and scales; every row moves every batch statistic.
        var inputs: [Float] = []
        for _ in 0..<6 { inputs += [random.uniform(-1, 1) * 2 + 3, random.uniform(-1, 1) * 0.5 - 1, random.uniform(-1, 1)] }
        fill(probe, inputs: inputs, seed: 6)
        try checkLayer(probe, "batchnorm (training)", h: 5e-3)
    }

    func testBatchNormInferenceIsAffineInTheRunningStatistics() throws {
        let norm = BatchNorm(configIndex: 0, channels: 2, momentum: 0.1, epsilon: 1e-3)
        let probe = LayerProbe(norm, batch: 3, training: false)
        store([1.5, 0.7, 0.2, -0.3], into: probe.parameters)
        store([0.4, -1.0, 2.0, 0.5], into: probe.state)            // running_mean, running_var
        var random = TestRandom(seed: 7)
        fill(probe, inputs: random.array(6, -2, 2), seed: 8)
        let numericInput = try centralDifferences(probe.input, count: 6, h: 1e-2, probe.objective)
        // dy/dx = γ/√(running_var + ε): the batch plays no part in inference.
        for row in 0..<3 {
            for j in 0..<2 {
                let slope = Double(probe.parameters[j]) / (Double(probe.state[2 + j]) + 1e-3).squareRoot()
                XCTAssertEqual(numericInput[row * 2 + j], slope * Double(probe.upstream[row * 2 + j]), accuracy: 1e-3)
            }
        }
    }

    // MARK: Behaviour

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
}
