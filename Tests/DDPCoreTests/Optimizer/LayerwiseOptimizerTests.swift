import Foundation
import XCTest
@testable import DDPCore

/// LAMB against Keras 3's keras.optimizers.Lamb itself (on its torch backend), LARS against
/// Algorithm 1 of You et al. 2017 transcribed line by line, and both over slices of the buffer
/// (the sharded update) against one optimizer over the whole.
final class LayerwiseOptimizerTests: XCTestCase {
    /// Dense 3 → 4 → 2: kernel 12, bias 4, kernel 8, bias 2.
    private func network() throws -> Network {
        try makeNetwork(inputs: 3, [Layers.dense(4), Layers.dense(2)], maxBatch: 1)
    }

    private func tensorSizes(_ network: Network) -> [Int] { network.layout.trainableTensors.map(\.count) }

    private func assertClose(_ actual: [Float], _ expected: [Double], relative: Double, _ message: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, message, file: file, line: line)
        let scale = max(expected.map(abs).max() ?? 0, 1e-6)
        let worst = zip(actual, expected).map { abs(Double($0) - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, relative, "\(message): largest difference \(worst)", file: file, line: line)
    }

    private func moved(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    // MARK: LAMB

    /// Six steps of keras.optimizers.Lamb, one Keras variable per tensor, from the same start
    /// and gradients: plain; and with weight decay on every tensor (Keras decays every variable
    /// it is given: `decay: all`), a scheduled lr and another ε.
    func testLAMBMatchesKeras() throws {
        setenv("KERAS_BACKEND", "torch", 1)
        let python = try InteropPython.require(["keras"])
        var random = TestRandom(seed: 19)
        let network = try network()
        let count = network.parameters.count
        let start = random.array(count, -1, 1)
        let gradients = (0..<6).map { _ in random.array(count, -2, 2) }
        let rates: [Float] = [0.01, 0.02, 0.03, 0.02, 0.01, 0.005]
        let script = """
            import json, sys
            import numpy as np, keras
            start, gradients, sizes, rates = (json.loads(a) for a in sys.argv[1:5])
            out = {}
            for name, options in json.loads(sys.argv[5]).items():
                cuts = np.cumsum([0] + sizes)
                variables = [keras.Variable(np.array(start[a:b], dtype="float32")) for a, b in zip(cuts, cuts[1:])]
                optimizer = keras.optimizers.Lamb(learning_rate=0.01, **options)
                for g, lr in zip(gradients, rates):
                    optimizer.learning_rate = lr
                    optimizer.apply([keras.ops.convert_to_tensor(np.array(g[a:b], dtype="float32")) for a, b in zip(cuts, cuts[1:])],
                                    variables)
                out[name] = [float(x) for v in variables for x in keras.ops.convert_to_numpy(v)]
            print(json.dumps(out))
            """
        let cases: [(name: String, keras: [String: Double], configure: (inout OptimizerConfig) -> Void)] = [
            ("plain", [:], { _ in }),
            ("decay", ["weight_decay": 0.1, "epsilon": 1e-6], { $0.weightDecay = 0.1; $0.decay = .all; $0.epsilon = 1e-6 }),
        ]
        let json = { (value: Any) in String(decoding: try JSONSerialization.data(withJSONObject: value), as: UTF8.self) }
        let result = try runPython(python, ["-c", script, try json(start.map(Double.init)), try json(gradients.map { $0.map(Double.init) }),
                                            try json(tensorSizes(network)), try json(rates.map(Double.init)),
                                            try json(Dictionary(uniqueKeysWithValues: cases.map { ($0.name, $0.keras) }))])
        XCTAssertEqual(result.status, 0, result.output)
        let lastLine = result.output.split(separator: "\n").last.map(String.init) ?? ""
        let keras = try JSONDecoder().decode([String: [Double]].self, from: Data(lastLine.utf8))
        for c in cases {
            store(start, into: network.parameters)
            var config = OptimizerConfig(kind: .lamb, learningRate: 0.01)
            config.epsilon = 1e-7
            c.configure(&config)
            let lamb = Optimizer(config: config, layout: network.layout)
            for (g, lr) in zip(gradients, rates) {
                store(g, into: network.gradients)
                lamb.apply(parameters: network.parameters, gradients: network.gradients, lr: lr)
            }
            assertClose(Array(network.parameters), try XCTUnwrap(keras[c.name]), relative: 1e-6, "LAMB \(c.name) against Keras")
            XCTAssertGreaterThan(moved(Array(network.parameters), start), 1e-2, "\(c.name): it moved")
        }
    }

    /// The trust ratio makes each tensor's first step lr·‖p‖ long, whatever the gradient's size
    /// (the first moment over the root of the second is ±1 elementwise at step 1).
    func testLAMBFirstStepIsLearningRateTimesTheParameterNorm() throws {
        let network = try network()
        network.initialize(seed: 4)
        let before = Array(network.parameters)
        store((0..<network.parameters.count).map { Float($0 % 5 + 1) * 1e3 }, into: network.gradients)
        let lamb = Optimizer(config: OptimizerConfig(kind: .lamb, learningRate: 0.1), layout: network.layout)
        lamb.apply(parameters: network.parameters, gradients: network.gradients, lr: 0.1)
        for slot in network.layout.trainableTensors {
            let span = slot.offset..<(slot.offset + slot.count)
            let norm = before[span].map { Double($0 * $0) }.reduce(0, +).squareRoot()
            let step = zip(network.parameters[span], before[span]).map { Double(($0 - $1) * ($0 - $1)) }.reduce(0, +).squareRoot()
            if norm > 0 {
                XCTAssertEqual(step, 0.1 * norm, accuracy: 1e-5 * norm, "tensor at \(slot.offset)")
            } else {
                // Zero-initialized biases: ratio 1, a plain step of lr per element.
                XCTAssertEqual(step, 0.1 * Double(slot.count).squareRoot(), accuracy: 1e-5, "zero tensor at \(slot.offset)")
            }
        }
    }

    // MARK: LARS

    /// Algorithm 1 of You et al. 2017 with eq. 6's η, in Double, per tensor l:
    ///     λˡ = η‖wˡ‖ / (‖gˡ‖ + β‖wˡ‖ + ε)        (1 where a norm is 0, or for a tensor not adapted)
    ///     vˡ ← m·vˡ + γ·λˡ·(gˡ + β·wˡ)
    ///     wˡ ← wˡ − vˡ
    private func larsReference(start: [Float], gradients: [[Float]], rates: [Float], sizes: [Int], adapted: [Bool], decayed: [Bool],
                               eta: Double, beta: Double, momentum: Double, epsilon: Double) -> [Double] {
        var w = start.map(Double.init), v = [Double](repeating: 0, count: start.count)
        for (g32, gamma32) in zip(gradients, rates) {
            let g = g32.map(Double.init), gamma = Double(gamma32)
            var offset = 0
            for (l, size) in sizes.enumerated() {
                let span = offset..<(offset + size)
                let b = decayed[l] ? beta : 0
                let wNorm = span.map { w[$0] * w[$0] }.reduce(0, +).squareRoot()
                let gNorm = span.map { g[$0] * g[$0] }.reduce(0, +).squareRoot()
                let lambda = adapted[l] && wNorm > 0 && gNorm > 0 ? eta * wNorm / (gNorm + b * wNorm + epsilon) : 1
                for i in span {
                    v[i] = momentum * v[i] + gamma * lambda * (g[i] + b * w[i])
                    w[i] -= v[i]
                }
                offset += size
            }
        }
        return w
    }

    func testLARSMatchesThePaperLineByLine() throws {
        var random = TestRandom(seed: 23)
        let network = try network()
        let count = network.parameters.count
        let start = random.array(count, -1, 1)
        let gradients = (0..<6).map { _ in random.array(count, -2, 2) }
        let rates: [Float] = [1, 2, 3, 2, 1, 0.5]
        let kernels = network.layout.trainableTensors.map { $0.role == .kernel }
        let everything = kernels.map { _ in true }
        let cases: [(name: String, adapt: DecayScope, decay: DecayScope, wd: Float, momentum: Float)] = [
            ("kernels adapted and decayed", .kernels, .kernels, 0.01, 0.9),
            ("all adapted, all decayed", .all, .all, 0.05, 0.9),
            ("no momentum, no decay", .kernels, .kernels, 0, 0),
        ]
        for c in cases {
            store(start, into: network.parameters)
            var config = OptimizerConfig(kind: .lars, learningRate: 1)
            config.adapt = c.adapt
            config.decay = c.decay
            config.weightDecay = c.wd
            config.momentum = c.momentum
            config.trustCoefficient = 0.02
            let lars = Optimizer(config: config, layout: network.layout)
            for (g, lr) in zip(gradients, rates) {
                store(g, into: network.gradients)
                lars.apply(parameters: network.parameters, gradients: network.gradients, lr: lr)
            }
            let expected = larsReference(start: start, gradients: gradients, rates: rates, sizes: tensorSizes(network),
                                         adapted: c.adapt == .all ? everything : kernels, decayed: c.decay == .all ? everything : kernels,
                                         eta: 0.02, beta: Double(c.wd), momentum: Double(c.momentum), epsilon: 1e-8)
            assertClose(Array(network.parameters), expected, relative: 1e-6, "LARS \(c.name)")
            XCTAssertGreaterThan(moved(Array(network.parameters), start), 1e-2, "\(c.name): it moved")
        }
    }

    // MARK: Over slices

    /// Optimizers over slices cut inside tensors, their shares of the per-tensor sums added
    /// between the halves of the step (as the sharded update does over ranks), and, for LARS,
    /// clipping applied after its shares were taken: one optimizer over the whole buffer, to
    /// rounding (the sums are added in another order).
    func testSlicesWithSummedSharesFollowTheWholeBuffer() throws {
        for kind in [OptimizerConfig.Kind.lamb, .lars] {
            let whole = try network(), split = try network()
            whole.initialize(seed: 8)
            split.initialize(seed: 8)
            var config = OptimizerConfig(kind: kind, learningRate: kind == .lars ? 1 : 0.01)
            config.weightDecay = 0.05
            config.momentum = 0.9
            let reference = Optimizer(config: config, layout: whole.layout)
            let count = whole.parameterCount                       // 12 + 4 + 8 + 2 = 26
            let cuts = [0, 5, 14, 16, 23, count]
            let slices = zip(cuts, cuts.dropFirst()).map { Optimizer(config: config, layout: split.layout, range: $0..<$1, capacity: $1 - $0) }
            var sums = [Double](repeating: 0, count: 2 * reference.tensorCount)
            let clip: Float = 0.5
            for step in 0..<5 {
                let gradients = (0..<count).map { Float(sin(Double($0 * 5 + step))) }
                store(gradients.map { $0 * clip }, into: whole.gradients)
                reference.apply(parameters: whole.parameters, gradients: whole.gradients, lr: config.learningRate)
                store(gradients, into: split.gradients)
                let p = split.parameters.baseAddress!, g = split.gradients.baseAddress!
                for i in sums.indices { sums[i] = 0 }
                sums.withUnsafeMutableBufferPointer { sums in
                    for slice in slices {
                        let lower = slice.range.lowerBound
                        if kind == .lars {
                            slice.addLARSShares(parameters: p + lower, gradients: g + lower, into: sums.baseAddress!)
                        } else {
                            for i in slice.range { g[i] *= clip }
                            slice.beginLAMBStep(parameters: p + lower, gradients: .init(g + lower), update: g + lower, lr: config.learningRate,
                                              sums: sums.baseAddress!)
                        }
                    }
                    for slice in slices {
                        let lower = slice.range.lowerBound
                        if kind == .lars { for i in slice.range { g[i] *= clip } }
                        slice.finishLayerwiseStep(parameters: p + lower, gradients: g + lower, lr: config.learningRate,
                                                  sums: sums.baseAddress!, gradientScale: kind == .lars ? clip : 1)
                    }
                }
            }
            assertClose(Array(split.parameters), Array(whole.parameters).map(Double.init), relative: 1e-6, "\(kind): slices against the whole")
            XCTAssertEqual(slices.map(\.step), Array(repeating: 5, count: slices.count), "\(kind): every slice counted its steps")
            XCTAssertGreaterThan(moved(Array(whole.parameters), { let n = try! network(); n.initialize(seed: 8); return Array(n.parameters) }()),
                                 1e-3, "\(kind): it moved")
        }
    }

    // MARK: Config

    func testConfigDefaultsAndKeys() throws {
        let yaml = "data: {train: {format: moons, samples: 64, noise: 0.1}}\nmodel: {inputs: 2, layers: [{type: dense, units: 2}]}\n"
        let lamb = try TrainingConfig.parse(yaml: yaml + "optimizer: {type: lamb}").optimizer
        XCTAssertEqual(lamb.learningRate, 0.001)
        XCTAssertEqual(lamb.epsilon, 1e-7, "Keras's Lamb ε")
        XCTAssertEqual(lamb.weightDecay, 0)
        let lars = try TrainingConfig.parse(yaml: yaml + "optimizer: {type: lars, trust_coefficient: 0.02, adapt: all, weight_decay: 5e-4}").optimizer
        XCTAssertEqual(lars.momentum, 0.9, "the paper's momentum")
        XCTAssertEqual(lars.trustCoefficient, 0.02)
        XCTAssertEqual(lars.adapt, .all)
        XCTAssertThrowsError(try TrainingConfig.parse(yaml: yaml + "optimizer: {type: lamb, momentum: 0.9}")) { error in
            XCTAssertTrue("\(error)".contains("momentum"), "\(error)")
        }
        XCTAssertThrowsError(try TrainingConfig.parse(yaml: yaml + "optimizer: {type: lars, beta1: 0.9}")) { error in
            XCTAssertTrue("\(error)".contains("beta1"), "\(error)")
        }
        XCTAssertThrowsError(try TrainingConfig.parse(yaml: yaml + "optimizer: {type: lars, adapt: biases}")) { error in
            XCTAssertTrue("\(error)".contains("optimizer.adapt"), "\(error)")
        }
    }
}
