import Foundation
import XCTest
@testable import DDPCore

/// Finite-difference checks of every backward pass: each layer against L = Σ r ⊙ y, each loss
/// against its own value, the kernel/bias/activity penalties, and whole networks end to end.
/// Forward passes run in Float32; differences are central, with quotients in Double.
final class GradientCheckTests: XCTestCase {

    // MARK: Layers

    /// Checks dL/dx and dL/dθ of a probed layer against central differences.
    private func checkLayer(_ probe: LayerProbe, _ label: String, h: Float = 1e-2, relative: Double = 1e-2,
                            file: StaticString = #filePath, line: UInt = #line) throws {
        let inputCount = probe.batch * probe.layer.inputWidth
        let numericInput = try centralDifferences(probe.input, count: inputCount, h: h, probe.objective)
        let numericParameters = try centralDifferences(probe.parameters, count: probe.parameterCount, h: h, probe.objective)
        try probe.backward()
        assertGradientsMatch(probe.inputGradient.prefix(inputCount).map(Double.init), numericInput,
                             "\(label) dL/dx", relative: relative, file: file, line: line)
        if probe.parameterCount > 0 {
            assertGradientsMatch(probe.gradients.prefix(probe.parameterCount).map(Double.init), numericParameters,
                                 "\(label) dL/dθ", relative: relative, file: file, line: line)
        }
    }

    private func fill(_ probe: LayerProbe, inputs: [Float], seed: UInt64) {
        var random = TestRandom(seed: seed)
        store(inputs, into: probe.input)
        store(random.array(probe.batch * probe.layer.outputWidth, -1, 1), into: probe.upstream)
    }

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

    func testBatchNormTrainingGammaBetaAndInput() throws {
        let norm = BatchNorm(configIndex: 0, width: 3, momentum: 0.1, epsilon: 1e-5)
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
        let norm = BatchNorm(configIndex: 0, width: 2, momentum: 0.1, epsilon: 1e-3)
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

    func testEveryActivation() throws {
        for function in ActivationFunction.allCases {
            let layer = Activation(configIndex: 0, function: function, width: 4)
            let probe = LayerProbe(layer, batch: 3)
            XCTAssertEqual(probe.parameterCount, 0)
            var random = TestRandom(seed: 10 + UInt64(function.rawValue.count))
            let inputs: [Float] = switch function {
            case .relu, .leakyRelu, .elu, .selu: random.awayFromZero(12, limit: 2.5, gap: 0.1)
            default: random.array(12, -2.5, 2.5)
            }
            fill(probe, inputs: inputs, seed: 20)
            try checkLayer(probe, "activation \(function.rawValue)", h: 1e-2)
        }
    }

    /// The forward values themselves, against the textbook formulas (torch's constants).
    func testActivationValues() throws {
        let x: [Double] = [-2.5, -1, -0.3, 0.2, 0.9, 3]
        let alpha = 1.6732632423543772, scale = 1.0507009873554805
        func erf(_ v: Double) -> Double { Foundation.erf(v) }
        let formulas: [ActivationFunction: (Double) -> Double] = [
            .linear: { $0 },
            .relu: { max($0, 0) },
            .leakyRelu: { $0 > 0 ? $0 : 0.01 * $0 },
            .elu: { $0 > 0 ? $0 : exp($0) - 1 },
            .selu: { scale * ($0 > 0 ? $0 : alpha * (exp($0) - 1)) },
            .gelu: { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) },
            .tanh: { Foundation.tanh($0) },
            .sigmoid: { 1 / (1 + exp(-$0)) },
        ]
        for function in ActivationFunction.allCases {
            let probe = LayerProbe(Activation(configIndex: 0, function: function, width: 6), batch: 1)
            store(x.map(Float.init), into: probe.input)
            try probe.forward()
            if function == .softmax {
                let denominator = x.reduce(0) { $0 + exp($1) }
                for j in 0..<6 { XCTAssertEqual(Double(probe.output[j]), exp(x[j]) / denominator, accuracy: 1e-6, "softmax") }
                continue
            }
            let formula = try XCTUnwrap(formulas[function])
            for j in 0..<6 {
                XCTAssertEqual(Double(probe.output[j]), formula(x[j]), accuracy: 1e-5 * max(1, abs(formula(x[j]))),
                               "\(function.rawValue)(\(x[j]))")
            }
        }
    }

