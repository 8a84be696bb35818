import Foundation
import XCTest
@testable import DDPCore

// Shared helpers for the math tests: deterministic test data, small network builders,
// a harness that runs one layer on its own buffers, central-difference gradient checks, and
// for the image layers a probe built from a spec and torch's results on the same batch.

/// SplitMix64: deterministic test inputs, independent of the code under test's generator.
struct TestRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    mutating func uniform(_ low: Double, _ high: Double) -> Float {
        Float(low + (high - low) * Double(next() >> 11) * 0x1p-53)
    }

    mutating func array(_ count: Int, _ low: Double, _ high: Double) -> [Float] {
        (0..<count).map { _ in uniform(low, high) }
    }

    /// Uniform in ±[gap, limit]: keeps inputs away from the kink of relu-like functions at 0.
    mutating func awayFromZero(_ count: Int, limit: Double = 2, gap: Double = 0.1) -> [Float] {
        (0..<count).map { _ in
            let magnitude = uniform(gap, limit)
            return next() & 1 == 0 ? magnitude : -magnitude
        }
    }
}

// MARK: Config builders

enum Layers {
    static func dense(_ units: Int, _ activation: ActivationFunction = .linear, useBias: Bool = true,
                      kernelRegularizer: Penalty? = nil, biasRegularizer: Penalty? = nil,
                      activity: Penalty? = nil, kernelConstraint: WeightConstraint? = nil,
                      biasConstraint: WeightConstraint? = nil, trainable: Bool = true) -> LayerConfig {
        var spec = DenseSpec(units: units, activation: activation, useBias: useBias)
        spec.kernelRegularizer = kernelRegularizer
        spec.biasRegularizer = biasRegularizer
        spec.kernelConstraint = kernelConstraint
        spec.biasConstraint = biasConstraint
        return LayerConfig(spec, activityRegularizer: activity, trainable: trainable)
    }

    static func batchNorm(momentum: Float = 0.1, epsilon: Float = 1e-5, trainable: Bool = true) -> LayerConfig {
        LayerConfig(BatchNormSpec(momentum: momentum, epsilon: epsilon), trainable: trainable)
    }

    static func dropout(_ rate: Float) -> LayerConfig { LayerConfig(DropoutSpec(rate: rate)) }
    static func activation(_ function: ActivationFunction, activity: Penalty? = nil) -> LayerConfig {
        LayerConfig(ActivationSpec(function), activityRegularizer: activity)
    }
    static func noise(_ stddev: Float) -> LayerConfig { LayerConfig(GaussianNoiseSpec(stddev: stddev)) }
}

/// A small valid config (moons, two dense layers) for tests that parse variations of it.
let smallTrainingYAML = """
        seed: 1
        data:
          train: {format: moons, samples: 64}
        model:
          inputs: 2
          layers:
            - {type: dense, units: 8, activation: relu}
            - {type: dense, units: 2}
        optimizer: {type: sgd, lr: 0.1}
        training: {epochs: 1, batch_size: 16}
        """

/// A network ready to run: reserved for `maxBatch` rows and initialized from `seed`.
func makeNetwork(inputs: Int, _ layers: [LayerConfig], maxBatch: Int = 8, seed: UInt64 = 1) throws -> Network {
    let network = try Network(config: ModelConfig(inputs: inputs, layers: layers))
    network.reserve(maxBatch: maxBatch)
    network.initialize(seed: seed)
    return network
}

/// `makeNetwork`'s network with its memory laid out for one process's gradient sync, and the sync.
func makeSyncedNetwork(inputs: Int, _ layers: [LayerConfig], optimizer: OptimizerConfig, maxBatch: Int = 8,
                       seed: UInt64 = 1) throws -> (Network, AllreduceSync) {
    let (network, sync) = try AllreduceSync.make(model: ModelConfig(inputs: inputs, layers: layers), optimizer: optimizer,
                                                 communicator: LocalCommunicator())
    network.reserve(maxBatch: maxBatch)
    network.initialize(seed: seed)
    return (network, sync)
}

/// A training or inference context whose batch rows are the dataset rows `rows`.
func makeContext(maxBatch: Int, training: Bool, seed: UInt64 = 42, epoch: Int = 0, rows: [Int]? = nil) -> StepContext {
    let context = StepContext(communicator: LocalCommunicator(), maxBatch: maxBatch)
    context.training = training
    context.seed = seed
    context.epoch = epoch
    let ids = rows ?? Array(0..<maxBatch).map { 100 + 7 * $0 }
    for (i, row) in ids.enumerated() { context.sampleRows[i] = Int32(row) }
    return context
}

