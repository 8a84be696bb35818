import DDPCore
import Foundation
import XCTest

/// `distributed.deterministic: true` under real mpirun: the files a run writes are the same
/// bytes at any rank count that divides `distributed.virtual_shards` (model.safetensors, the
/// checkpoints' tensors and state, every metric), and a checkpoint resumed on another rank count
/// continues byte for byte. The in-process tests (ThreadCommunicatorTests) cover more layers;
/// these show it with real processes, MPI's own collectives and the node-shared windows.
final class DeterministicModeTests: IntegrationTestCase {
    static let deterministic = ["--set", "distributed.deterministic=true"]

    /// The files of a finished run that must not depend on np: the weights, the newest
    /// checkpoint's tensors, and its state and metrics with the rank count and timings left out.
    private struct RunFiles: Equatable {
        var model: Data
        var checkpointTensors: Data
        var checkpointState: NSDictionary
        var metrics: [NSDictionary]

        init(_ directory: String) throws {
            model = try Data(contentsOf: URL(fileURLWithPath: directory + "/model.safetensors"))
            let checkpoints = directory + "/checkpoints"
            let newest = try FileManager.default.contentsOfDirectory(atPath: checkpoints)
                .filter { $0.hasSuffix(".json") }.sorted().last ?? ""
            checkpointTensors = try Data(contentsOf: URL(fileURLWithPath: checkpoints + "/" + newest.replacingOccurrences(of: ".json", with: ".safetensors")))
            let state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: checkpoints + "/" + newest))) as? [String: Any] ?? [:]
            checkpointState = NSDictionary(dictionary: state.filter { $0.key != "ranks" })
            let text = try String(contentsOfFile: directory + "/metrics.jsonl", encoding: .utf8)
            metrics = try text.split(separator: "\n").map { line in
                let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
                return NSDictionary(dictionary: record.filter { !$0.key.contains("second") && $0.key != "ranks" })
            }
        }
    }

    private func assertSameBytes(_ reference: String, _ other: String, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let a = try RunFiles(reference), b = try RunFiles(other)
        XCTAssertEqual(a.model, b.model, "\(what): model.safetensors differs", file: file, line: line)
        XCTAssertEqual(a.checkpointTensors, b.checkpointTensors, "\(what): the newest checkpoint's tensors differ", file: file, line: line)
        XCTAssertEqual(a.checkpointState, b.checkpointState, "\(what): the newest checkpoint's state differs", file: file, line: line)
        XCTAssertEqual(a.metrics, b.metrics, "\(what): metrics.jsonl differs beyond timings", file: file, line: line)
        XCTAssertGreaterThan(a.metrics.count, 1, "\(what): no epochs were written", file: file, line: line)
    }

    /// Moons through Dense → GaussianNoise → BatchNorm → ReLU → Dropout → Dense with AdamW and
    /// shuffling (`DistributedTrainingTests.equivalenceYAML`): one plain process and 2, 4 and 8
    /// ranks write the same bytes; without the mode, 4 ranks do not.
    func testModelCheckpointAndMetricsAreTheSameBytesAtOneTwoFourAndEightRanks() throws {
        let config = try writeConfig("moons.yaml", DistributedTrainingTests.equivalenceYAML)
        try train(np: nil, config: config, runDirectory: path("np1"), Self.deterministic)
        XCTAssertEqual(Metrics(runDirectory: path("np1")).endInt("virtual_shards"), 8, "the end line names the mode's shards")
        for ranks in [2, 4, 8] {
            try train(np: ranks, config: config, runDirectory: path("np\(ranks)"), Self.deterministic)
            try assertSameBytes(path("np1"), path("np\(ranks)"), "np=\(ranks) against one process")
        }
        try train(np: 4, config: config, runDirectory: path("plain4"))
        try train(np: nil, config: config, runDirectory: path("plain1"))
        XCTAssertNotEqual(try RunFiles(path("plain1")).model, try RunFiles(path("plain4")).model,
                          "without the mode np=4 should differ from one process in rounding, or this config shows nothing")
    }

    /// LAMB with gradient accumulation and clipping on a model whose 12,290 parameters the
    /// sharded blocks cut across ranks (so LAMB's per-tensor norms and clipping's norm are taken
    /// in pieces on several ranks): one process and 2 and 4 ranks write the same bytes.
    func testLAMBWithAccumulationAndClippingIsTheSameBytesAtOneTwoAndFourRanks() throws {
        let yaml = DistributedTrainingTests.equivalenceYAML
            .replacingOccurrences(of: "units: 16", with: "units: 2048")
            .replacingOccurrences(of: "{type: adamw, lr: 0.01, weight_decay: 0.01}", with: "{type: lamb, lr: 0.01, weight_decay: 0.01, clip_norm: 1.0}")
        XCTAssertNotEqual(yaml, DistributedTrainingTests.equivalenceYAML)
        let config = try writeConfig("lamb.yaml", yaml)
        let extra = Self.deterministic + ["--set", "training.accumulate_steps=2", "--set", "training.batch_size=15"]
        try train(np: nil, config: config, runDirectory: path("np1"), extra)
        XCTAssertEqual(try readTensors(path("np1/model.safetensors")).values.reduce(0) { $0 + $1.shape.reduce(1, *) }, 12_290 + 2 * 2048 + 1,
                       "the parameters, the running statistics and num_batches_tracked")
        for ranks in [2, 4] {
            try train(np: ranks, config: config, runDirectory: path("np\(ranks)"), extra)
            try assertSameBytes(path("np1"), path("np\(ranks)"), "LAMB, accumulated: np=\(ranks) against one process")
        }
    }

    /// The shipped default job (Fashion-MNIST, BatchNorm, dropout, shuffling, AdamW, cosine;
    /// one epoch), the dropout circles, and the shipped CNN (conv, BatchNorm over channels, max
    /// pooling, dropout; one epoch on a tenth of the training set): one process and 2, 4 (and
    /// for the MLPs 8) ranks write the same bytes, test figures included.
    func testShippedConfigsAreTheSameBytesAtOneTwoFourAndEightRanks() throws {
        let runs: [(name: String, extra: [String], ranks: [Int])] = [
            ("fashion-mnist", ["--set", "training.epochs=1"], [2, 4, 8]),
            ("circles-dropout", ["--set", "training.epochs=8"], [2, 4, 8]),
            ("fashion-mnist-cnn", ["--set", "training.epochs=1", "--set", "data.validation_split=0.9"], [2, 4]),
        ]
        for (name, extra, rankCounts) in runs {
            let config = "\(Integration.packageRoot)/configs/\(name).yaml"
            try train(np: nil, config: config, runDirectory: path("\(name)-np1"), Self.deterministic + extra)
            for ranks in rankCounts {
                try train(np: ranks, config: config, runDirectory: path("\(name)-np\(ranks)"), Self.deterministic + extra)
                try assertSameBytes(path("\(name)-np1"), path("\(name)-np\(ranks)"), "\(name): np=\(ranks) against one process")
            }
        }
    }

    /// 2 of 4 epochs on 2 ranks, resumed on 4 ranks: the same bytes as 4 epochs in one process;
    /// a resume on other OpenBLAS kernels is refused.
    func testAResumeOnAnotherRankCountContinuesByteForByte() throws {
        let config = try writeConfig("moons.yaml", DistributedTrainingTests.equivalenceYAML)
        try train(np: nil, config: config, runDirectory: path("straight"), Self.deterministic)
        let run = path("moved")
        try train(np: 2, config: config, runDirectory: run, Self.deterministic + ["--set", "training.epochs=2"])
        // Other GEMM kernels would not continue the same bits: refused, naming both tables.
        let checkpoint = try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoints/epoch-0002.safetensors"))
        let refused = try runDDP(np: 2, ["train", config, "--run-dir", run, "--quiet", "--resume"] + Self.deterministic,
                                 environment: ["OPENBLAS_CORETYPE": "Prescott"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("this run has 8 on Prescott"), refused.tail)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoints/epoch-0002.safetensors")), checkpoint)
        try train(np: 4, config: config, runDirectory: run, Self.deterministic + ["--resume"])
        XCTAssertEqual(Metrics(runDirectory: run).epochNumbers(), [1, 2, 3, 4])
        try assertSameBytes(path("straight"), run, "2 epochs on 2 ranks + 2 on 4 ranks against 4 in one process")
    }

    /// A rank count that does not divide the shards ends the job with one clear message (every
    /// rank refuses alike, rank 0 says so, no MPI_Abort) and writes nothing.
    func testARankCountThatDoesNotDivideTheShardsIsRefused() throws {
        let config = try writeConfig("moons.yaml", DistributedTrainingTests.equivalenceYAML)
        let result = try runDDP(np: 3, ["train", config, "--run-dir", path("three"), "--quiet"] + Self.deterministic)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("distributed.virtual_shards: 8 shards do not split evenly over 3 ranks"), result.tail)
        XCTAssertEqual(result.output.components(separatedBy: "ddp: error").count - 1, 1, "one message, not one per rank:\n\(result.tail)")
        XCTAssertFalse(result.output.contains("MPI_ABORT"), "the ranks agree: no abort\n\(result.tail)")
        XCTAssertFalse(result.output.contains("Swift runtime failure"), result.tail)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("three/model.safetensors")))
    }
}
