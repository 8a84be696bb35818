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

    // MARK: Over the channels of an image (BatchNorm2d)

    /// Rows of (H, W, C) channels-last samples: the statistics run over batch, height and width
    /// per channel. Every input value moves its channel's mean and variance.
    func testBatchNormOverChannelsGradients() throws {
        let norm = BatchNorm(configIndex: 0, channels: 3, positions: 4, momentum: 0.1, epsilon: 1e-5)
        XCTAssertEqual(norm.inputWidth, 12)
        XCTAssertEqual(norm.parameterSpecs.map(\.shape), [[3], [3]])
        let probe = LayerProbe(norm, batch: 3, training: true)
        var random = TestRandom(seed: 15)
        store(random.array(3, 0.5, 1.5) + random.array(3, -0.5, 0.5), into: probe.parameters)
        var inputs: [Float] = []
        for _ in 0..<12 { inputs += [random.uniform(-1, 1) * 2 + 3, random.uniform(-1, 1) * 0.5 - 1, random.uniform(-1, 1)] }
        fill(probe, inputs: inputs, seed: 16)
        try checkLayer(probe, "batchnorm over channels (training)", h: 5e-3)
    }

    /// A batchnorm after images is nn.BatchNorm2d: torch's output, input gradient, dγ, dβ and
    /// running statistics for the same NCHW batch (ours is channels-last) agree within 1e-5.
    func testBatchNormOverChannelsMatchesTorchBatchNorm2d() throws {
        let python = try InteropPython.require(["torch"])
        let (batch, height, width, channels) = (3, 2, 3, 4)
        let config = ModelConfig(inputShape: .image(ImageShape(height: height, width: width, channels: channels)),
                                 layers: [Layers.batchNorm(momentum: 0.2)])
        let network = try Network(config: config)
        network.reserve(maxBatch: batch)
        network.initialize(seed: 3)
        var random = TestRandom(seed: 21)
        store(random.array(channels, 0.5, 1.5) + random.array(channels, -0.5, 0.5), into: network.parameters)
        let count = batch * height * width * channels
        let x = random.array(count, -2, 3), upstream = random.array(count, -1, 1)
        store(x, into: network.input)
        try network.forward(batch: batch, context: makeContext(maxBatch: batch, training: true))
        let y = copyOf(network.output, count: count)
        store(upstream, into: UnsafeMutableBufferPointer(start: network.outputGradient, count: count))
        network.zeroGradients()
        // The first layer passes no input gradient on: put a probe in front for dx.
        let probe = LayerProbe(network.layers[0], batch: batch, training: true)
        _ = probe.parameters.update(fromContentsOf: network.parameters)
        store(x, into: probe.input)
        try probe.forward()
        store(upstream, into: probe.upstream)
        try probe.backward()
        func json(_ values: [Float]) -> String { "[" + values.map { "\($0)" }.joined(separator: ",") + "]" }
        let script = """
            import json, sys, torch
            n, h, w, c = \(batch), \(height), \(width), \(channels)
            x = torch.tensor(json.loads(sys.argv[1])).reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous().requires_grad_()
            up = torch.tensor(json.loads(sys.argv[2])).reshape(n, h, w, c).permute(0, 3, 1, 2)
            p = json.loads(sys.argv[3])
            bn = torch.nn.BatchNorm2d(c, momentum=0.2)
            with torch.no_grad():
                bn.weight.copy_(torch.tensor(p[:c])); bn.bias.copy_(torch.tensor(p[c:]))
            y = bn(x)
            (y * up).sum().backward()
            nhwc = lambda t: t.permute(0, 2, 3, 1).reshape(-1).tolist()
            print(json.dumps({"y": nhwc(y.detach()), "dx": nhwc(x.grad), "dgamma": bn.weight.grad.tolist(),
                              "dbeta": bn.bias.grad.tolist(), "mean": bn.running_mean.tolist(), "var": bn.running_var.tolist()}))
            """
        let (status, output) = try runPython(python, ["-c", script, json(x), json(upstream), json(Array(network.parameters))])
        XCTAssertEqual(status, 0, output)
        let line = try XCTUnwrap(output.split(separator: "\n").last, output)
        let torch = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [Double]], output)
        func assertClose(_ ours: [Float], _ key: String) {
            let theirs = torch[key] ?? []
            XCTAssertEqual(ours.count, theirs.count, key)
            let scale = max(1, theirs.map(abs).max() ?? 1)
            for (a, b) in zip(ours, theirs) { XCTAssertEqual(Double(a), b, accuracy: 1e-5 * scale, key) }
        }
        assertClose(y, "y")
        assertClose(Array(probe.inputGradient.prefix(count)), "dx")
        assertClose(Array(probe.gradients.prefix(channels)), "dgamma")
        assertClose(Array(probe.gradients[channels..<2 * channels]), "dbeta")
        assertClose(Array(network.state.prefix(channels)), "mean")
        assertClose(Array(network.state[channels..<2 * channels]), "var")
    }
}
