import Foundation
import XCTest
@testable import DDPCore

/// `trainable: false`: the frozen layer's place in the flat buffers, its gradients (none of its
/// own; the input gradient still flows), a frozen BatchNorm in inference mode (Keras), the
/// optimizer leaving it alone, and the config's errors.
final class FreezingTests: XCTestCase {
    private let frozenMiddle = [Layers.dense(5, .tanh), Layers.dense(4, .tanh, trainable: false),
                                Layers.batchNorm(trainable: false), Layers.dense(3)]

    func testFrozenParametersSitAfterTrainableOnes() throws {
        let network = try makeNetwork(inputs: 3, frozenMiddle, maxBatch: 4)
        let trainable = 3 * 5 + 5 + 4 * 3 + 3
        let frozen = 5 * 4 + 4 + 2 * 4
        XCTAssertEqual(network.trainableCount, trainable)
        XCTAssertEqual(network.parameterCount, trainable + frozen)
        XCTAssertEqual(network.gradients.count, trainable)
        for slot in network.tensors where slot.storage == .parameter {
            let frozenLayer = slot.name.hasPrefix("1.") || slot.name.hasPrefix("2.")
            XCTAssertEqual(slot.trainable, !frozenLayer, slot.name)
            if frozenLayer { XCTAssertGreaterThanOrEqual(slot.offset, trainable, slot.name) }
            else { XCTAssertLessThanOrEqual(slot.offset + slot.count, trainable, slot.name) }
        }
        let summary = ModelSummary(network: network).text
        XCTAssertTrue(summary.contains("Trainable params: \(trainable) "), summary)
        XCTAssertTrue(summary.contains("Non-trainable params: \(frozen + 2 * 4) "), summary)
    }

    /// The trainable parameters' gradient through a frozen dense layer and a frozen BatchNorm
    /// matches central differences, with the frozen ones held at their values.
    func testGradientFlowsThroughFrozenLayers() throws {
        let batch = 5
        let network = try makeNetwork(inputs: 3, frozenMiddle, maxBatch: batch, seed: 4)
        var random = TestRandom(seed: 21)
        store(random.array(network.parameterCount, -1, 1), into: network.parameters)
        // Non-default running statistics, so inference-mode normalization is visible.
        for slot in network.tensors where slot.storage == .state {
            for i in slot.offset..<slot.offset + slot.count {
                network.state[i] = slot.name.hasSuffix("running_var") ? random.uniform(0.5, 2) : random.uniform(-0.5, 0.5)
            }
        }
        store(random.array(batch * 3, -2, 2), into: network.input)
        let labels: [Float] = [0, 2, 1, 1, 0]
        let context = makeContext(maxBatch: batch, training: true)
        let stateBefore = Array(network.state)
        func objective() throws -> Double {
            try network.forward(batch: batch, context: context)
            return labels.withUnsafeBufferPointer {
                Loss.crossEntropy.evaluate(output: network.output, labels: $0.baseAddress!, batch: batch, width: 3, gradient: nil).lossSum
            }
        }
        let numeric = try centralDifferences(network.parameters, count: network.trainableCount, h: 5e-3, objective)
        network.zeroGradients()
        try network.forward(batch: batch, context: context)
        _ = labels.withUnsafeBufferPointer {
            Loss.crossEntropy.evaluate(output: network.output, labels: $0.baseAddress!, batch: batch, width: 3, gradient: network.outputGradient)
        }
        try network.backward(batch: batch, context: context)
        assertGradientsMatch(network.gradients.map(Double.init), numeric, "through frozen layers")
        XCTAssertEqual(Array(network.state), stateBefore, "a frozen BatchNorm leaves its running statistics alone")
        XCTAssertEqual(network.batchNorms[0].batchesTracked, 0)
    }

