import Foundation
import XCTest
@testable import DDPCore

/// Model weights under torch nn.Sequential state_dict names: exact round trips, errors that
/// name the tensor, and (when a Python with torch is at hand) equivalence with PyTorch.
final class ModelWeightsTests: XCTestCase {
    private var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ModelWeightsTests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// dense → batchnorm → relu → dropout → dense: torch's
    /// Sequential(Linear(3, 5), BatchNorm1d(5), ReLU(), Dropout(0.3), Linear(5, 2)).
    private let layers = [Layers.dense(5), Layers.batchNorm(), Layers.activation(.relu), Layers.dropout(0.3), Layers.dense(2)]
    private let expectedNames = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                 "1.num_batches_tracked", "4.weight", "4.bias"]

    /// A network with non-trivial parameters (γ, β included) and BatchNorm state moved by
    /// three training batches.
    private func trainedNetwork(seed: UInt64 = 1) throws -> Network {
        let network = try makeNetwork(inputs: 3, layers, maxBatch: 8, seed: seed)
        var random = TestRandom(seed: seed &+ 100)
        store(random.array(network.parameterCount, -1, 1), into: network.parameters)
        for batch in 0..<3 {
            store(random.array(24, -2, 2).map { $0 + Float(batch) }, into: network.input)
            try network.forward(batch: 8, context: makeContext(maxBatch: 8, training: true, epoch: batch))
        }
        return network
    }

    private func inference(_ network: Network, _ x: [Float]) throws -> [Float] {
        store(x, into: network.input)
        try network.forward(batch: x.count / 3, context: makeContext(maxBatch: 8, training: false))
        return copyOf(network.output, count: x.count / 3 * 2)
    }

    func testExportNamesAndShapes() throws {
        let network = try trainedNetwork()
        let tensors = network.exportTensors()
        XCTAssertEqual(tensors.map(\.name), expectedNames)
        XCTAssertEqual(tensors.map(\.shape), [[5, 3], [5], [5], [5], [5], [5], [], [2, 5], [2]])
        XCTAssertEqual(tensors.first { $0.name == "1.num_batches_tracked" }?.int64s(), [3])
        XCTAssertEqual(tensors.first { $0.name == "1.num_batches_tracked" }?.dtype, .int64)
        // The weight is torch's (out, in) layout: y_j(e_k) − b_j = weight[j][k].
        let dense = try makeNetwork(inputs: 3, [Layers.dense(5)], maxBatch: 3)
        var random = TestRandom(seed: 9)
        store(random.array(dense.parameterCount, -1, 1), into: dense.parameters)
        let exported = dense.exportTensors()
        let weight = try XCTUnwrap(exported.first { $0.name == "0.weight" }?.floats())
        let bias = try XCTUnwrap(exported.first { $0.name == "0.bias" }?.floats())
        XCTAssertEqual(weight.count, 15)
        store([1, 0, 0, 0, 1, 0, 0, 0, 1], into: dense.input)
        try dense.forward(batch: 3, context: makeContext(maxBatch: 3, training: false))
        let y = copyOf(dense.output, count: 15)
        for k in 0..<3 {
            for j in 0..<5 { XCTAssertEqual(y[k * 5 + j] - bias[j], weight[j * 3 + k], accuracy: 1e-6) }
        }
    }

    func testRoundTripThroughSafeTensorsBytes() throws {
        let source = try trainedNetwork(seed: 1)
        let bytes = SafeTensors.encode(source.exportTensors(), metadata: ["epoch": "3"])
        let decoded = try SafeTensors.decode(bytes, file: "model.safetensors")
        XCTAssertEqual(decoded.order, expectedNames)

        let target = try makeNetwork(inputs: 3, layers, maxBatch: 8, seed: 2)
        XCTAssertNotEqual(Array(target.parameters), Array(source.parameters))
        XCTAssertNotEqual(Array(target.state), Array(source.state))
        try target.importTensors(decoded.tensors, file: "model.safetensors")
        XCTAssertEqual(Array(target.parameters).map(\.bitPattern), Array(source.parameters).map(\.bitPattern))
        XCTAssertEqual(Array(target.state).map(\.bitPattern), Array(source.state).map(\.bitPattern))
        XCTAssertEqual(target.batchNorms[0].batchesTracked, 3)

        var random = TestRandom(seed: 5)
        let x = random.array(12, -2, 2)
        XCTAssertEqual(try inference(target, x), try inference(source, x))
    }

    func testRoundTripThroughAFile() throws {
        let source = try trainedNetwork(seed: 3)
        let path = directory + "/model.safetensors"
        try source.saveWeights(to: path, metadata: ["note": "test"])
        let target = try makeNetwork(inputs: 3, layers, maxBatch: 8, seed: 4)
        try target.loadWeights(from: path)
        XCTAssertEqual(Array(target.parameters), Array(source.parameters))
        XCTAssertEqual(Array(target.state), Array(source.state))
        XCTAssertEqual(try SafeTensors.read(path: path).metadata, ["note": "test"])
    }

    // MARK: Errors name the tensor

    private func stored(_ network: Network) -> [String: StoredTensor] {
        Dictionary(uniqueKeysWithValues: network.exportTensors().map { ($0.name, $0) })
    }

    func testMissingTensor() throws {
        let network = try trainedNetwork()
        var tensors = stored(network)
        tensors["1.running_var"] = nil
        assertDDPError(.weights, containing: ["w.safetensors", "missing", "1.running_var"]) {
            try network.importTensors(tensors, file: "w.safetensors")
        }
        tensors = stored(network)
        tensors["4.bias"] = nil
        tensors["0.weight"] = nil
        assertDDPError(.weights, containing: ["0.weight", "4.bias"]) { try network.importTensors(tensors, file: "w.safetensors") }
    }

    func testMissingBatchCounterIsAllowed() throws {
        // Files from before torch tracked batches lack num_batches_tracked; load_state_dict accepts them too.
        let source = try trainedNetwork()
        var tensors = stored(source)
        tensors["1.num_batches_tracked"] = nil
        let target = try makeNetwork(inputs: 3, layers, maxBatch: 8, seed: 2)
        try target.importTensors(tensors, file: "w.safetensors")
        XCTAssertEqual(Array(target.parameters), Array(source.parameters))
        XCTAssertEqual(target.batchNorms[0].batchesTracked, 0)
    }

    func testExtraTensor() throws {
        let network = try trainedNetwork()
        var tensors = stored(network)
        tensors["5.weight"] = StoredTensor(name: "5.weight", shape: [2], floats: [1, 2])
        assertDDPError(.weights, containing: ["w.safetensors", "5.weight", "does not have"]) {
            try network.importTensors(tensors, file: "w.safetensors")
        }
    }

    func testMisShapedTensor() throws {
        let network = try trainedNetwork()
        var tensors = stored(network)
        // Same element count, transposed: Keras's (in, out) kernel layout is not torch's.
        tensors["0.weight"] = StoredTensor(name: "0.weight", shape: [3, 5], floats: Array(repeating: 0.5, count: 15))
        let before = Array(network.parameters)
        assertDDPError(.weights, containing: ["0.weight", "[3, 5]", "[5, 3]"]) { try network.importTensors(tensors, file: "w.safetensors") }
        XCTAssertEqual(Array(network.parameters[0..<15]), Array(before[0..<15]), "nothing loaded into the mis-shaped tensor")
        tensors = stored(network)
        tensors["4.bias"] = StoredTensor(name: "4.bias", shape: [3], floats: [1, 2, 3])
        assertDDPError(.weights, containing: ["4.bias", "[3]", "[2]"]) { try network.importTensors(tensors, file: "w.safetensors") }
    }

    func testWrongDType() throws {
        let network = try trainedNetwork()
        var tensors = stored(network)
        tensors["1.bias"] = StoredTensor(name: "1.bias", shape: [5], doubles: [0, 0, 0, 0, 0])
        assertDDPError(.weights, containing: ["1.bias", "F64", "F32"]) { try network.importTensors(tensors, file: "w.safetensors") }
    }

    // MARK: PyTorch equivalence

    private func python() throws -> String { try InteropPython.require(["torch", "safetensors.torch"]) }

    /// torch loads our file strictly into the matching nn.Sequential; its eval-mode output matches
    /// ours, and one train-mode batch moves its BatchNorm running statistics as ours does.
    func testTorchLoadsTheWeightsAndAgrees() throws {
        let python = try python()
        let network = try trainedNetwork(seed: 7)
        let path = directory + "/model.safetensors"
        try network.saveWeights(to: path)

        var random = TestRandom(seed: 8)
        let x = random.array(4 * 3, -2, 2).map { $0 + 1 }
        let trainBatch = random.array(8 * 3, -1, 3)
        let ours = try inference(network, x)

        let script = """
            import json, sys
            import torch, safetensors.torch
            path, x, batch = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
            model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(),
                                        torch.nn.Dropout(0.3), torch.nn.Linear(5, 2))
            model.load_state_dict(safetensors.torch.load_file(path), strict=True)
            model.eval()
            with torch.no_grad():
                out = model(torch.tensor(x, dtype=torch.float32).reshape(-1, 3))
                tracked = int(model[1].num_batches_tracked)
                model[1].train()
                model[1](model[0](torch.tensor(batch, dtype=torch.float32).reshape(-1, 3)))
            print(json.dumps({"output": out.reshape(-1).tolist(), "tracked": tracked,
                              "running_mean": model[1].running_mean.tolist(), "running_var": model[1].running_var.tolist(),
                              "tracked_after": int(model[1].num_batches_tracked)}))
            """
        func json(_ values: [Float]) -> String { "[" + values.map { "\($0)" }.joined(separator: ",") + "]" }
        let (status, output) = try runPython(python, ["-c", script, path, json(x), json(trainBatch)])
        XCTAssertEqual(status, 0, output)
        let line = try XCTUnwrap(output.split(separator: "\n").last, output)
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], output)

        let theirs = try XCTUnwrap(result["output"] as? [Double])
        XCTAssertEqual(theirs.count, ours.count)
        for (a, b) in zip(ours, theirs) { XCTAssertEqual(Double(a), b, accuracy: 1e-4, "\(ours) vs \(theirs)") }
        XCTAssertEqual(result["tracked"] as? Int, 3)

        // The same training batch through our network: BatchNorm state must move identically.
        store(trainBatch, into: network.input)
        try network.forward(batch: 8, context: makeContext(maxBatch: 8, training: true))
        let mean = try XCTUnwrap(result["running_mean"] as? [Double]), variance = try XCTUnwrap(result["running_var"] as? [Double])
        for j in 0..<5 {
            XCTAssertEqual(Double(network.state[j]), mean[j], accuracy: 1e-5, "running_mean[\(j)]")
            XCTAssertEqual(Double(network.state[5 + j]), variance[j], accuracy: 1e-5 * max(1, variance[j]), "running_var[\(j)]")
        }
        XCTAssertEqual(result["tracked_after"] as? Int, 4)
        XCTAssertEqual(network.batchNorms[0].batchesTracked, 4)
    }

    /// The other direction: torch trains its BatchNorm a little, saves the state_dict with
    /// safetensors.torch.save_file, and our network loads it strictly and predicts what torch does.
    func testWeightsTorchWroteLoadAndAgree() throws {
        let python = try python()
        let path = directory + "/torch.safetensors"
        var random = TestRandom(seed: 11)
        let x = random.array(4 * 3, -2, 2)
        let script = """
            import json, sys
            import torch, safetensors.torch
            path, x = sys.argv[1], json.loads(sys.argv[2])
            torch.manual_seed(5)
            model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(),
                                        torch.nn.Dropout(0.3), torch.nn.Linear(5, 2))
            with torch.no_grad():
                model[1].weight.uniform_(0.5, 1.5)
                model[1].bias.uniform_(-0.5, 0.5)
                for _ in range(3):
                    model(torch.randn(8, 3) * 2 + 1)
            model.eval()
            safetensors.torch.save_file(model.state_dict(), path)
            with torch.no_grad():
                out = model(torch.tensor(x, dtype=torch.float32).reshape(-1, 3))
            print(json.dumps(out.reshape(-1).tolist()))
            """
        let (status, output) = try runPython(python, ["-c", script, path, "[" + x.map { "\($0)" }.joined(separator: ",") + "]"])
        XCTAssertEqual(status, 0, output)
        let line = try XCTUnwrap(output.split(separator: "\n").last, output)
        let theirs = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [Double], output)

        let network = try makeNetwork(inputs: 3, layers, maxBatch: 8, seed: 99)
        try network.loadWeights(from: path)
        XCTAssertEqual(network.batchNorms[0].batchesTracked, 3, "num_batches_tracked comes from torch's file")
        let ours = try inference(network, x)
        XCTAssertEqual(ours.count, theirs.count)
        for (a, b) in zip(ours, theirs) { XCTAssertEqual(Double(a), b, accuracy: 1e-5, "\(ours) vs \(theirs)") }
    }
}
