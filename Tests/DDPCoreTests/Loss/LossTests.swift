import Foundation
import XCTest
@testable import DDPCore

/// The losses: each gradient against central differences of its own value, values and accuracy
/// counts against torch's formulas worked by hand; label smoothing: cross-entropy against
/// torch.nn.CrossEntropyLoss(label_smoothing=ε) itself (loss and gradient, through DDP_PYTHON),
/// binary cross-entropy against Keras's rule y ← y·(1 − ε) + ε/2 computed here in Double, finite
/// differences for every form, and the config's errors.
final class LossTests: XCTestCase {
    // MARK: Without smoothing

    /// d(Σ losses)/d(output) from `evaluate` against central differences of its loss sum.
    private func checkLoss(_ loss: Loss, outputs: [Float], labels: [Float], width: Int, h: Float, _ label: String,
                           classWeights: [Float]? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let batch = labels.count
        let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: outputs.count)
        let gradient = UnsafeMutableBufferPointer<Float>.allocate(capacity: outputs.count)
        defer { values.deallocate(); gradient.deallocate() }
        _ = values.initialize(from: outputs)
        gradient.initialize(repeating: .nan)
        let weights = classWeights.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.count) }
        defer { weights?.deallocate() }
        if let weights, let classWeights { _ = weights.initialize(from: classWeights) }
        let w = weights.map { UnsafePointer($0.baseAddress!) }
        let numeric = labels.withUnsafeBufferPointer { y in
            centralDifferences(values, count: outputs.count, h: h) {
                loss.evaluate(output: values.baseAddress!, labels: y.baseAddress!, batch: batch, width: width, gradient: nil,
                              classWeights: w).lossSum
            }
        }
        _ = labels.withUnsafeBufferPointer { y in
            loss.evaluate(output: values.baseAddress!, labels: y.baseAddress!, batch: batch, width: width, gradient: gradient.baseAddress!,
                          classWeights: w)
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

    /// Class weights (`loss.class_weight`): Σ w_y·ℓ and its gradient, with and without smoothing.
    func testClassWeightedGradients() {
        var random = TestRandom(seed: 54)
        let weights: [Float] = [0.5, 2, 1, 3]
        checkLoss(.crossEntropy, outputs: random.array(5 * 4, -3, 3), labels: [0, 3, 1, 2, 3], width: 4, h: 1e-2,
                  "weighted cross_entropy", classWeights: weights)
        checkLoss(.crossEntropy(labelSmoothing: 0.2), outputs: random.array(5 * 4, -3, 3), labels: [0, 3, 1, 2, 3], width: 4, h: 1e-2,
                  "weighted, smoothed cross_entropy", classWeights: weights)
        checkLoss(.binaryCrossEntropy(fromLogits: true), outputs: random.array(6, -4, 4), labels: [0, 1, 1, 0, 1, 0],
                  width: 1, h: 1e-2, "weighted bce", classWeights: [0.25, 4])
        checkLoss(.binaryCrossEntropy(fromLogits: false), outputs: random.array(8, 0.05, 0.95), labels: [1, 0, 0, 1],
                  width: 2, h: 1e-3, "weighted bce from probabilities, width 2", classWeights: [3, 0.5])
    }

    /// torch.nn.CrossEntropyLoss(weight: w[, label_smoothing: ε]) and BCEWithLogitsLoss with
    /// per-sample weights w_y normalized by Σ w_y: the mean loss and its gradient.
    func testClassWeightsMatchTorch() throws {
        let python = try InteropPython.require(["torch"])
        var random = TestRandom(seed: 55)
        let logits = random.array(6 * 4, -3, 3), labels: [Float] = [0, 3, 1, 2, 3, 3], weights: [Float] = [0.5, 2, 1, 3]
        let binary = random.array(6, -3, 3), binaryLabels: [Float] = [0, 1, 1, 0, 1, 1], binaryWeights: [Float] = [4, 0.5]
        let script = """
            import json, sys, torch
            z, y, w, s = (json.loads(a) for a in sys.argv[1:5])
            zb, yb, wb = (json.loads(a) for a in sys.argv[5:8])
            out = {}
            for name, eps in (("plain", 0.0), ("smoothed", s)):
                t = torch.tensor(z, dtype=torch.float64).reshape(6, 4).requires_grad_()
                loss = torch.nn.functional.cross_entropy(t, torch.tensor(y, dtype=torch.long), weight=torch.tensor(w, dtype=torch.float64), label_smoothing=eps)
                loss.backward()
                out[name] = [loss.item()] + t.grad.flatten().tolist()
            t = torch.tensor(zb, dtype=torch.float64).requires_grad_()
            target = torch.tensor(yb, dtype=torch.float64)
            sample = torch.tensor([wb[int(v)] for v in yb], dtype=torch.float64)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(t, target, reduction="none") * sample).sum() / sample.sum()
            loss.backward()
            out["binary"] = [loss.item()] + t.grad.tolist()
            print(json.dumps(out))
            """
        let json = { (values: [Float]) in "[" + values.map { "\(Double($0))" }.joined(separator: ",") + "]" }
        let result = try runPython(python, ["-c", script, json(logits), json(labels), json(weights), "0.2",
                                            json(binary), json(binaryLabels), json(binaryWeights)])
        XCTAssertEqual(result.status, 0, result.output)
        let torch = try JSONDecoder().decode([String: [Double]].self, from: Data(result.output.utf8))
        let cases: [(String, Loss, [Float], [Float], [Float], Int)] = [
            ("plain", .crossEntropy, logits, labels, weights, 4),
            ("smoothed", .crossEntropy(labelSmoothing: 0.2), logits, labels, weights, 4),
            ("binary", .binaryCrossEntropy(fromLogits: true), binary, binaryLabels, binaryWeights, 1),
        ]
        for (name, loss, outputs, y, w, width) in cases {
            let expected = try XCTUnwrap(torch[name])
            var gradient = [Float](repeating: .nan, count: outputs.count)
            let batch = y.count
            // The weight sum first (no gradient), then the gradient scaled by 1/Σw as the trainer does.
            let total = loss.evaluate(output: outputs, labels: y, batch: batch, width: width, gradient: nil, classWeights: w)
            _ = loss.evaluate(output: outputs, labels: y, batch: batch, width: width, gradient: &gradient,
                              gradientScale: Float(1 / total.weightSum), classWeights: w)
            XCTAssertEqual(total.lossSum / total.weightSum, expected[0], accuracy: 1e-6, "\(name): loss")
            for (index, value) in gradient.enumerated() {
                XCTAssertEqual(Double(value), expected[index + 1], accuracy: 1e-6, "\(name): gradient \(index)")
            }
        }
    }

    func testConfigParsesAndRefusesClassWeights() throws {
        let base = "data: {train: {format: moons, samples: 64, noise: 0.1}}\nmodel: {inputs: 2, layers: [{type: dense, units: 3}]}\n"
            + "optimizer: {type: sgd}\n"
        let parse = { (loss: String) in try TrainingConfig.parse(yaml: base + "loss: " + loss) }
        XCTAssertEqual(try parse("{type: cross_entropy, class_weight: {0: 1.0, 2: 4}}").classWeight, .given([0: 1, 2: 4]))
        XCTAssertEqual(try parse("{type: cross_entropy, class_weight: balanced}").classWeight, .balanced)
        XCTAssertEqual(try ClassWeight.given([2: 4]).resolve(classes: 3, labels: [], origin: "x"), [1, 1, 4])
        let signatures = try ["{type: cross_entropy}", "{type: cross_entropy, class_weight: {0: 1.0, 2: 4}}",
                              "{type: cross_entropy, class_weight: {0: 1.0, 2: 5}}", "{type: cross_entropy, class_weight: balanced}"]
            .map { try parse($0).lossSignature }
        XCTAssertEqual(Set(signatures).count, 4, "a resume under other class weights is told apart: \(signatures)")
        XCTAssertEqual(try ClassWeight.balanced.resolve(classes: 2, labels: [0, 0, 0, 1], origin: "x"), [Float(4.0 / 6), 2])
        let refused: [(String, String)] = [
            ("{type: cross_entropy, class_weight: {3: 2.0}}", "loss.class_weight: class 3 does not exist: the model has 3 classes"),
            ("{type: binary_crossentropy, class_weight: {2: 2.0}}", "class 2 does not exist: the model has 2 classes"),
            ("{type: cross_entropy, class_weight: {0: -1}}", "loss.class_weight.0: expected a weight in [0, 1e6]"),
            ("{type: cross_entropy, class_weight: {a: 1}}", "'a' is not a class index"),
            ("{type: cross_entropy, class_weight: heavy}", "expected balanced or a mapping"),
            ("{type: mse, class_weight: {0: 2}}", "mse has no classes to weight"),
        ]
        for (loss, message) in refused {
            XCTAssertThrowsError(try parse(loss), loss) { XCTAssertTrue("\($0)".contains(message), "\(loss): \($0)") }
        }
        XCTAssertThrowsError(try ClassWeight.given([0: 0, 1: 0]).resolve(classes: 2, labels: [], origin: "x")) {
            XCTAssertTrue("\($0)".contains("every class weighs 0"), "\($0)")
        }
        XCTAssertThrowsError(try ClassWeight.balanced.resolve(classes: 3, labels: [0, 1, 1], origin: "train.csv")) {
            XCTAssertTrue("\($0)".contains("train.csv: no training sample has class 2"), "\($0)")
        }
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

    // MARK: Label smoothing

    private func evaluate(_ loss: Loss, _ outputs: [Float], _ labels: [Float], width: Int)
        -> (lossSum: Double, correct: Double, gradient: [Float]) {
        var gradient = [Float](repeating: .nan, count: outputs.count)
        let result = outputs.withUnsafeBufferPointer { o in
            labels.withUnsafeBufferPointer { y in
                gradient.withUnsafeMutableBufferPointer { g in
                    loss.evaluate(output: o.baseAddress!, labels: y.baseAddress!, batch: labels.count, width: width,
                                  gradient: g.baseAddress!)
                }
            }
        }
        return (result.lossSum, result.correct, gradient)
    }

    /// d(Σ losses)/d(output) against central differences of the loss sum.
    private func checkGradient(_ loss: Loss, outputs: [Float], labels: [Float], width: Int, h: Float, _ label: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: outputs.count)
        defer { values.deallocate() }
        _ = values.initialize(from: outputs)
        let numeric = labels.withUnsafeBufferPointer { y in
            centralDifferences(values, count: outputs.count, h: h) {
                loss.evaluate(output: values.baseAddress!, labels: y.baseAddress!, batch: labels.count, width: width, gradient: nil).lossSum
            }
        }
        let analytic = evaluate(loss, outputs, labels, width: width).gradient
        assertGradientsMatch(analytic.map(Double.init), numeric, label, file: file, line: line)
    }

    // MARK: Finite differences

    func testSmoothedCrossEntropyGradient() {
        var random = TestRandom(seed: 60)
        for epsilon: Float in [0.1, 0.5, 0.9] {
            checkGradient(.crossEntropy(labelSmoothing: epsilon), outputs: random.array(5 * 4, -3, 3), labels: [0, 3, 1, 2, 3],
                          width: 4, h: 1e-2, "cross_entropy, ε = \(epsilon)")
        }
    }

    func testSmoothedBinaryCrossEntropyGradient() {
        var random = TestRandom(seed: 61)
        for epsilon: Float in [0.1, 0.4] {
            checkGradient(.binaryCrossEntropy(fromLogits: true, labelSmoothing: epsilon), outputs: random.array(12, -4, 4),
                          labels: [0, 1, 1, 0], width: 3, h: 1e-2, "bce from logits, ε = \(epsilon)")
            checkGradient(.binaryCrossEntropy(fromLogits: false, labelSmoothing: epsilon), outputs: random.array(8, 0.05, 0.95),
                          labels: [1, 0, 0, 1], width: 2, h: 1e-3, "bce from probabilities, ε = \(epsilon)")
        }
    }

    // MARK: Semantics

    /// ε = 0 is the unsmoothed loss bit for bit, so existing runs keep their trajectories.
    func testZeroSmoothingIsTheUnsmoothedLoss() {
        var random = TestRandom(seed: 62)
        let logits = random.array(6 * 3, -3, 3), labels: [Float] = [0, 1, 2, 2, 1, 0]
        let a = evaluate(.crossEntropy(labelSmoothing: 0), logits, labels, width: 3)
        let b = evaluate(.crossEntropy, logits, labels, width: 3)
        XCTAssertEqual(a.lossSum, b.lossSum)
        XCTAssertEqual(a.gradient, b.gradient)
        XCTAssertEqual(Loss.crossEntropy, .crossEntropy(labelSmoothing: 0))
        XCTAssertEqual(Loss.binaryCrossEntropy(fromLogits: false), .binaryCrossEntropy(fromLogits: false, labelSmoothing: 0))
    }

    /// Keras's BinaryCrossentropy(label_smoothing=ε): y' = y·(1 − ε) + ε/2, then the usual loss
    /// (torch's −100 log clamp on probabilities, which these values never reach); accuracy
    /// counts the prediction against y, not y'.
    func testBinaryCrossEntropyFollowsKerasRule() {
        let epsilon = 0.2
        let logits: [Float] = [-2.5, -0.3, 0.7, 3.1, 1.2, -1.7]
        let labels: [Float] = [0, 1, 1, 1, 0, 0]
        func smoothed(_ y: Float) -> Double { Double(y) * (1 - epsilon) + 0.5 * epsilon }
        func sigmoid(_ z: Float) -> Double { 1 / (1 + exp(-Double(z))) }

        let fromLogits = evaluate(.binaryCrossEntropy(fromLogits: true, labelSmoothing: Float(epsilon)), logits, labels, width: 1)
        let probabilities = logits.map { Float(sigmoid($0)) }
        let fromProbabilities = evaluate(.binaryCrossEntropy(fromLogits: false, labelSmoothing: Float(epsilon)),
                                         probabilities, labels, width: 1)
        var expected = 0.0
        for (z, y) in zip(logits, labels) {
            let p = sigmoid(z), t = smoothed(y)
            expected += -(t * log(p) + (1 - t) * log(1 - p))
        }
        XCTAssertEqual(fromLogits.lossSum, expected, accuracy: 1e-5)
        XCTAssertEqual(fromProbabilities.lossSum, expected, accuracy: 1e-4)
        for (i, (z, y)) in zip(logits, labels).enumerated() {
            let p = sigmoid(z), t = smoothed(y)
            XCTAssertEqual(Double(fromLogits.gradient[i]), p - t, accuracy: 1e-6, "dℓ/dz = σ(z) − y'")
            XCTAssertEqual(Double(fromProbabilities.gradient[i]), (p - t) / (p * (1 - p)), accuracy: 1e-4, "dℓ/dp")
        }
        // Predictions 0, 0, 1, 1, 1, 0 against labels 0, 1, 1, 1, 0, 0: four right.
        XCTAssertEqual(fromLogits.correct, 4)
        XCTAssertEqual(fromProbabilities.correct, 4)
    }

    /// Loss sum and gradient of the sum against torch.nn.CrossEntropyLoss(label_smoothing=ε,
    /// reduction='sum') on the same logits and labels.
    func testCrossEntropyMatchesTorch() throws {
        let python = try InteropPython.require(["torch"])
        var random = TestRandom(seed: 63)
        let batch = 7, classes = 5
        let logits = random.array(batch * classes, -4, 4)
        let labels: [Float] = [0, 4, 2, 2, 1, 3, 4]
        let script = """
            import json, sys
            import torch
            logits, labels = json.loads(sys.argv[1]), json.loads(sys.argv[2])
            result = {}
            for epsilon in json.loads(sys.argv[3]):
                z = torch.tensor(logits, dtype=torch.float32).reshape(-1, \(classes)).requires_grad_()
                loss = torch.nn.CrossEntropyLoss(label_smoothing=epsilon, reduction='sum')(z, torch.tensor(labels, dtype=torch.long))
                loss.backward()
                result[str(epsilon)] = {"loss": loss.item(), "gradient": z.grad.reshape(-1).tolist()}
            print(json.dumps(result))
            """
        let epsilons: [Float] = [0, 0.1, 0.35, 0.9]
        func json(_ values: [Float]) -> String { "[" + values.map { "\($0)" }.joined(separator: ",") + "]" }
        let (status, output) = try runPython(python, ["-c", script, json(logits), json(labels), json(epsilons)])
        XCTAssertEqual(status, 0, output)
        let line = try XCTUnwrap(output.split(separator: "\n").last, output)
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [String: Any]], output)
        for epsilon in epsilons {
            let torch = try XCTUnwrap(result["\(Double(epsilon))"] ?? result["\(epsilon)"], "ε = \(epsilon) in \(result.keys)")
            let theirLoss = try XCTUnwrap(torch["loss"] as? Double)
            let theirGradient = try XCTUnwrap(torch["gradient"] as? [Double])
            let ours = evaluate(.crossEntropy(labelSmoothing: epsilon), logits, labels, width: classes)
            XCTAssertEqual(ours.lossSum, theirLoss, accuracy: 1e-5 * max(1, abs(theirLoss)), "loss, ε = \(epsilon)")
            XCTAssertEqual(ours.gradient.count, theirGradient.count)
            for (i, (a, b)) in zip(ours.gradient, theirGradient).enumerated() {
                XCTAssertEqual(Double(a), b, accuracy: 1e-6, "dℓ/dz[\(i)], ε = \(epsilon)")
            }
        }
    }

    /// The evaluator (val_loss, test_loss, `ddp eval`) reports the smoothed loss: the mean over
    /// samples of torch's smoothed ℓ on the network's own logits, recomputed here in Double.
    func testEvaluatorReportsTheSmoothedLoss() throws {
        let network = try makeNetwork(inputs: 2, [Layers.dense(3)], maxBatch: 8, seed: 5)
        let data = Dataset(count: 4, featureCount: 2, storage: .floats([1, -2, 0.5, 3, -1, 0, 2, 2]),
                           labels: [0, 2, 1, 2], origin: "tiny")
        let epsilon = 0.3
        let context = StepContext(communicator: LocalCommunicator(), maxBatch: Evaluator.chunk(for: network.config))
        let evaluator = Evaluator(network: network, loss: .crossEntropy(labelSmoothing: Float(epsilon)), context: context)
        let result = try evaluator.evaluate(data, transform: .identity(featureCount: 2))

        var logits = [Float](repeating: 0, count: 12)
        try evaluator.predict(inputs: [1, -2, 0.5, 3, -1, 0, 2, 2], rows: 4, into: &logits)
        var expected = 0.0
        for row in 0..<4 {
            let z = logits[(row * 3)..<(row * 3 + 3)].map(Double.init)
            let lse = log(z.map(exp).reduce(0, +))
            let nll = lse - z[Int(data.labels[row])]
            expected += (1 - epsilon) * nll + epsilon * z.map { lse - $0 }.reduce(0, +) / 3
        }
        XCTAssertEqual(result.loss, expected / 4, accuracy: 1e-5)
        let unsmoothed = try Evaluator(network: network, loss: .crossEntropy, context: context)
            .evaluate(data, transform: .identity(featureCount: 2))
        XCTAssertNotEqual(result.loss, unsmoothed.loss, accuracy: 1e-3)
        XCTAssertEqual(result.accuracy, unsmoothed.accuracy, "accuracy does not depend on ε")
    }

    // MARK: Config

    private let base = """
        data:
          train: {format: moons, samples: 64}
        model:
          inputs: 2
          layers:
            - {type: dense, units: 2}
        optimizer: {type: sgd}
        training: {epochs: 1, batch_size: 16}
        """

    func testConfigParsesLabelSmoothing() throws {
        var config = try TrainingConfig.parse(yaml: base + "\nloss: {type: cross_entropy, label_smoothing: 0.1}")
        XCTAssertEqual(config.loss, .crossEntropy(labelSmoothing: 0.1))
        config = try TrainingConfig.parse(yaml: base + "\nloss: {type: binary_crossentropy, from_logits: false, label_smoothing: 0.2}")
        XCTAssertEqual(config.loss, .binaryCrossEntropy(fromLogits: false, labelSmoothing: 0.2))
        config = try TrainingConfig.parse(yaml: base + "\nloss: {type: cross_entropy}")
        XCTAssertEqual(config.loss, .crossEntropy)
    }

    func testConfigRefusesBadLabelSmoothing() {
        for bad in ["1", "1.5", "-0.1"] {
            assertDDPError(.config, containing: ["loss.label_smoothing", "[0, 1)"]) {
                try TrainingConfig.parse(yaml: self.base + "\nloss: {type: cross_entropy, label_smoothing: \(bad)}")
            }
        }
        assertDDPError(.config, containing: ["loss.label_smoothing", "expected a number", "'lots'"]) {
            try TrainingConfig.parse(yaml: self.base + "\nloss: {type: binary_crossentropy, label_smoothing: lots}")
        }
        assertDDPError(.config, containing: ["loss.label_smoothing", "mse"]) {
            try TrainingConfig.parse(yaml: self.base + "\nloss: {type: mse, label_smoothing: 0.1}")
        }
    }
}