func copyOf(_ pointer: UnsafePointer<Float>, count: Int) -> [Float] {
    Array(UnsafeBufferPointer(start: pointer, count: count))
}

func store(_ values: [Float], into buffer: UnsafeMutableBufferPointer<Float>) {
    precondition(values.count <= buffer.count)
    for (i, v) in values.enumerated() { buffer[i] = v }
}

// MARK: One layer on its own buffers

/// Runs a single layer on buffers it owns, with the objective L = Σ r ⊙ y for a fixed random
/// `r`, so dL/dy = r and the layer's backward must produce dL/dx and dL/dθ.
final class LayerProbe {
    let layer: Layer
    let batch: Int
    let parameterCount: Int
    let parameters: UnsafeMutableBufferPointer<Float>
    let gradients: UnsafeMutableBufferPointer<Float>
    let state: UnsafeMutableBufferPointer<Float>
    let input: UnsafeMutableBufferPointer<Float>
    let output: UnsafeMutableBufferPointer<Float>
    let upstream: UnsafeMutableBufferPointer<Float>      // r = dL/dy
    let outputGradient: UnsafeMutableBufferPointer<Float> // scratch copy of r passed to backward
    let inputGradient: UnsafeMutableBufferPointer<Float>
    let context: StepContext

    init(_ layer: Layer, batch: Int, training: Bool = true, seed: UInt64 = 42, epoch: Int = 0, rows: [Int]? = nil) {
        self.layer = layer
        self.batch = batch
        parameterCount = layer.parameterSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let stateCount = layer.bufferSpecs.reduce(0) { $0 + $1.shape.reduce(1, *) }
        func buffer(_ n: Int) -> UnsafeMutableBufferPointer<Float> {
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(n, 1))
            b.initialize(repeating: 0)
            return b
        }
        parameters = buffer(parameterCount)
        gradients = buffer(parameterCount)
        state = buffer(stateCount)
        var offset = 0
        for spec in layer.bufferSpecs {
            let n = spec.shape.reduce(1, *)
            for i in offset..<offset + n { state[i] = spec.initialValue }
            offset += n
        }
        input = buffer(batch * layer.inputWidth)
        output = buffer(batch * layer.outputWidth)
        upstream = buffer(batch * layer.outputWidth)
        outputGradient = buffer(batch * layer.outputWidth)
        inputGradient = buffer(batch * layer.inputWidth)
        context = makeContext(maxBatch: batch, training: training, seed: seed, epoch: epoch, rows: rows)
        layer.bind(parameters: parameters.baseAddress!, gradients: gradients.baseAddress!, buffers: state.baseAddress!)
        layer.reserve(maxBatch: batch)
    }

    deinit {
        [parameters, gradients, state, input, output, upstream, outputGradient, inputGradient].forEach { $0.deallocate() }
    }

    func forward() throws {
        try layer.forward(UnsafePointer(input.baseAddress!), output.baseAddress!, batch: batch, context: context)
    }

    /// L = Σ r ⊙ y, accumulated in Double.
    func objective() throws -> Double {
        try forward()
        var total = 0.0
        for i in 0..<batch * layer.outputWidth { total += Double(upstream[i]) * Double(output[i]) }
        return total
    }

    /// Forward then backward at the current point; gradients start from zero.
    func backward() throws {
        gradients.update(repeating: 0)
        try forward()
        outputGradient.update(repeating: 0)
        for i in 0..<batch * layer.outputWidth { outputGradient[i] = upstream[i] }
        try layer.backward(input: UnsafePointer(input.baseAddress!), output: UnsafePointer(output.baseAddress!),
                           outputGradient: outputGradient.baseAddress!, inputGradient: inputGradient.baseAddress!,
                           batch: batch, context: context)
    }
}

// MARK: Finite differences

/// Central differences of `objective` with respect to each element of `values`, the step taken
/// in Float and the quotient formed in Double from the actually represented points.
func centralDifferences(_ values: UnsafeMutableBufferPointer<Float>, count: Int, h: Float,
                        _ objective: () throws -> Double) rethrows -> [Double] {
    var result = [Double](repeating: 0, count: count)
    for i in 0..<count {
        let x0 = values[i]
        let plus = x0 + h, minus = x0 - h
        values[i] = plus
        let fPlus = try objective()
        values[i] = minus
        let fMinus = try objective()
        values[i] = x0
        result[i] = (fPlus - fMinus) / (Double(plus) - Double(minus))
    }
    return result
}

