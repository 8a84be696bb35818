import DDPCore
import Foundation
import XCTest

/// Input built to crash a parser, given to the real binary: one `ddp: error` line naming the
/// file or key, exit status 1, and no crash report (these inputs used to segfault or trap).
final class BadInputTests: IntegrationTestCase {
    private func assertOneClearError(_ arguments: [String], naming parts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try runDDP(np: nil, arguments, timeout: 60, file: file, line: line)
        XCTAssertEqual(result.status, 1, result.tail, file: file, line: line)
        let errors = result.output.split(separator: "\n").filter { $0.hasPrefix("ddp: error") }
        XCTAssertEqual(errors.count, 1, result.tail, file: file, line: line)
        for part in parts { XCTAssertTrue(errors.first?.contains(part) ?? false, "'\(errors)' lacks '\(part)'", file: file, line: line) }
        XCTAssertFalse(result.output.contains("crashed") || result.output.contains("Fatal error"), result.tail, file: file, line: line)
    }

    func testDeeplyNestedYAML() throws {
        let config = try writeConfig("deep.yaml", "seed: " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "\n")
        try assertOneClearError(["summary", config], naming: [config, "nest more than 64 levels"])
    }

    func testLayerTooLargeForMemory() throws {
        try assertOneClearError(["summary", Self.moons, "--set", "model.layers.0.units=2000000000"],
                                naming: ["model.layers[0].units", "bytes", "this machine has"])
    }

    func testImageShapeWhoseProductOverflows() throws {
        try assertOneClearError(["summary", Self.moons, "--set", "data.image_shape=[4294967296,4294967296,3]"],
                                naming: ["data.image_shape", "more than any image"])
    }

    func testDeviceAsInitialWeights() throws {
        // /dev/zero never ends: read to its end, it was an allocation trap.
        try assertOneClearError(["train", Self.moons, "--run-dir", path("zero"), "--set", "model.init_weights=/dev/zero"],
                                naming: ["/dev/zero", "device"])
    }

