import Foundation
import XCTest
@testable import DDPCore

/// Every optimizer update against values worked by hand from torch.optim's update rules
/// (the literals were also confirmed against torch.optim on a 1-element parameter in float64).
final class OptimizerTests: XCTestCase {

    /// Dense 1 → 1: parameters [w (kernel), b (bias)].
    private func scalarNetwork() throws -> Network {
        try makeNetwork(inputs: 1, [Layers.dense(1)], maxBatch: 1)
    }

    private func optimizer(_ kind: OptimizerConfig.Kind, lr: Float, _ configure: (inout OptimizerConfig) -> Void = { _ in },
                           network: Network) -> Optimizer {
        var config = OptimizerConfig(kind: kind, learningRate: lr)
        configure(&config)
        return Optimizer(config: config, layout: network.layout)
    }

    /// Sets the gradients and takes one step; returns the parameters after it.
    @discardableResult
    private func step(_ optimizer: Optimizer, _ network: Network, _ gradients: [Float], lr: Float) -> [Float] {
        store(gradients, into: network.gradients)
        optimizer.apply(parameters: network.parameters, gradients: network.gradients, lr: lr)
        return Array(network.parameters)
    }

    private func assertClose(_ actual: [Float], _ expected: [Double], accuracy: Double = 1e-6, _ message: String = "",
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, message, file: file, line: line)
        for (a, e) in zip(actual, expected) {
            XCTAssertEqual(Double(a), e, accuracy: accuracy, "\(message): \(actual) vs \(expected)", file: file, line: line)
        }
    }

    // MARK: SGD

    func testPlainSGD() throws {
        let network = try scalarNetwork()
        store([1, -2], into: network.parameters)
        let sgd = optimizer(.sgd, lr: 0.1, network: network)
        // p ← p − lr·g
        assertClose(step(sgd, network, [0.5, -1], lr: 0.1), [0.95, -1.9])
        assertClose(step(sgd, network, [0.25, 2], lr: 0.2), [0.9, -2.3])
    }

    func testSGDMomentumFirstStepTakesTheGradient() throws {
        let network = try scalarNetwork()
        store([1, 1], into: network.parameters)
        let sgd = optimizer(.sgd, lr: 0.1, { $0.momentum = 0.9 }, network: network)
        // step 1: b = g = 0.5 (not 0.9·0 + g scaled by anything), p = 1 − 0.1·0.5 = 0.95
        assertClose(step(sgd, network, [0.5, 0.5], lr: 0.1), [0.95, 0.95])
        assertClose(Array(sgd.firstMoment), [0.5, 0.5])
        // step 2: b = 0.9·0.5 + 0.25 = 0.7, p = 0.95 − 0.07 = 0.88
        assertClose(step(sgd, network, [0.25, 0.25], lr: 0.1), [0.88, 0.88])
        assertClose(Array(sgd.firstMoment), [0.7, 0.7])
    }

    func testSGDDampening() throws {
        let network = try scalarNetwork()
        store([1, 1], into: network.parameters)
        let sgd = optimizer(.sgd, lr: 0.1, { $0.momentum = 0.9; $0.dampening = 0.5 }, network: network)
        // step 1: b = g (torch does not dampen the first step); step 2: b = 0.9·0.5 + 0.5·0.25 = 0.575
        assertClose(step(sgd, network, [0.5, 0.5], lr: 0.1), [0.95, 0.95])
        assertClose(step(sgd, network, [0.25, 0.25], lr: 0.1), [0.8925, 0.8925])
    }

    func testNesterov() throws {
        let network = try scalarNetwork()
        store([1, 1], into: network.parameters)
        let sgd = optimizer(.sgd, lr: 0.1, { $0.momentum = 0.9; $0.nesterov = true }, network: network)
        // step 1: b = 0.5, direction g + μb = 0.5 + 0.45 = 0.95, p = 1 − 0.095 = 0.905
        assertClose(step(sgd, network, [0.5, 0.5], lr: 0.1), [0.905, 0.905])
        // step 2: b = 0.45 + 0.25 = 0.7, direction 0.25 + 0.63 = 0.88, p = 0.905 − 0.088 = 0.817
        assertClose(step(sgd, network, [0.25, 0.25], lr: 0.1), [0.817, 0.817])
    }

    func testSGDCoupledWeightDecayOnKernelsOnly() throws {
        let network = try scalarNetwork()
        store([1, 1], into: network.parameters)
        let sgd = optimizer(.sgd, lr: 0.1, { $0.weightDecay = 0.1 }, network: network)
        // kernel: g' = g + wd·p = 0.5 + 0.1 = 0.6 → 0.94; then 0.25 + 0.094 = 0.344 → 0.9056.
        // bias (not decayed by default): 0.95, then 0.925.
        assertClose(step(sgd, network, [0.5, 0.5], lr: 0.1), [0.94, 0.95])
        assertClose(step(sgd, network, [0.25, 0.25], lr: 0.1), [0.9056, 0.925])
    }

    /// The L2 worked example: w = 0.5, data gradient 0.1, kernel_regularizer l2 λ = 0.01,
    /// SGD η = 0.01: the penalty adds 2λw = 0.01, so w ← 0.5 − 0.01·0.11 = 0.4989.
    func testL2WorkedExample() throws {
        let network = try makeNetwork(inputs: 3, [Layers.dense(2, kernelRegularizer: Penalty(l2: 0.01))], maxBatch: 1)
        network.parameters.update(repeating: 0.5)
        network.zeroGradients()
        network.gradients.update(repeating: 0.1)
        let penalty = network.applyWeightPenalties()
        XCTAssertEqual(penalty, 0.01 * 0.25 * 6, accuracy: 1e-9)        // λ·Σw² over the 6 kernel entries
        assertClose(Array(network.gradients[0..<6]), Array(repeating: 0.11, count: 6))
        assertClose(Array(network.gradients[6..<8]), [0.1, 0.1])          // bias: no regularizer
        let sgd = optimizer(.sgd, lr: 0.01, network: network)
        sgd.apply(parameters: network.parameters, gradients: network.gradients, lr: 0.01)
        assertClose(Array(network.parameters[0..<6]), Array(repeating: 0.4989, count: 6))
        assertClose(Array(network.parameters[6..<8]), [0.499, 0.499])
    }

    // MARK: RMSprop

    /// Six steps of RMSprop from the same parameters and gradients as torch.optim.RMSprop in
    /// float32: plain, with momentum, centered, and with (coupled) weight decay on every tensor.
    func testRMSpropMatchesTorch() throws {
        let python = try InteropPython.require(["torch"])
        var random = TestRandom(seed: 7)
        let network = try makeNetwork(inputs: 3, [Layers.dense(2)])
        let start = random.array(network.parameters.count, -1, 1)
        let gradients = (0..<6).map { _ in random.array(network.parameters.count, -2, 2) }
        let cases: [(name: String, torch: String, configure: (inout OptimizerConfig) -> Void)] = [
            ("plain", "lr=0.01", { _ in }),
            ("momentum", "lr=0.01, alpha=0.9, momentum=0.9", { $0.alpha = 0.9; $0.momentum = 0.9 }),
            ("centered", "lr=0.01, centered=True, eps=1e-6", { $0.centered = true; $0.epsilon = 1e-6 }),
            ("weight decay", "lr=0.05, weight_decay=0.1, momentum=0.5", { $0.weightDecay = 0.1; $0.momentum = 0.5; $0.decay = .all }),
        ]
        let script = """
            import json, sys, torch
            start, gradients = json.loads(sys.argv[1]), json.loads(sys.argv[2])
            out = {}
            for name, options in json.loads(sys.argv[3]).items():
                p = torch.nn.Parameter(torch.tensor(start, dtype=torch.float32))
                o = eval("torch.optim.RMSprop([p], " + options + ", foreach=False)")
                for g in gradients:
                    p.grad = torch.tensor(g, dtype=torch.float32)
                    o.step()
                out[name] = p.detach().tolist()
            print(json.dumps(out))
            """
        let json = { (value: Any) in String(decoding: try JSONSerialization.data(withJSONObject: value), as: UTF8.self) }
        let options = Dictionary(uniqueKeysWithValues: cases.map { ($0.name, $0.torch) })
        let result = try runPython(python, ["-c", script, try json(start.map(Double.init)),
                                            try json(gradients.map { $0.map(Double.init) }), try json(options)])
        XCTAssertEqual(result.status, 0, result.output)
        let torch = try JSONDecoder().decode([String: [Double]].self, from: Data(result.output.utf8))
        for c in cases {
            store(start, into: network.parameters)
            let rmsprop = optimizer(.rmsprop, lr: 0.01, c.configure, network: network)
            let lr: Float = c.name == "weight decay" ? 0.05 : 0.01
            for g in gradients { step(rmsprop, network, g, lr: lr) }
            let expected = try XCTUnwrap(torch[c.name])
            assertClose(Array(network.parameters), expected, accuracy: 1e-6, c.name)
            XCTAssertGreaterThan(zip(network.parameters, start).map { abs($0 - $1) }.max() ?? 0, 1e-3, "\(c.name): it moved")
        }
    }

    /// Two plain steps by hand: v = 0.01·0.25 = 0.0025, p = 1 − 0.01·0.5/(0.05 + ε) = 0.9; then
    /// g = −0.25: v = 0.0025·0.99 + 0.01·0.0625 = 0.0031, p = 0.9 + 0.0025/√0.0031 = 0.944901.
    func testRMSpropTwoStepsByHand() throws {
        let network = try scalarNetwork()
        store([1, 1], into: network.parameters)
        let rmsprop = optimizer(.rmsprop, lr: 0.01, network: network)
        assertClose(step(rmsprop, network, [0.5, 0.5], lr: 0.01), [0.9, 0.9])
        assertClose(Array(rmsprop.secondMoment), [0.0025, 0.0025], accuracy: 1e-8)   // 1 − 0.99 in float32
        assertClose(step(rmsprop, network, [-0.25, -0.25], lr: 0.01), [0.9449013, 0.9449013])
        assertClose(Array(rmsprop.secondMoment), [0.0031, 0.0031], accuracy: 1e-8)
    }

    func testRMSpropCenteredWithMomentumIsRefused() {
        let yaml = "data: {train: {format: moons, samples: 64, noise: 0.1}}\nmodel: {inputs: 2, layers: [{type: dense, units: 2}]}\n"
        XCTAssertThrowsError(try TrainingConfig.parse(yaml: yaml + "optimizer: {type: rmsprop, centered: true, momentum: 0.9}")) { error in
            XCTAssertTrue("\(error)".contains("optimizer.centered"), "\(error)")
        }
        XCTAssertEqual(try TrainingConfig.parse(yaml: yaml + "optimizer: {type: rmsprop}").optimizer.learningRate, 0.01, "torch's default lr")
        XCTAssertThrowsError(try TrainingConfig.parse(yaml: yaml + "optimizer: {type: rmsprop, centered: true}\nschedule: {type: one_cycle}")) { error in
            XCTAssertTrue("\(error)".contains("schedule.cycle_momentum"), "\(error)")
        }
        XCTAssertNoThrow(try TrainingConfig.parse(yaml: yaml + "optimizer: {type: rmsprop, centered: true}\nschedule: {type: one_cycle, cycle_momentum: false}"))
    }

    // MARK: Adam and AdamW

    /// torch.optim.Adam / AdamW in Double, one scalar parameter.
    private func reference(_ p0: Double, _ gradients: [Double], lr: Double, beta1: Double = 0.9, beta2: Double = 0.999,
                           eps: Double = 1e-8, weightDecay: Double = 0, decoupled: Bool = false) -> [Double] {
        var p = p0, m = 0.0, v = 0.0, result: [Double] = []
        for (index, raw) in gradients.enumerated() {
            let t = Double(index + 1)
            var g = raw
            if decoupled { p *= 1 - lr * weightDecay } else { g += weightDecay * p }
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            p -= lr / (1 - pow(beta1, t)) * m / (v.squareRoot() / (1 - pow(beta2, t)).squareRoot() + eps)
            result.append(p)
        }
        return result
    }

    func testAdamTwoStepsByHand() throws {
        let network = try scalarNetwork()
        store([1, -0.5], into: network.parameters)
        let adam = optimizer(.adam, lr: 0.1, network: network)
        // Step 1: m = 0.05, v = 0.00025; m̂ = 0.5, v̂ = 0.25 → p = 1 − 0.1·0.5/(0.5 + 1e-8) ≈ 0.9.
        let first = step(adam, network, [0.5, -2], lr: 0.1)
        assertClose(first, [0.900000002, -0.4 ])
        XCTAssertEqual(adam.firstMoment[0], 0.05, accuracy: 1e-7)
        XCTAssertEqual(adam.secondMoment[0], 0.00025, accuracy: 2e-8)   // (1 − β₂)·g², in Float
        // Step 2: m = 0.9·0.05 + 0.1·0.25 = 0.07, v = 0.999·0.00025 + 0.001·0.0625 = 0.00031225;
        // p = 0.9 − (0.1/0.19)·0.07/(√0.00031225/√0.001999 + 1e-8) = 0.80678204.
        let second = step(adam, network, [0.25, 1], lr: 0.1)
        XCTAssertEqual(Double(second[0]), 0.80678204, accuracy: 1e-6)
        assertClose(second, [reference(1, [0.5, 0.25], lr: 0.1)[1], reference(-0.5, [-2, 1], lr: 0.1)[1]])
        XCTAssertEqual(adam.step, 2)
    }

    /// ε is added to √v̂ (torch), not to √v with a bias-corrected learning rate (the Keras form).
    func testAdamEpsilonPlacement() throws {
        let network = try scalarNetwork()
        store([1, 1], into: network.parameters)
        let adam = optimizer(.adam, lr: 0.1, { $0.epsilon = 0.1 }, network: network)
        let first = step(adam, network, [0.5, 0.5], lr: 0.1)
        // torch: 1 − 0.1·0.5/(0.5 + 0.1) = 0.916667
        XCTAssertEqual(Double(first[0]), 1 - 0.1 * 0.5 / 0.6, accuracy: 1e-6)
        // Keras-style: 1 − 0.1·√0.001/0.1 · 0.05/(√0.00025 + 0.1) = 0.98635, far from it.
        let kerasStyle = 1 - 0.1 * 0.001.squareRoot() / 0.1 * 0.05 / (0.00025.squareRoot() + 0.1)
        XCTAssertGreaterThan(abs(Double(first[0]) - kerasStyle), 0.05)
        let second = step(adam, network, [0.25, 0.25], lr: 0.1)
        XCTAssertEqual(Double(second[0]), 0.84227204, accuracy: 1e-6)
        XCTAssertEqual(Double(second[0]), reference(1, [0.5, 0.25], lr: 0.1, eps: 0.1)[1], accuracy: 1e-6)
    }

    func testAdamWDecouplesAndAdamL2Couples() throws {
        let gradients: [Float] = [0.5, 0.25]
        var results: [OptimizerConfig.Kind: [Float]] = [:]
        for kind in [OptimizerConfig.Kind.adam, .adamw] {
            let network = try scalarNetwork()
            store([1, 1], into: network.parameters)
            let adam = optimizer(kind, lr: 0.1, { $0.weightDecay = 0.1 }, network: network)
            var kernel: [Float] = []
            for g in gradients { kernel.append(step(adam, network, [g, g], lr: 0.1)[0]) }
            results[kind] = kernel
            // The bias is outside the default decay scope: plain Adam either way.
            XCTAssertEqual(Double(network.parameters[1]), reference(1, [0.5, 0.25], lr: 0.1)[1], accuracy: 1e-6)
        }
        let adamL2 = try XCTUnwrap(results[.adam]), adamW = try XCTUnwrap(results[.adamw])
        // Adam + L2: g' = g + wd·p enters the moments: step 1 g' = 0.6 → p ≈ 0.9, step 2 ≈ 0.80501.
        assertClose(adamL2, reference(1, [0.5, 0.25], lr: 0.1, weightDecay: 0.1), "adam L2")
        XCTAssertEqual(Double(adamL2[1]), 0.80500977, accuracy: 1e-6)
        // AdamW: p·(1 − lr·wd) first: 1 → 0.99 → 0.89, then 0.89·0.99 − 0.093218 = 0.78788.
        assertClose(adamW, reference(1, [0.5, 0.25], lr: 0.1, weightDecay: 0.1, decoupled: true), "adamw")
        XCTAssertEqual(Double(adamW[0]), 0.89, accuracy: 1e-6)
        XCTAssertEqual(Double(adamW[1]), 0.78788204, accuracy: 1e-6)
        // They are different algorithms.
        XCTAssertGreaterThan(abs(adamL2[0] - adamW[0]), 0.005)
        XCTAssertGreaterThan(abs(adamL2[1] - adamW[1]), 0.01)
    }

    // MARK: Decay scope

    /// Dense 2 → 2 then BatchNorm: [W (4) kernel, b (2) bias, γ (2) gamma, β (2) beta].
    func testDecayScope() throws {
        for (kind, scope) in [(OptimizerConfig.Kind.sgd, DecayScope.kernels), (.sgd, .all), (.adamw, .kernels), (.adamw, .all)] {
            let network = try makeNetwork(inputs: 2, [Layers.dense(2), Layers.batchNorm()], maxBatch: 2)
            XCTAssertEqual(network.tensors.filter { $0.storage == .parameter }.map { $0.role! }, [.kernel, .bias, .gamma, .beta])
            network.parameters.update(repeating: 1)
            let optimizer = optimizer(kind, lr: 0.1, { $0.weightDecay = 0.1; $0.decay = scope }, network: network)
            // With a zero gradient only the decay moves a parameter: SGD p − lr·wd·p, AdamW p·(1 − lr·wd); both 0.99.
            let after = step(optimizer, network, Array(repeating: 0, count: 10), lr: 0.1)
            let decayed: [Double] = scope == .all ? Array(repeating: 0.99, count: 10)
                                                  : Array(repeating: 0.99, count: 4) + Array(repeating: 1, count: 6)
            assertClose(after, decayed, "\(kind) decay: \(scope)")
        }
    }

    // MARK: Clipping

    // MARK: Slices of the flat buffer (the sharded update)

    /// Optimizers over consecutive slices (cut inside a kernel, inside a bias, at a tensor
    /// boundary) update every parameter exactly as one optimizer over the whole buffer: the
    /// decay ranges are intersected with each slice, and each element's update depends on
    /// that element alone.
    func testOptimizersOverSlicesEqualOneOverTheWholeBuffer() throws {
        for kind in OptimizerConfig.Kind.allCases where kind != .lamb && kind != .lars {   // LayerwiseOptimizerTests
            let whole = try makeNetwork(inputs: 5, [Layers.dense(7), Layers.dense(3)], maxBatch: 1)
            let split = try makeNetwork(inputs: 5, [Layers.dense(7), Layers.dense(3)], maxBatch: 1)
            whole.initialize(seed: 3)
            split.initialize(seed: 3)
            var config = OptimizerConfig(kind: kind, learningRate: 0.05)
            config.weightDecay = 0.1
            config.momentum = kind == .sgd ? 0.9 : 0
            let reference = Optimizer(config: config, layout: whole.layout)
            let count = whole.parameterCount                        // 5·7 + 7 + 7·3 + 3 = 66
            let cuts = [0, 17, 35, 40, 61, count]
            let slices = zip(cuts, cuts.dropFirst()).map { Optimizer(config: config, layout: split.layout, range: $0..<$1, capacity: $1 - $0 + 5) }
            for step in 0..<4 {
                let gradients = (0..<count).map { Float(sin(Double($0 * 7 + step))) }
                store(gradients, into: whole.gradients)
                store(gradients, into: split.gradients)
                reference.apply(parameters: whole.parameters, gradients: whole.gradients, lr: 0.05)
                for slice in slices {
                    slice.apply(parameters: UnsafeMutableBufferPointer(rebasing: split.parameters[slice.range]),
                                gradients: UnsafeMutableBufferPointer(rebasing: split.gradients[slice.range]), lr: 0.05)
                }
            }
            XCTAssertEqual(Array(whole.parameters), Array(split.parameters), "\(kind): sliced updates differ from the whole")
            XCTAssertNotEqual(Array(whole.parameters), { let n = try! makeNetwork(inputs: 5, [Layers.dense(7), Layers.dense(3)], maxBatch: 1); n.initialize(seed: 3); return Array(n.parameters) }(),
                              "\(kind): the updates changed nothing")
            let moments = slices.flatMap { Array($0.firstMoment.prefix($0.count)) }
            XCTAssertEqual(moments, Array(reference.firstMoment.prefix(count)), "\(kind): sliced first moments")
        }
    }

    /// The node-shared update: gradients summed from rank slots as the loop reads them, the
    /// parameters updated in place and, with a mirror, also stored there: the same values, bit
    /// for bit, as the sum stored first and the plain update, and the mirror holds them.
    func testSummingSlotsWithAndWithoutMirrorEqualsThePlainUpdate() throws {
        for kind in [OptimizerConfig.Kind.adam, .adamw] {
            let networks = try (0..<3).map { _ in try makeNetwork(inputs: 5, [Layers.dense(7), Layers.dense(3)], maxBatch: 1) }
            networks.forEach { $0.initialize(seed: 11) }
            var config = OptimizerConfig(kind: kind, learningRate: 0.01)
            config.weightDecay = kind == .adamw ? 0.1 : 0
            let optimizers = networks.map { Optimizer(config: config, layout: $0.layout) }
            let count = networks[0].parameterCount, ranks = 3, stride = count + 5
            var slots = [Float](repeating: 0, count: ranks * stride)
            var mirror = [Float](repeating: .nan, count: count)
            for step in 0..<3 {
                for r in 0..<ranks { for i in 0..<count { slots[r * stride + i] = Float(sin(Double(i * 3 + r * 17 + step))) } }
                for i in 0..<count { networks[0].gradients[i] = slots[i] + slots[stride + i] + slots[2 * stride + i] }
                optimizers[0].apply(parameters: networks[0].parameters, gradients: networks[0].gradients, lr: 0.01)
                slots.withUnsafeBufferPointer { slots in
                    mirror.withUnsafeMutableBufferPointer { mirror in
                        optimizers[1].apply(networks[1].parameters.baseAddress!,
                                            gradients: .init(slots.baseAddress!, stride: stride, terms: ranks),
                                            copyTo: mirror.baseAddress!, lr: 0.01)
                    }
                    optimizers[2].apply(networks[2].parameters.baseAddress!,
                                        gradients: .init(slots.baseAddress!, stride: stride, terms: ranks), copyTo: nil, lr: 0.01)
                }
                let expected = Array(networks[0].parameters)
                XCTAssertEqual(Array(networks[1].parameters), expected, "\(kind) step \(step): mirrored update")
                XCTAssertEqual(mirror, expected, "\(kind) step \(step): the mirror")
                XCTAssertEqual(Array(networks[2].parameters), expected, "\(kind) step \(step): update without a mirror")
            }
        }
    }

    /// The penalty shares of consecutive slices add up to the whole penalty, gradients included.
    func testWeightPenaltySharesSumToTheWhole() throws {
        let layers = [Layers.dense(6, kernelRegularizer: Penalty(l1: 0.01, l2: 0.02), biasRegularizer: Penalty(l2: 0.5)),
                      Layers.dense(2, kernelRegularizer: Penalty(l1: 0.03))]
        let whole = try makeNetwork(inputs: 4, layers, maxBatch: 1)
        whole.initialize(seed: 5)
        whole.gradients.update(repeating: 0)
        let total = whole.applyWeightPenalties()
        let expected = Array(whole.gradients)
        whole.gradients.update(repeating: 0)
        var shares = 0.0
        for range in [0..<10, 10..<27, 27..<whole.parameterCount] {
            shares += whole.applyWeightPenalties(range: range, gradients: whole.gradients.baseAddress! + range.lowerBound)
        }
        XCTAssertEqual(shares, total, accuracy: 1e-6 * total)
        XCTAssertEqual(Array(whole.gradients), expected)
        XCTAssertGreaterThan(total, 0)
    }

    func testClipByGlobalNorm() {
        var values: [Float] = [3, 0, -4]
        let norm = values.withUnsafeMutableBufferPointer { Optimizer.clipByGlobalNorm($0, maxNorm: 1) }
        XCTAssertEqual(norm, 5, accuracy: 1e-6)
        // torch's coefficient maxNorm/(norm + 1e-6)
        let coefficient = 1 / (5 + 1e-6)
        assertClose(values, [3 * coefficient, 0, -4 * coefficient], accuracy: 1e-7)
        XCTAssertNotEqual(values[0], 0.6)   // the 1e-6 is there

        // The norm is global over all entries, not per tensor: 100 entries of 0.5 have norm 5.
        var many = [Float](repeating: 0.5, count: 100)
        let manyNorm = many.withUnsafeMutableBufferPointer { Optimizer.clipByGlobalNorm($0, maxNorm: 2.5) }
        XCTAssertEqual(manyNorm, 5, accuracy: 1e-5)
        assertClose(many, Array(repeating: 0.5 * 2.5 / (5 + 1e-6), count: 100), accuracy: 1e-7)

        // Below the threshold nothing changes.
        var small: [Float] = [0.3, -0.4]
        let smallNorm = small.withUnsafeMutableBufferPointer { Optimizer.clipByGlobalNorm($0, maxNorm: 1) }
        XCTAssertEqual(smallNorm, 0.5, accuracy: 1e-6)
        XCTAssertEqual(small, [0.3, -0.4])
    }
}
