import Foundation
import XCTest
@testable import DDPCore

/// Weight initializers against the Keras VarianceScaling formulas (fan_in = inputs,
/// fan_out = units) and torch's nn.Linear default.
final class InitializerTests: XCTestCase {
    private func denseNetwork(inputs: Int, units: Int, kernel: Initializer, bias: Initializer = .zeros, seed: UInt64 = 1) throws -> Network {
        var dense = DenseSpec(units: units)
        dense.kernelInitializer = kernel
        dense.biasInitializer = bias
        let layer = LayerConfig(dense)
        return try makeNetwork(inputs: inputs, [layer], maxBatch: 1, seed: seed)
    }

    func testKernelDistributions() throws {
        let fanIn = 200.0, fanOut = 100.0
        // (initializer, target variance, bound on |w|, whether the bound is attained)
        let table: [(Initializer, Double, Double, Bool)] = [
            (.glorotUniform, 2 / (fanIn + fanOut), (6 / (fanIn + fanOut)).squareRoot(), true),
            (.heUniform, 2 / fanIn, (6 / fanIn).squareRoot(), true),
            (.lecunUniform, 1 / fanIn, (3 / fanIn).squareRoot(), true),
            (.torch, 1 / (3 * fanIn), 1 / fanIn.squareRoot(), true),
            // truncated at 2 raw standard deviations, raw σ = √variance / 0.8796…
            (.glorotNormal, 2 / (fanIn + fanOut), 2 * (2 / (fanIn + fanOut)).squareRoot() / 0.87962566103423978, false),
            (.heNormal, 2 / fanIn, 2 * (2 / fanIn).squareRoot() / 0.87962566103423978, false),
            (.lecunNormal, 1 / fanIn, 2 * (1 / fanIn).squareRoot() / 0.87962566103423978, false),
        ]
        for (initializer, variance, bound, attained) in table {
            let network = try denseNetwork(inputs: Int(fanIn), units: Int(fanOut), kernel: initializer)
            let w = network.parameters[0..<Int(fanIn * fanOut)].map(Double.init)
            let mean = w.reduce(0, +) / Double(w.count)
            let measured = w.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(w.count)
            let label = initializer.rawValue
            XCTAssertEqual(measured, variance, accuracy: 0.05 * variance, label)
            XCTAssertEqual(mean, 0, accuracy: 5 * (variance / Double(w.count)).squareRoot(), label)
            let largest = w.map(abs).max()!
            XCTAssertLessThanOrEqual(largest, bound * (1 + 1e-6), label)
            if attained { XCTAssertGreaterThan(largest, 0.99 * bound, label) }
            else { XCTAssertGreaterThan(largest, 0.8 * bound, label) }
            XCTAssertTrue(network.parameters[Int(fanIn * fanOut)...].allSatisfy { $0 == 0 }, "bias zeros")
        }
    }

    func testConstantInitializers() throws {
        let network = try denseNetwork(inputs: 3, units: 2, kernel: .ones, bias: .ones)
        XCTAssertEqual(Array(network.parameters), Array(repeating: 1, count: 8))
        let zeros = try denseNetwork(inputs: 3, units: 2, kernel: .zeros, bias: .zeros)
        XCTAssertEqual(Array(zeros.parameters), Array(repeating: 0, count: 8))
    }

    /// torch's nn.Linear draws the bias from U(±1/√fan_in) with fan_in = the layer's inputs.
    func testTorchBiasUsesTheLayersFanIn() throws {
        let network = try denseNetwork(inputs: 400, units: 64, kernel: .torch, bias: .torch)
        let bias = network.parameters[400 * 64..<400 * 64 + 64].map(Double.init)
        let bound = 1 / 400.0.squareRoot()                   // 0.05, not 1/√64 = 0.125
        XCTAssertLessThanOrEqual(bias.map(abs).max()!, bound * (1 + 1e-6))
        XCTAssertGreaterThan(bias.map(abs).max()!, 0.8 * bound)
    }

    func testSeedsAndStreams() throws {
        let a = try denseNetwork(inputs: 4, units: 3, kernel: .glorotUniform, seed: 5)
        let b = try denseNetwork(inputs: 4, units: 3, kernel: .glorotUniform, seed: 5)
        let c = try denseNetwork(inputs: 4, units: 3, kernel: .glorotUniform, seed: 6)
        XCTAssertEqual(Array(a.parameters), Array(b.parameters))
        XCTAssertNotEqual(Array(a.parameters), Array(c.parameters))
        // Two layers of the same shape draw different weights.
        let twin = try makeNetwork(inputs: 4, [Layers.dense(4), Layers.dense(4)], maxBatch: 1, seed: 5)
        XCTAssertNotEqual(Array(twin.parameters[0..<16]), Array(twin.parameters[20..<36]))
    }
}