    func testDropoutTrainingWithFixedMask() throws {
        let dropout = Dropout(configIndex: 2, width: 6, rate: 0.4)
        let probe = LayerProbe(dropout, batch: 4, training: true, seed: 9, epoch: 3, rows: [11, 5, 42, 7])
        var random = TestRandom(seed: 30)
        fill(probe, inputs: random.array(24, -2, 2), seed: 31)
        try checkLayer(probe, "dropout (training)")
        // The check is only meaningful if the mask has both dropped and kept units.
        let ratio = (0..<24).map { probe.inputGradient[$0] / probe.upstream[$0] }
        XCTAssertTrue(ratio.contains(0))
        XCTAssertTrue(ratio.contains { abs($0 - 1 / 0.6) < 1e-5 })
        XCTAssertTrue(ratio.allSatisfy { $0 == 0 || abs($0 - 1 / 0.6) < 1e-5 }, "\(ratio)")
    }

    func testGaussianNoiseTraining() throws {
        let noise = GaussianNoise(configIndex: 1, width: 5, stddev: 0.7)
        let probe = LayerProbe(noise, batch: 3, training: true, seed: 4, epoch: 1)
        var random = TestRandom(seed: 40)
        fill(probe, inputs: random.array(15, -2, 2), seed: 41)
        try checkLayer(probe, "gaussian noise (training)")
        try probe.forward()
        XCTAssertTrue((0..<15).contains { probe.output[$0] != probe.input[$0] }, "noise was not applied")
    }

    // MARK: Losses

