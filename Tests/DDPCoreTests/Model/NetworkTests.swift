import Foundation
import XCTest
@testable import DDPCore

/// The network as a whole: the gradient convention (backward accumulates, zeroGradients clears),
/// kernel/bias/activity penalties and whole networks against central differences, and frozen
/// layers (`trainable: false`): their place in the flat buffers, their gradients (none of their
/// own; the input gradient still flows), a frozen BatchNorm in inference mode (Keras), the
/// optimizer leaving them alone, and the config's errors.
final class NetworkTests: XCTestCase {
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

    // MARK: Penalties

    /// A network whose parameters sit well away from 0 (the L1 kink), regularized as given.
    private func penalizedNetwork(kernel: Penalty?, bias: Penalty?) throws -> Network {
        let network = try makeNetwork(inputs: 3, [Layers.dense(4, .tanh, kernelRegularizer: kernel, biasRegularizer: bias),
                                                   Layers.dense(2, kernelRegularizer: Penalty(l2: 0.05)),
                                                   Layers.dense(2)])
        var random = TestRandom(seed: 60)
        store(random.awayFromZero(network.parameterCount, limit: 1.5, gap: 0.05), into: network.parameters)
        return network
    }

    func testKernelAndBiasPenaltiesValueAndGradient() throws {
        let cases: [(String, Penalty?, Penalty?)] = [
            ("L1 kernel", Penalty(l1: 0.03), nil),
            ("L2 kernel", Penalty(l2: 0.04), nil),
            ("ElasticNet kernel + L1 bias", Penalty(l1: 0.01, l2: 0.02), Penalty(l1: 0.03)),
            ("L2 bias", nil, Penalty(l2: 0.5)),
            ("ElasticNet bias", nil, Penalty(l1: 0.2, l2: 0.3)),
        ]
        for (label, kernel, bias) in cases {
            let network = try penalizedNetwork(kernel: kernel, bias: bias)
            // By hand: Σ over regularized tensors of l1·Σ|w| + l2·Σw². Layout: W0 (4×3), b0 (4), W1 (2×4), b1, W2, b2.
            let p = network.parameters.map(Double.init)
            func value(_ penalty: Penalty?, _ range: Range<Int>) -> Double {
                guard let penalty else { return 0 }
                return range.reduce(0) { $0 + Double(penalty.l1) * abs(p[$1]) + Double(penalty.l2) * p[$1] * p[$1] }
            }
            let expected = value(kernel, 0..<12) + value(bias, 12..<16) + value(Penalty(l2: 0.05), 16..<24)
            XCTAssertEqual(network.weightPenalty(), expected, accuracy: 1e-6 * max(1, expected), label)

            // Gradient, added on top of whatever the data gradient already holds.
            network.zeroGradients()
            for i in 0..<network.parameterCount { network.gradients[i] = 1 }
            XCTAssertEqual(network.applyWeightPenalties(), expected, accuracy: 1e-6 * max(1, expected), label)
            let added = network.gradients.map { Double($0) - 1 }
            let numeric = centralDifferences(network.parameters, count: network.parameterCount, h: 1e-3) { network.weightPenalty() }
            assertGradientsMatch(added, numeric, label, relative: 1e-2, absolute: 1e-4)
            // Unregularized tensors (b1, W2, b2) get nothing.
            XCTAssertTrue(network.gradients[24..<network.parameterCount].allSatisfy { $0 == 1 }, label)
            if bias == nil { XCTAssertTrue(network.gradients[12..<16].allSatisfy { $0 == 1 }, label) }
        }
    }

    func testActivityRegularizerValueAndGradient() throws {
        let tanhPenalty = Penalty(l1: 0.05, l2: 0.1), outputPenalty = Penalty(l2: 0.2)
        let network = try makeNetwork(inputs: 3, [Layers.dense(4, .tanh, activity: tanhPenalty),
                                                   Layers.dense(2, activity: outputPenalty)], maxBatch: 5)
        var random = TestRandom(seed: 70)
        store(random.array(network.parameterCount, -1, 1), into: network.parameters)
        let x = random.array(15, -2, 2)
        store(x, into: network.input)
        let labels = random.array(5, -1, 1)
        let context = makeContext(maxBatch: 5, training: true)

        // Value by hand: the tanh layer's penalty is on its output (after the activation, as Keras).
        let p = network.parameters.map(Double.init)
        var expected = 0.0
        for row in 0..<5 {
            var hidden = [Double](repeating: 0, count: 4)
            for j in 0..<4 {
                var z = p[12 + j]
                for k in 0..<3 { z += p[j * 3 + k] * Double(x[row * 3 + k]) }
                hidden[j] = Foundation.tanh(z)
                expected += 0.05 * abs(hidden[j]) + 0.1 * hidden[j] * hidden[j]
            }
            for j in 0..<2 {
                var o = p[16 + 8 + j]
                for k in 0..<4 { o += p[16 + j * 4 + k] * hidden[k] }
                expected += 0.2 * o * o
            }
        }
        let penalty = try network.forward(batch: 5, context: context)
        XCTAssertEqual(penalty, expected, accuracy: 1e-5 * expected)

        // Gradient of (Σ losses + activity penalty) through Network.backward.
        func objective() throws -> Double {
            let activity = try network.forward(batch: 5, context: context)
            return activity + labels.withUnsafeBufferPointer {
                Loss.meanSquaredError.evaluate(output: network.output, labels: $0.baseAddress!, batch: 5, width: 2, gradient: nil).lossSum
            }
        }
        let numeric = try centralDifferences(network.parameters, count: network.parameterCount, h: 1e-2, objective)
        network.zeroGradients()
        try network.forward(batch: 5, context: context)
        _ = labels.withUnsafeBufferPointer {
            Loss.meanSquaredError.evaluate(output: network.output, labels: $0.baseAddress!, batch: 5, width: 2,
                                           gradient: network.outputGradient)
        }
        try network.backward(batch: 5, context: context)
        assertGradientsMatch(network.gradients.map(Double.init), numeric, "activity regularizer")

        // Without the penalty's gradient the check must fail: the penalty gradient is not negligible here.
        let plain = try makeNetwork(inputs: 3, [Layers.dense(4, .tanh), Layers.dense(2)], maxBatch: 5)
        for i in 0..<plain.parameterCount { plain.parameters[i] = network.parameters[i] }
        store(x, into: plain.input)
        plain.zeroGradients()
        try plain.forward(batch: 5, context: context)
        _ = labels.withUnsafeBufferPointer {
            Loss.meanSquaredError.evaluate(output: plain.output, labels: $0.baseAddress!, batch: 5, width: 2, gradient: plain.outputGradient)
        }
        try plain.backward(batch: 5, context: context)
        let difference = zip(plain.gradients, network.gradients).map { Double(abs($0 - $1)) }.max() ?? 0
        XCTAssertGreaterThan(difference, 0.05)
    }