/// Every analytic entry must agree with its numeric estimate to `relative` of the larger
/// magnitude (plus a small absolute floor for entries near zero), and the gradient as a whole
/// must not be trivially small, so the comparison is meaningful.
func assertGradientsMatch(_ analytic: [Double], _ numeric: [Double], _ label: String,
                          relative: Double = 1e-2, absolute: Double = 1e-3, minimumNorm: Double = 1e-2,
                          file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(analytic.count, numeric.count, "\(label): gradient sizes", file: file, line: line)
    var worst = 0.0, worstIndex = -1
    for (i, (a, n)) in zip(analytic, numeric).enumerated() {
        let excess = abs(a - n) - (absolute + relative * max(abs(a), abs(n)))
        if excess > worst { worst = excess; worstIndex = i }
    }
    if worstIndex >= 0 {
        XCTFail("\(label): analytic \(analytic[worstIndex]) vs numeric \(numeric[worstIndex]) at index \(worstIndex)\n"
                + "analytic \(analytic)\nnumeric  \(numeric)", file: file, line: line)
    }
    let norm = numeric.reduce(0) { $0 + $1 * $1 }.squareRoot()
    XCTAssertGreaterThan(norm, minimumNorm, "\(label): gradient too small for the check to mean anything", file: file, line: line)
}

/// Runs `body`, expecting a DDPError of `kind` whose message contains every one of `parts`.
func assertDDPError(_ kind: DDPError.Kind, containing parts: [String], file: StaticString = #filePath,
                    line: UInt = #line, _ body: () throws -> Any) {
    do {
        _ = try body()
        XCTFail("expected a DDPError containing \(parts)", file: file, line: line)
    } catch let error as DDPError {
        XCTAssertEqual(error.kind, kind, error.message, file: file, line: line)
        for part in parts {
            XCTAssertTrue(error.message.contains(part), "'\(error.message)' lacks '\(part)'", file: file, line: line)
        }
    } catch {
        XCTFail("expected a DDPError, got \(error)", file: file, line: line)
    }
}

/// The Python the interop tests run (torch, safetensors, numpy, tensorboard): `$DDP_PYTHON`,
/// which .ci/run exports, else the environment .ci/run keeps (/var/cache/ddp-python or
/// ~/.cache/ddp-python), else `python3` on PATH. Locally a test whose modules are missing skips
/// and says so; when DDP_PYTHON is set (CI), they must be there, so CI never skips silently.
enum InteropPython {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var checked: [String: Bool] = [:]