    /// d(Σ losses)/d(output) from `evaluate` against central differences of its loss sum.
    private func checkLoss(_ loss: Loss, outputs: [Float], labels: [Float], width: Int, h: Float, _ label: String,
                           file: StaticString = #filePath, line: UInt = #line) {
        let batch = labels.count
        let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: outputs.count)
        let gradient = UnsafeMutableBufferPointer<Float>.allocate(capacity: outputs.count)
        defer { values.deallocate(); gradient.deallocate() }
        _ = values.initialize(from: outputs)
        gradient.initialize(repeating: .nan)
        let numeric = labels.withUnsafeBufferPointer { y in
            centralDifferences(values, count: outputs.count, h: h) {
                loss.evaluate(output: values.baseAddress!, labels: y.baseAddress!, batch: batch, width: width, gradient: nil).lossSum
            }
        }
        _ = labels.withUnsafeBufferPointer { y in
            loss.evaluate(output: values.baseAddress!, labels: y.baseAddress!, batch: batch, width: width, gradient: gradient.baseAddress!)
        }
        assertGradientsMatch(gradient.map(Double.init), numeric, label, file: file, line: line)
    }

    func testCrossEntropyGradient() {
        var random = TestRandom(seed: 50)
        checkLoss(.crossEntropy, outputs: random.array(5 * 4, -3, 3), labels: [0, 3, 1, 2, 3], width: 4, h: 1e-2, "cross_entropy")
    }

    func testBinaryCrossEntropyFromLogitsGradient() {
        var random = TestRandom(seed: 51)
        checkLoss(.binaryCrossEntropy(fromLogits: true), outputs: random.array(6, -4, 4), labels: [0, 1, 1, 0, 1, 0],
                  width: 1, h: 1e-2, "bce from logits, width 1")
        checkLoss(.binaryCrossEntropy(fromLogits: true), outputs: random.array(12, -4, 4), labels: [0, 1, 1, 0],
                  width: 3, h: 1e-2, "bce from logits, width 3")
    }

    func testBinaryCrossEntropyFromProbabilitiesGradient() {
        var random = TestRandom(seed: 52)
        checkLoss(.binaryCrossEntropy(fromLogits: false), outputs: random.array(6, 0.05, 0.95), labels: [0, 1, 1, 0, 1, 0],
                  width: 1, h: 1e-3, "bce from probabilities, width 1")
        checkLoss(.binaryCrossEntropy(fromLogits: false), outputs: random.array(8, 0.05, 0.95), labels: [1, 0, 0, 1],
                  width: 2, h: 1e-3, "bce from probabilities, width 2")
    }

    func testMeanSquaredErrorGradient() {
        var random = TestRandom(seed: 53)
        checkLoss(.meanSquaredError, outputs: random.array(5, -2, 2), labels: random.array(5, -1, 1), width: 1, h: 1e-2, "mse, width 1")
        checkLoss(.meanSquaredError, outputs: random.array(12, -2, 2), labels: random.array(4, -1, 1), width: 3, h: 1e-2, "mse, width 3")
    }

    /// Loss values and accuracy counts against torch's formulas worked by hand.
    func testLossValuesByHand() {
        func evaluate(_ loss: Loss, _ outputs: [Float], _ labels: [Float], width: Int) -> (Double, Double) {
            outputs.withUnsafeBufferPointer { o in
                labels.withUnsafeBufferPointer { y in
                    let r = loss.evaluate(output: o.baseAddress!, labels: y.baseAddress!, batch: labels.count, width: width, gradient: nil)
                    return (r.lossSum, r.correct)
                }
            }
        }
        // cross entropy: [0,0,0]→label 2 is ln 3 (argmax is index 0, wrong); [1,2,3]→label 0 is lse − 1 (wrong);
        // [1,2,3]→label 2 is lse − 3 (right).
        let lse = log(exp(1.0) + exp(2.0) + exp(3.0))
        var (sum, correct) = evaluate(.crossEntropy, [0, 0, 0, 1, 2, 3, 1, 2, 3], [2, 0, 2], width: 3)
        XCTAssertEqual(sum, log(3) + (lse - 1) + (lse - 3), accuracy: 1e-5)
        XCTAssertEqual(correct, 1)
        // BCE from logits: z = 0, y = 1 → ln 2; z = 2, y = 0 → ln(1 + e²); z = −3, y = 1 → ln(1 + e³); z = 5, y = 1 → ln(1 + e⁻⁵).
        (sum, correct) = evaluate(.binaryCrossEntropy(fromLogits: true), [0, 2, -3, 5], [1, 0, 1, 1], width: 1)
        XCTAssertEqual(sum, log(2) + log(1 + exp(2)) + log(1 + exp(3)) + log(1 + exp(-5)), accuracy: 1e-5)
        XCTAssertEqual(correct, 1)          // only z = 5 for y = 1 (z = 0 is not > 0)
        // BCE from probabilities: −ln 0.8, −ln 0.2, and p = 0 with y = 1 clamps log at −100.
        (sum, correct) = evaluate(.binaryCrossEntropy(fromLogits: false), [0.8, 0.8, 0], [1, 0, 1], width: 1)
        XCTAssertEqual(sum, -log(0.8) - log(0.2) + 100, accuracy: 1e-4)
        XCTAssertEqual(correct, 1)
        // BCE over 2 units is the mean over units (torch's 'mean' per sample).
        (sum, _) = evaluate(.binaryCrossEntropy(fromLogits: true), [0, 0], [1], width: 2)
        XCTAssertEqual(sum, log(2), accuracy: 1e-6)
        // MSE: mean over units of (ŷ − y)²: ((1 − 2)² + (3 − 2)²)/2 = 1, and (0.5 − 0)² = 0.25.
        (sum, _) = evaluate(.meanSquaredError, [1, 3, 0.5, 0], [2, 0], width: 2)
        XCTAssertEqual(sum, 1 + 0.125, accuracy: 1e-6)
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
}