    /// Keras: a frozen BatchNorm normalizes with its running statistics in training too, and
    /// its input gradient is that affine map's (central differences).
    func testFrozenBatchNormRunsInInferenceMode() throws {
        let batch = 4
        let probe = LayerProbe(BatchNorm(configIndex: 0, width: 3, momentum: 0.1, epsilon: 1e-5, trainable: false), batch: batch)
        var random = TestRandom(seed: 3)
        store(random.array(6, -1, 1), into: probe.parameters)
        store(random.array(6, 0.5, 1.5), into: probe.state)
        store(random.array(batch * 3, -2, 2), into: probe.input)
        store(random.array(batch * 3, -1, 1), into: probe.upstream)
        let state = Array(probe.state)
        try probe.forward()
        for row in 0..<batch {
            for j in 0..<3 {
                let x = Double(probe.input[row * 3 + j]), mean = Double(state[j]), variance = Double(state[3 + j])
                let expected = Double(probe.parameters[j]) * (x - mean) / (variance + 1e-5).squareRoot() + Double(probe.parameters[3 + j])
                XCTAssertEqual(Double(probe.output[row * 3 + j]), expected, accuracy: 1e-5)
            }
        }
        XCTAssertEqual(Array(probe.state), state, "running statistics unchanged")
        let numeric = try centralDifferences(probe.input, count: batch * 3, h: 1e-2) { try probe.objective() }
        try probe.backward()
        assertGradientsMatch(probe.inputGradient.map(Double.init), numeric, "frozen BatchNorm dx")
        XCTAssertEqual(Array(probe.gradients), [Float](repeating: 0, count: 6), "no dγ, dβ")
    }

    /// The optimizer's range is the trainable prefix: frozen tensors stay bit-identical under
    /// AdamW's decoupled decay and an L2 penalty, and hold no moments.
    func testOptimizerLeavesFrozenTensorsAlone() throws {
        let layers = [Layers.dense(4, .relu, kernelRegularizer: Penalty(l2: 0.1), trainable: false), Layers.dense(2)]
        var config = OptimizerConfig(kind: .adamw, learningRate: 0.1)
        config.weightDecay = 0.5
        config.decay = .all
        let (network, sync) = try makeSyncedNetwork(inputs: 3, layers, optimizer: config, maxBatch: 2)
        XCTAssertEqual(sync.optimizer.count, network.trainableCount)
        let before = Array(network.parameters)
        store([0.5, -1, 2, 1, 0, -0.5], into: network.input)
        let context = makeContext(maxBatch: 2, training: true)
        for _ in 0..<3 {
            network.zeroGradients()
            try network.forward(batch: 2, context: context)
            _ = [Float]([0, 1]).withUnsafeBufferPointer {
                Loss.crossEntropy.evaluate(output: network.output, labels: $0.baseAddress!, batch: 2, width: 2, gradient: network.outputGradient)
            }
            try network.backward(batch: 2, context: context)
            let totals = try sync.reduce(lossSum: 1, samples: 2, correct: 0, nonFinite: false, stop: false)
            XCTAssertEqual(totals.penalty, 0, "a frozen kernel's penalty does not count (Keras 3 sums trainable weights' regularizers)")
            try sync.update(lr: 0.1)
        }
        let after = Array(network.parameters)
        XCTAssertEqual(Array(after[network.trainableCount...]), Array(before[network.trainableCount...]))
        XCTAssertNotEqual(Array(after[..<network.trainableCount]), Array(before[..<network.trainableCount]))
    }

    func testConfigErrors() throws {
        let head = "data: {train: {format: moons}}\noptimizer: {type: sgd}\nmodel: {inputs: 2, layers: "
        assertDDPError(.config, containing: ["model.layers[1].trainable", "dropout", "no parameters"]) {
            try TrainingConfig.parse(yaml: head + "[{type: dense, units: 2}, {type: dropout, rate: 0.1, trainable: false}]}")
        }
        assertDDPError(.config, containing: ["model.layers[0].trainable", "expected"]) {
            try TrainingConfig.parse(yaml: head + "[{type: dense, units: 2, trainable: maybe}]}")
        }
        let allFrozen = try TrainingConfig.parse(yaml: head + "[{type: dense, units: 2, trainable: false}]}")
        XCTAssertFalse(allFrozen.model.layers[0].trainable)
        assertDDPError(.config, containing: ["trainable: false", "nothing to train"]) { try Network(config: allFrozen.model) }
    }
}
