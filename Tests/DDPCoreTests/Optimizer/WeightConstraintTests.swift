import Foundation
import XCTest
@testable import DDPCore

/// Keras constraints (axis 0) against the Keras formulas computed here in Keras's own layout:
/// a Dense kernel (inputs, units), norms down each column.
final class WeightConstraintTests: XCTestCase {
    /// Keras's `w * factor(norm)` on a kernel given in torch layout (units, inputs), computed
    /// in Double on the transposed (inputs, units) matrix.
    private func kerasReference(_ torchLayout: [Float], units: Int, inputs: Int,
                                _ factor: (Double) -> Double) -> [Float] {
        var keras = [[Double]](repeating: [Double](repeating: 0, count: units), count: inputs)
        for u in 0..<units { for i in 0..<inputs { keras[i][u] = Double(torchLayout[u * inputs + i]) } }
        var result = torchLayout
        for u in 0..<units {
            let norm = (0..<inputs).reduce(0.0) { $0 + keras[$1][u] * keras[$1][u] }.squareRoot()
            for i in 0..<inputs { result[u * inputs + i] = Float(keras[i][u] * factor(norm)) }
        }
        return result
    }

    func testFormulasMatchKeras() {
        let units = 4, inputs = 5
        var random = TestRandom(seed: 12)
        // Rows of very different norms, so every clip branch is taken.
        var kernel = random.array(units * inputs, -1, 1)
        for i in 0..<inputs { kernel[i] *= 0.05; kernel[2 * inputs + i] *= 4 }
        let epsilon = 1e-7
        let cases: [(WeightConstraint, (Double) -> Double)] = [
            (.maxNorm(1.5), { min($0, 1.5) / (epsilon + $0) }),
            (.unitNorm, { 1 / (epsilon + $0) }),
            (.minMaxNorm(min: 0.5, max: 2, rate: 1), { min(max($0, 0.5), 2) / (epsilon + $0) }),
            (.minMaxNorm(min: 0.5, max: 2, rate: 0.3), { (0.3 * min(max($0, 0.5), 2) + 0.7 * $0) / (epsilon + $0) }),
        ]
        for (constraint, factor) in cases {
            var values = kernel
            values.withUnsafeMutableBufferPointer { constraint.apply($0.baseAddress!, rows: units, rowLength: inputs) }
            let expected = kerasReference(kernel, units: units, inputs: inputs, factor)
            for (a, b) in zip(values, expected) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b)), "\(constraint)") }
        }
        var values = kernel
        values.withUnsafeMutableBufferPointer { WeightConstraint.nonNegative.apply($0.baseAddress!, rows: units, rowLength: inputs) }
        XCTAssertEqual(values, kernel.map { $0 >= 0 ? $0 : 0 })
    }

    /// After every step of training, each unit's incoming weights obey max_norm and the bias
    /// (one row) obeys unit_norm, while the weights still train.
    func testConstraintsHoldAfterEveryStep() throws {
        let layers = [Layers.dense(6, .relu, kernelConstraint: .maxNorm(0.3), biasConstraint: .unitNorm), Layers.dense(2)]
        let (network, sync) = try makeSyncedNetwork(inputs: 3, layers, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.5), maxBatch: 4)
        var random = TestRandom(seed: 5)
        store(random.array(12, -3, 3), into: network.input)
        let context = makeContext(maxBatch: 4, training: true)
        let kernel = network.tensors.first { $0.name == "0.weight" }!, bias = network.tensors.first { $0.name == "0.bias" }!
        var previous = Array(network.parameters)
        for step in 0..<5 {
            network.zeroGradients()
            try network.forward(batch: 4, context: context)
            _ = [Float]([0, 1, 1, 0]).withUnsafeBufferPointer {
                Loss.crossEntropy.evaluate(output: network.output, labels: $0.baseAddress!, batch: 4, width: 2, gradient: network.outputGradient)
            }
            try network.backward(batch: 4, context: context)
            _ = try sync.reduce(lossSum: 1, samples: 4, correct: 0, nonFinite: false, stop: false)
            try sync.update(lr: 0.5)
            for unit in 0..<6 {
                let row = (0..<3).map { Double(network.parameters[kernel.offset + unit * 3 + $0]) }
                XCTAssertLessThanOrEqual(row.reduce(0) { $0 + $1 * $1 }.squareRoot(), 0.3 * (1 + 1e-6), "step \(step) unit \(unit)")
            }
            let biasNorm = (0..<6).reduce(0.0) { $0 + Double(network.parameters[bias.offset + $1]) * Double(network.parameters[bias.offset + $1]) }
            XCTAssertEqual(biasNorm.squareRoot(), 1, accuracy: 1e-5, "step \(step)")
            XCTAssertNotEqual(Array(network.parameters), previous, "step \(step) trained")
            previous = Array(network.parameters)
        }
    }

    func testConfigKeysAndErrors() throws {
        let head = "data: {train: {format: moons}}\noptimizer: {type: sgd}\nmodel: {inputs: 2, layers: [{type: dense, units: 2, "
        func parse(_ entry: String) throws -> DenseSpec? {
            try TrainingConfig.parse(yaml: head + entry + "}]}").model.layers[0].spec as? DenseSpec
        }
        XCTAssertEqual(try parse("kernel_constraint: {max_norm: 3}")?.kernelConstraint, .maxNorm(3))
        XCTAssertEqual(try parse("kernel_constraint: {non_neg: true}")?.kernelConstraint, .nonNegative)
        XCTAssertEqual(try parse("bias_constraint: {unit_norm: true}")?.biasConstraint, .unitNorm)
        XCTAssertEqual(try parse("kernel_constraint: {min_max_norm: {min: 0.5, max: 2}}")?.kernelConstraint,
                       .minMaxNorm(min: 0.5, max: 2, rate: 1))
        assertDDPError(.config, containing: ["model.layers[0].kernel_constraint", "exactly one", "max_norm and non_neg"]) {
            try parse("kernel_constraint: {max_norm: 3, non_neg: true}")
        }
        assertDDPError(.config, containing: ["model.layers[0].kernel_constraint.max_norm", "positive"]) {
            try parse("kernel_constraint: {max_norm: -1}")
        }
        assertDDPError(.config, containing: ["model.layers[0].kernel_constraint", "exactly one"]) { try parse("kernel_constraint: {}") }
        assertDDPError(.config, containing: ["min_max_norm", "min 3.0 is above max 1.0"]) {
            try parse("kernel_constraint: {min_max_norm: {min: 3}}")
        }
        assertDDPError(.config, containing: ["model.layers[0].bias_constraint", "use_bias: false"]) {
            try parse("use_bias: false, bias_constraint: {max_norm: 1}")
        }
        assertDDPError(.config, containing: ["model.layers[0].kernel_constraint.non_neg", "expected true"]) {
            try parse("kernel_constraint: {non_neg: false}")
        }
    }
}
