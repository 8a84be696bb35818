import Foundation
import XCTest
@testable import DDPCore

/// Dense: its backward pass against central differences (with and without bias, with weight
/// noise) and weight noise's draws.
final class DenseTests: XCTestCase {
    func testDenseWeightsBiasAndInput() throws {
        let dense = Dense(configIndex: 0, inputs: 4, units: 3, useBias: true, kernelInitializer: .zeros,
                          biasInitializer: .zeros, kernelRegularizer: nil, biasRegularizer: nil)
        let probe = LayerProbe(dense, batch: 5)
        var random = TestRandom(seed: 1)
        store(random.array(15, -1, 1), into: probe.parameters)     // W (3, 4) then b (3)
        fill(probe, inputs: random.array(20, -2, 2), seed: 2)
        try checkLayer(probe, "dense")

        // The bias gradient is Σ_rows r and the weight gradient Σ_rows r_j x_k: the layout is torch's (out, in).
        var expectedBias = [Double](repeating: 0, count: 3)
        var expectedWeight = [Double](repeating: 0, count: 12)
        for row in 0..<5 {
            for j in 0..<3 {
                expectedBias[j] += Double(probe.upstream[row * 3 + j])
                for k in 0..<4 { expectedWeight[j * 4 + k] += Double(probe.upstream[row * 3 + j]) * Double(probe.input[row * 4 + k]) }
            }
        }
        for j in 0..<3 { XCTAssertEqual(Double(probe.gradients[12 + j]), expectedBias[j], accuracy: 1e-5) }
        for i in 0..<12 { XCTAssertEqual(Double(probe.gradients[i]), expectedWeight[i], accuracy: 1e-5) }
    }

    /// Weight noise: forward and backward use W̃ = W + σε for the step; the finite differences
    /// (same step, so the same ε) must match dW (into the noiseless W) and dX = dY·W̃.
    func testDenseWeightNoiseGradients() throws {
        let dense = Dense(configIndex: 2, inputs: 4, units: 3, useBias: true, kernelInitializer: .zeros,
                          biasInitializer: .zeros, kernelRegularizer: nil, biasRegularizer: nil, weightNoise: 0.5)
        let probe = LayerProbe(dense, batch: 5)
        probe.context.globalStep = 17
        var random = TestRandom(seed: 11)
        store(random.array(15, -1, 1), into: probe.parameters)
        fill(probe, inputs: random.array(20, -2, 2), seed: 12)
        try checkLayer(probe, "dense with weight noise")

        // dX must use W̃: the dX a noiseless kernel gives differs by far more than rounding.
        try probe.backward()
        var noiselessInputGradient = [Double](repeating: 0, count: 20)
        for row in 0..<5 {
            for k in 0..<4 {
                for j in 0..<3 { noiselessInputGradient[row * 4 + k] += Double(probe.upstream[row * 3 + j]) * Double(probe.parameters[j * 4 + k]) }
            }
        }
        let gap = zip(noiselessInputGradient, probe.inputGradient.prefix(20)).map { abs($0 - Double($1)) }.max()!
        XCTAssertGreaterThan(gap, 0.1)
    }

    /// W̃ − W read off the outputs for identity inputs: mean ≈ 0, std ≈ σ; the same draw for the
    /// same (seed, step, layer), a new one for the next step; inference uses W exactly.
    func testDenseWeightNoiseDraws() throws {
        let width = 64, sigma: Float = 0.25
        let dense = Dense(configIndex: 1, inputs: width, units: width, useBias: false, kernelInitializer: .zeros,
                          biasInitializer: .zeros, kernelRegularizer: nil, biasRegularizer: nil, weightNoise: sigma)
        let probe = LayerProbe(dense, batch: width)
        var random = TestRandom(seed: 5)
        store(random.array(width * width, -1, 1), into: probe.parameters)
        for i in 0..<width { probe.input[i * width + i] = 1 }       // output row i = column i of W̃ᵀ: W̃[:, i]
        func noise() throws -> [Double] {
            try probe.forward()
            return (0..<width * width).map { index in
                let (row, unit) = (index / width, index % width)
                return Double(probe.output[row * width + unit]) - Double(probe.parameters[unit * width + row])
            }
        }
        probe.context.globalStep = 3
        let first = try noise()
        let mean = first.reduce(0, +) / Double(first.count)
        let std = (first.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(first.count)).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 0.02)
        XCTAssertEqual(std, Double(sigma), accuracy: 0.02 * Double(sigma) * 4)
        XCTAssertEqual(try noise(), first, "the same step must draw the same noise")
        probe.context.globalStep = 4
        XCTAssertNotEqual(try noise(), first, "the next step must draw new noise")
        probe.context.training = false
        XCTAssertEqual(try noise().map(abs).max(), 0, "inference must use the noiseless kernel")
    }

    func testDenseWithoutBias() throws {
        let dense = Dense(configIndex: 0, inputs: 3, units: 2, useBias: false, kernelInitializer: .zeros,
                          biasInitializer: .zeros, kernelRegularizer: nil, biasRegularizer: nil)
        let probe = LayerProbe(dense, batch: 4)
        XCTAssertEqual(probe.parameterCount, 6)
        var random = TestRandom(seed: 3)
        store(random.array(6, -1, 1), into: probe.parameters)
        fill(probe, inputs: random.array(12, -2, 2), seed: 4)
        try checkLayer(probe, "dense without bias")
    }
}