    // MARK: Whole networks

    /// A training-mode network with every layer kind, a kernel L2 penalty and an activity
    /// penalty: the full objective's gradient with respect to every parameter.
    func testWholeNetworkEndToEnd() throws {
        let layers = [
            Layers.dense(6, .gelu, kernelRegularizer: Penalty(l2: 0.01)),
            Layers.batchNorm(),
            Layers.activation(.tanh, activity: Penalty(l2: 0.02)),
            Layers.dropout(0.25),
            Layers.noise(0.3),
            Layers.dense(5, .sigmoid, biasRegularizer: Penalty(l1: 0.01)),
            Layers.dense(3),
        ]
        let batch = 6
        let network = try makeNetwork(inputs: 3, layers, maxBatch: batch, seed: 11)
        var random = TestRandom(seed: 80)
        // Non-trivial BatchNorm affine parameters (initialized to 1 and 0) and biases.
        store(random.awayFromZero(network.parameterCount, limit: 1.2, gap: 0.05), into: network.parameters)
        store(random.array(batch * 3, -2, 2), into: network.input)
        let labels: [Float] = [0, 2, 1, 1, 0, 2]
        let context = makeContext(maxBatch: batch, training: true, seed: 5, epoch: 2)

        func objective() throws -> Double {
            let activity = try network.forward(batch: batch, context: context)
            let data = labels.withUnsafeBufferPointer {
                Loss.crossEntropy.evaluate(output: network.output, labels: $0.baseAddress!, batch: batch, width: 3, gradient: nil).lossSum
            }
            return data + activity + network.weightPenalty()
        }
        let numeric = try centralDifferences(network.parameters, count: network.parameterCount, h: 5e-3, objective)
        network.zeroGradients()
        try network.forward(batch: batch, context: context)
        _ = labels.withUnsafeBufferPointer {
            Loss.crossEntropy.evaluate(output: network.output, labels: $0.baseAddress!, batch: batch, width: 3, gradient: network.outputGradient)
        }
        try network.backward(batch: batch, context: context)
        _ = network.applyWeightPenalties()
        assertGradientsMatch(network.gradients.map(Double.init), numeric, "whole network", relative: 2e-2, absolute: 2e-3)
    }

    /// BCE from probabilities behind a sigmoid and MSE behind a linear head, end to end.
    func testSmallNetworksWithOtherLosses() throws {
        for (loss, head, labels) in [(Loss.binaryCrossEntropy(fromLogits: false), ActivationFunction.sigmoid, [Float]([0, 1, 1, 0])),
                                     (Loss.binaryCrossEntropy(fromLogits: true), ActivationFunction.linear, [0, 1, 1, 0]),
                                     (Loss.meanSquaredError, ActivationFunction.linear, [0.5, -1, 2, 0.1])] {
            let network = try makeNetwork(inputs: 2, [Layers.dense(3, .elu), Layers.dense(1, head)], maxBatch: 4, seed: 3)
            var random = TestRandom(seed: 90)
            store(random.array(network.parameterCount, -1, 1), into: network.parameters)
            store(random.array(8, -2, 2), into: network.input)
            let context = makeContext(maxBatch: 4, training: true)
            func objective() throws -> Double {
                try network.forward(batch: 4, context: context)
                return labels.withUnsafeBufferPointer {
                    loss.evaluate(output: network.output, labels: $0.baseAddress!, batch: 4, width: 1, gradient: nil).lossSum
                }
            }
            let numeric = try centralDifferences(network.parameters, count: network.parameterCount, h: 1e-2, objective)
            network.zeroGradients()
            try network.forward(batch: 4, context: context)
            _ = labels.withUnsafeBufferPointer {
                loss.evaluate(output: network.output, labels: $0.baseAddress!, batch: 4, width: 1, gradient: network.outputGradient)
            }
            try network.backward(batch: 4, context: context)
            assertGradientsMatch(network.gradients.map(Double.init), numeric, "network with \(loss)")
        }
    }

    // MARK: Frozen layers (trainable: false)

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
        let probe = LayerProbe(BatchNorm(configIndex: 0, channels: 3, momentum: 0.1, epsilon: 1e-5, trainable: false), batch: batch)
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

    func testFrozenLayerConfigErrors() throws {
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