    static func require(_ modules: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let explicit = ProcessInfo.processInfo.environment["DDP_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/root"
        let candidates = explicit.map { [$0] }
            ?? ["/var/cache/ddp-python/bin/python", "\(home)/.cache/ddp-python/bin/python", "/usr/bin/python3", "/usr/local/bin/python3"]
        let imports = "import " + modules.joined(separator: ", ")
        for python in candidates where FileManager.default.isExecutableFile(atPath: python) {
            if canRun(python, imports) { return python }
        }
        let wanted = modules.joined(separator: ", ")
        if let explicit {
            XCTFail("DDP_PYTHON=\(explicit) cannot `\(imports)`; the interop tests need \(wanted)", file: file, line: line)
            throw XCTSkip("DDP_PYTHON lacks \(wanted) (reported as a failure)")
        }
        throw XCTSkip("interop test skipped: no Python with \(wanted) (looked at \(candidates.joined(separator: ", "))); "
                      + "set DDP_PYTHON, or run .ci/run once to create /var/cache/ddp-python")
    }

    private static func canRun(_ python: String, _ imports: String) -> Bool {
        let key = python + "\u{0}" + imports
        lock.lock()
        defer { lock.unlock() }
        if let known = checked[key] { return known }
        let works = (try? runPython(python, ["-c", imports]))?.status == 0
        checked[key] = works
        return works
    }
}

/// Runs a Python interpreter with `arguments`; stdout and stderr together.
func runPython(_ python: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

// MARK: Layer gradient checks

/// Checks dL/dx and dL/dθ of a probed layer against central differences.
func checkLayer(_ probe: LayerProbe, _ label: String, h: Float = 1e-2, relative: Double = 1e-2,
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

func fill(_ probe: LayerProbe, inputs: [Float], seed: UInt64) {
    var random = TestRandom(seed: seed)
    store(inputs, into: probe.input)
    store(random.array(probe.batch * probe.layer.outputWidth, -1, 1), into: probe.upstream)
}

// MARK: Image layers

/// The single layer `spec` builds for one image of `shape`, probed over `batch` samples.
func imageLayerProbe(_ spec: any LayerSpec, _ shape: ImageShape, batch: Int, training: Bool = true,
                     configIndex: Int = 1, rows: [Int]? = nil, seed: UInt64 = 42, epoch: Int = 0) -> LayerProbe {
    let layers = spec.makeLayers(configIndex: configIndex, input: .image(shape), frozen: false)
    precondition(layers.count == 1)
    return LayerProbe(layers[0], batch: batch, training: training, seed: seed, epoch: epoch, rows: rows)
}

/// Distinct values, at least `gap` apart, in a shuffled order: max pooling's argmax stays put
/// under central differences with steps below gap / 2.
func distinctValues(_ count: Int, gap: Float = 0.05, seed: UInt64) -> [Float] {
    var random = TestRandom(seed: seed)
    var values = (0..<count).map { Float($0) * gap - Float(count) * gap / 2 }
    for i in stride(from: count - 1, to: 0, by: -1) { values.swapAt(i, Int(random.next() % UInt64(i + 1))) }
    return values
}

/// One layer run to compare with torch: `expression` is Python over `x`, the probe's input as
/// an NCHW float32 tensor (`F` is torch.nn.functional, `inf` math.inf).
struct TorchCase {
    let label: String
    let probe: LayerProbe
    let expression: String
    let image: ImageShape
}

/// torch's output and input gradient for each case, in one Python run: the probe's NHWC input
/// permuted to NCHW, its upstream gradient back-propagated, both results permuted back to NHWC.
func torchReferences(_ cases: [TorchCase]) throws -> [(output: [Double], inputGradient: [Double])] {
    let python = try InteropPython.require(["torch"])
    let script = """
        import json, math, sys
        import torch
        import torch.nn.functional as F
        inf = math.inf
        results = []
        for a in json.load(open(sys.argv[1])):
            B, H, W, C = a["shape"]
            x = torch.tensor(a["input"], dtype=torch.float32).reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous().requires_grad_()
            y = eval(a["expression"])
            g = torch.tensor(a["upstream"], dtype=torch.float32).reshape(y.shape[0], y.shape[2], y.shape[3], y.shape[1])
            y.backward(g.permute(0, 3, 1, 2))
            results.append({"output": y.detach().permute(0, 2, 3, 1).reshape(-1).tolist(),
                            "gradient": x.grad.permute(0, 2, 3, 1).reshape(-1).tolist()})
        print(json.dumps(results))
        """
    let requests: [[String: Any]] = cases.map { item in
        let probe = item.probe
        return ["shape": [probe.batch, item.image.height, item.image.width, item.image.channels], "expression": item.expression,
                "input": probe.input.prefix(probe.batch * probe.layer.inputWidth).map(Double.init),
                "upstream": probe.upstream.prefix(probe.batch * probe.layer.outputWidth).map(Double.init)]
    }
    // Through a file: the cases together are longer than one command-line argument may be.
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-torch-cases-\(UUID().uuidString).json")
    try JSONSerialization.data(withJSONObject: requests).write(to: path)
    defer { try? FileManager.default.removeItem(at: path) }
    let (status, output) = try runPython(python, ["-c", script, path.path])
    guard status == 0, let line = output.split(separator: "\n").last,
          let results = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [[String: [Double]]], results.count == cases.count else {
        XCTFail("torch failed: \(output)")
        return []
    }
    return results.map { ($0["output"] ?? [], $0["gradient"] ?? []) }
}

/// Each case's output and input gradient (after one backward) against torch's, within 1e-6.
func assertMatchTorch(_ cases: [TorchCase], file: StaticString = #filePath, line: UInt = #line) throws {
    for item in cases { try item.probe.backward() }
    for (item, torch) in zip(cases, try torchReferences(cases)) {
        let probe = item.probe, label = item.label
        let outputCount = probe.batch * probe.layer.outputWidth, inputCount = probe.batch * probe.layer.inputWidth
        XCTAssertEqual(torch.output.count, outputCount, "\(label): output size", file: file, line: line)
        XCTAssertEqual(torch.inputGradient.count, inputCount, "\(label): gradient size", file: file, line: line)
        for (i, (ours, theirs)) in zip(probe.output.prefix(outputCount), torch.output).enumerated() {
            XCTAssertEqual(Double(ours), theirs, accuracy: 1e-6, "\(label): y[\(i)]", file: file, line: line)
        }
        for (i, (ours, theirs)) in zip(probe.inputGradient.prefix(inputCount), torch.inputGradient).enumerated() {
            XCTAssertEqual(Double(ours), theirs, accuracy: 1e-6, "\(label): dL/dx[\(i)]", file: file, line: line)
        }
    }
}