    /// A run of moons with a checkpoint every epoch, then its newest checkpoint's JSON edited.
    private func checkpointedRun(_ name: String, samples: Int = 200, edit: (inout [String: Any]) -> Void) throws -> (config: String, run: String) {
        let config = try writeConfig("\(name).yaml", """
            seed: 5
            data:
              train: {format: moons, samples: \(samples), noise: 0.2}
              validation_split: 0.2
            model:
              inputs: 2
              layers:
                - {type: dense, units: 8, activation: relu}
                - {type: dense, units: 2}
            loss: cross_entropy
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 2, batch_size: 16}
            checkpoint: {every_epochs: 1, keep: 2}
            """)
        let run = path(name)
        try train(np: nil, config: config, runDirectory: run)
        let json = run + "/checkpoints/epoch-0002.json"
        var state = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        edit(&state)
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: json))
        return (config, run)
    }

    /// Sizes and counters from files, configs and checkpoints that overflowed or sized huge
    /// allocations: each a clear error naming the file or key (the audit of 2026-12-08).
    func testSizesThatWouldOverflow() throws {
        // An IDX header of 2³² − 1 × 2³² − 1 pixels, read for the image shape.
        let idx = path("huge-images-idx3-ubyte")
        try Data([0, 0, 8, 3, 0, 0, 0, 1, 255, 255, 255, 255, 255, 255, 255, 255]).write(to: URL(fileURLWithPath: idx))
        let images = try writeConfig("idx.yaml", """
            data: {train: {format: idx, images: \(idx), labels: \(idx)}}
            model: {layers: [{type: flatten}, {type: dense, units: 2}]}
            optimizer: {type: sgd}
            """)
        try assertOneClearError(["summary", images], naming: [idx, "4294967295 × 4294967295 pixels"])
        // A label too large to be a class index.
        let csv = path("labels.csv")
        try "a,b,label\n0.1,0.2,1e30\n0.3,0.4,1\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let labels = try writeConfig("labels.yaml", """
            data: {train: {format: csv, path: \(csv), label: label}}
            model: {inputs: 2, layers: [{type: dense, units: 3}]}
            loss: cross_entropy
            optimizer: {type: sgd}
            training: {epochs: 1, batch_size: 2}
            """)
        try assertOneClearError(["train", labels, "--run-dir", path("labels")], naming: [csv, "not a class index"])
        for (key, value, naming) in [("training.accumulate_steps", "4611686018427387904", "training.accumulate_steps"),
                                     ("training.epochs", "9223372036854775807", "training.epochs: at most")] {
            try assertOneClearError(["summary", Self.moons, "--set", "\(key)=\(value)"], naming: [naming])
        }
        // The deterministic mode's per-shard gradient buffers count against memory: 1,023 copies here.
        try assertOneClearError(["summary", Self.moons, "--set", "model.layers.0.units=2000000", "--set", "distributed.deterministic=true",
                                 "--set", "distributed.virtual_shards=1024", "--set", "training.accumulate_steps=2"],
                                naming: ["1024 copies: distributed.virtual_shards", "this machine has"])
        try assertOneClearError(["summary", Self.moons, "--set", "model.layers.2.units=1000000", "--set", "loss=cross_entropy",
                                 "--set", "metrics=[f1]"], naming: ["metrics", "1000000 classes"])
    }

    /// Checkpoint counters beyond what the run's epochs and steps allow (each one used to trap
    /// when the resumed run added to it).
    func testCheckpointWithCountersBeyondItsSteps() throws {
        for (key, value) in [("optimizerStep", Int.max), ("monitor.wait", Int.max), ("monitor.bestEpoch", Int.max)] {
            let (config, run) = try checkpointedRun("large-\(key)") { state in
                let parts = key.split(separator: ".").map(String.init)
                if parts.count == 2, var monitor = state[parts[0]] as? [String: Any] {
                    monitor[parts[1]] = value
                    state[parts[0]] = monitor
                } else {
                    state[key] = value
                }
            }
            try assertOneClearError(["train", config, "--run-dir", run, "--resume", "--set", "training.epochs=4"],
                                    naming: ["epoch-0002.json", key, "outside 0…"])
        }
    }

    func testCheckpointWithNegativeCounters() throws {
        for key in ["epoch", "globalStep"] {
            let (config, run) = try checkpointedRun("negative-\(key)") { $0[key] = -3 }
            try assertOneClearError(["train", config, "--run-dir", run, "--resume", "--set", "training.epochs=4"],
                                    naming: ["epoch-0002.json", key, "never negative"])
        }
    }

    func testStepCheckpointResumedOnASmallerTrainingSet() throws {
        // As a preemption writes it: 2 epochs done and 9 steps of the third (160 samples, batch
        // 16: 10 steps an epoch); then the data shrinks to 3 steps an epoch.
        let (config, run) = try checkpointedRun("shrunk") { state in
            state["partialEpoch"] = ["steps": 9, "lossSum": 1.0, "correct": 0.0, "samples": 144.0, "seconds": 0.1]
            state["globalStep"] = 29
        }
        try assertOneClearError(["train", config, "--run-dir", run, "--resume", "--set", "training.epochs=4",
                                 "--set", "data.train.samples=60"],
                                naming: ["epoch-0002.json", "steps per epoch", "changed"])
    }

    func testARefusedResumeChangesNothing() throws {
        let (config, run) = try checkpointedRun("refused") { _ in }
        let before = try snapshot(run)
        try assertOneClearError(["train", config, "--run-dir", run, "--resume", "--set", "seed=6"], naming: ["seed 5", "says 6"])
        XCTAssertEqual(try snapshot(run), before, "a refused resume changed the run directory")
    }

    func testAResumeUnderAnotherLossIsRefused() throws {
        let (config, run) = try checkpointedRun("other-loss") { _ in }
        let before = try snapshot(run)
        try assertOneClearError(["train", config, "--run-dir", run, "--resume", "--set", "training.epochs=3",
                                 "--set", "loss={type: cross_entropy, label_smoothing: 0.1}"],
                                naming: ["epoch-0002.json", "label_smoothing=0.0", "label_smoothing=0.1"])
        XCTAssertEqual(try snapshot(run), before, "a refused resume changed the run directory")
    }

    func testNonFiniteFeatureInANpyFileIsADataError() throws {
        // Before: "the loss became non-finite … try a lower optimizer.lr".
        var features = (0..<40).map { Float($0 % 7) / 7 }
        features[3 * 2 + 1] = .nan
        let values = features.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
        let labels = (0..<20).map { UInt8($0 % 2) }
        try Data(NPYFile.encode(descr: "<f4", shape: [20, 2], values: values)).write(to: URL(fileURLWithPath: path("x.npy")))
        try Data(NPYFile.encode(descr: "|u1", shape: [20], values: labels)).write(to: URL(fileURLWithPath: path("y.npy")))
        let config = try writeConfig("nan.yaml", """
            data:
              train: {format: npy, features: \(path("x.npy")), labels: \(path("y.npy"))}
            model:
              inputs: 2
              layers: [{type: dense, units: 2}]
            loss: cross_entropy
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 1, batch_size: 4}
            """)
        try assertOneClearError(["train", config, "--run-dir", path("nan")], naming: [path("x.npy"), "sample 3, feature 1", "nan"])
    }

    func testFillBeyondFloatRange() throws {
        try assertOneClearError(["summary", Self.moons, "--set", "data.augment=[{type: random_crop, padding: 1, fill: 1.0e39}]"],
                                naming: ["fill", "float32"])
    }

    /// A bad value given on the command line is blamed on the --set, not on the file.
    func testASetValueIsBlamedOnTheSet() throws {
        try assertOneClearError(["summary", Self.moons, "--set", "training.epochs=abc"],
                                naming: ["--set training.epochs=abc", "expected an integer"])
        // A key given twice: the last --set is the one applied, and the one named.
        try assertOneClearError(["summary", Self.moons, "--set", "training.epochs=3", "--set", "training.epochs=x"],
                                naming: ["--set training.epochs=x", "expected an integer"])
    }

    /// A missing Fashion-MNIST file names the Debian package that installs it.
    func testAMissingDatasetFileNamesItsPackage() throws {
        let missing = "/usr/share/datasets/fashion-mnist/missing-images-idx3-ubyte.gz"
        try assertOneClearError(["train", Integration.packageRoot + "/configs/fashion-mnist.yaml", "--run-dir", path("missing"),
                                 "--set", "data.train.images=" + missing],
                                naming: [missing, "dataset-fashion-mnist"])
    }

    /// cv and compare keep an earlier run's output, as train does, unless --overwrite: the
    /// refused second run leaves every file byte-identical.
    func testCvAndCompareKeepEarlierOutput() throws {
        for (command, marker) in [(["cv", Self.moons, "--folds", "2"], "cv.json"), (["compare", Self.moons], "results.json")] {
            let out = path("earlier-\(command[0])")
            let arguments = command + ["--out", out, "--set", "training.epochs=2"]
            let first = try runDDP(np: nil, arguments, timeout: 120)
            XCTAssertEqual(first.status, 0, first.tail)
            let before = try Data(contentsOf: URL(fileURLWithPath: out + "/" + marker))
            try assertOneClearError(arguments, naming: [out, "already holds an earlier ddp \(command[0])", "--overwrite"])
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/" + marker)), before, "\(command[0]): \(marker) changed")
            let replaced = try runDDP(np: nil, arguments + ["--overwrite"], timeout: 120)
            XCTAssertEqual(replaced.status, 0, replaced.tail)
        }
    }

    /// Extending a cosine run on resume changes its schedule (t_max follows training.epochs):
    /// the resume goes on and says so in one line; under the same schedule it says nothing.
    func testAScheduleThatChangesOnResumeIsPointedOut() throws {
        let run = path("cosine")
        let first = try runDDP(np: nil, ["train", Self.moons, "--run-dir", run, "--set", "training.epochs=3"], timeout: 120)
        XCTAssertEqual(first.status, 0, first.tail)
        let same = try runDDP(np: nil, ["train", Self.moons, "--run-dir", run, "--resume", "--set", "training.epochs=3"], timeout: 120)
        XCTAssertEqual(same.status, 0, same.tail)
        XCTAssertFalse(same.output.contains("notice: "), same.tail)
        let longer = try runDDP(np: nil, ["train", Self.moons, "--run-dir", run, "--resume", "--set", "training.epochs=5"], timeout: 120)
        XCTAssertEqual(longer.status, 0, longer.tail)
        let notices = longer.output.split(separator: "\n").filter { $0.hasPrefix("notice: ") }
        XCTAssertEqual(notices.count, 1, longer.tail)
        XCTAssertTrue(notices.first?.contains("cosine(t_max=3") ?? false, longer.tail)
        XCTAssertTrue(notices.first?.contains("cosine(t_max=5") ?? false, longer.tail)
        XCTAssertTrue(longer.stdout.contains("Epoch 5/5"), longer.tail)
    }

    /// A run or cv directory under a file names the file, not "NSCocoaErrorDomain error 512".
    func testAnOutputDirectoryUnderAFile() throws {
        let file = path("plain-file")
        try "not a directory".write(toFile: file, atomically: true, encoding: .utf8)
        try assertOneClearError(["train", Self.moons, "--run-dir", file + "/run"], naming: [file + " is a file, not a directory"])
        try assertOneClearError(["cv", Self.moons, "--folds", "2", "--out", file + "/cv"], naming: [file + " is a file, not a directory"])
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "not a directory")
    }

    func testAKeyGivenTwice() throws {
        let text = try String(contentsOfFile: Self.moons, encoding: .utf8)
        let config = try writeConfig("twice.yaml", text + "optimizer: {type: sgd, lr: 0.5}\n")
        try assertOneClearError(["summary", config], naming: [config, "'optimizer' is given twice", "line"])
    }

    func testANumericListIsStrict() throws {
        // "1,x" ran as "1".
        let result = try runDDP(np: nil, ["bench", Self.moons, "--ranks", "1,x", "--out", path("bench")], timeout: 60)
        XCTAssertNotEqual(result.status, 0, result.tail)
        XCTAssertTrue(result.stderr.contains("--ranks") && result.stderr.contains("1,x"), result.tail)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("bench")), "a refused bench wrote its output directory")
    }

    /// Every file under `directory` and its bytes.
    private func snapshot(_ directory: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(atPath: directory)
        while let name = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            let full = directory + "/" + name
            if FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue {
                files[name] = try Data(contentsOf: URL(fileURLWithPath: full))
            }
        }
        return files
    }

    static let moons = Integration.packageRoot + "/configs/moons.yaml"
}
