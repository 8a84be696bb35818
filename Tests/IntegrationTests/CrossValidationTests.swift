import DDPCore
import Foundation
import XCTest

/// `ddp cv`: a run directory per fold, a table whose mean ± std is the folds' own figures, the
/// same folds and metrics on 2 ranks as on one process, and clear refusals of bad fold counts.
final class CrossValidationTests: IntegrationTestCase {
    /// Two moons (90 samples, 45 per class), a small network, 8 epochs: a fold trains in well under a second.
    func moonsConfig() throws -> String { try Self.moonsYAML(in: self) }

    static func moonsYAML(in test: IntegrationTestCase) throws -> String {
        try test.writeConfig("moons.yaml", """
            seed: 5
            data:
              train: {format: moons, samples: 90, noise: 0.2}
              validation_split: 0.2
              test: {format: moons, samples: 50, seed: 99}
              normalize: none
            model:
              inputs: 2
              layers:
                - {type: dense, units: 16, activation: relu}
                - {type: dense, units: 2}
            optimizer: {type: adam, lr: 0.02}
            training: {epochs: 8, batch_size: 16}
            checkpoint: {every_epochs: 0, keep: 1}
            """)
    }

    /// The cells of the table line that starts with `first` (columns are 2+ spaces apart).
    static func tableRow(_ output: String, startingWith first: String) -> [String]? {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix(first) }) else { return nil }
        return line.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// "0.1234 ± 0.0056" → (0.1234, 0.0056)
    static func meanAndStd(_ cell: String) throws -> (Double, Double) {
        let parts = cell.components(separatedBy: " ± ")
        return (try XCTUnwrap(Double(parts[0]), cell), try XCTUnwrap(Double(parts.last!), cell))
    }

    /// np.mean and np.std (population) of the values, computed here.
    static func populationMeanAndStd(_ values: [Double]) -> (Double, Double) {
        let mean = values.reduce(0, +) / Double(values.count)
        return (mean, (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot())
    }

    /// TensorBoard's own view of `--logdir directory`: {run: val_loss per epoch}, or nil (and
    /// the test says why) without a Python that has tensorboard: `$DDP_PYTHON` (CI sets it, so
    /// CI never skips), else the one .ci/run keeps in /var/cache/ddp-python.
    static func tensorBoardRuns(_ directory: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: [Double]]? {
        let explicit = ProcessInfo.processInfo.environment["DDP_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
        let python = explicit ?? "/var/cache/ddp-python/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            if explicit != nil { XCTFail("DDP_PYTHON=\(python) is not executable", file: file, line: line) }
            print("TensorBoard check skipped: no Python with tensorboard (set DDP_PYTHON, or run launch/python-env)")
            return nil
        }
        let script = """
            import json, sys
            from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
            runs = EventMultiplexer().AddRunsFromDirectory(sys.argv[1]).Reload()
            print(json.dumps({run: [event.value for event in runs.Scalars(run, "val_loss")] for run in runs.Runs()}))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script, directory]
        let pipe = Pipe(), errors = Pipe()
        process.standardOutput = pipe
        process.standardError = errors
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus != 0 && explicit == nil && stderr.contains("No module named") {
            print("TensorBoard check skipped: \(python) has no tensorboard")
            return nil
        }
        XCTAssertEqual(process.terminationStatus, 0, stderr, file: file, line: line)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: output) as? [String: [Double]], stderr, file: file, line: line)
    }

    func testThreeFoldsWriteARunEachAndTheTableMeansTheirMetrics() throws {
        let config = try moonsConfig()
        let out = path("cv")
        let result = try runDDP(np: nil, ["cv", config, "--folds", "3", "--out", out])
        XCTAssertEqual(result.status, 0, result.tail)
        XCTAssertTrue(result.stdout.contains("data.validation_split 0.2 is replaced"), result.tail)

        // The folds partition the 90 training samples: 30 validate in each, the other 60 train.
        for fold in 1...3 {
            XCTAssertTrue(result.stdout.contains("fold \(fold)/3: 60 train / 30 validation samples"), result.tail)
        }
        var bestValues: [Double] = [], accuracies: [Double] = []
        for fold in 1...3 {
            let run = "\(out)/fold-\(fold)"
            let metrics = Metrics(runDirectory: run)
            XCTAssertEqual(metrics.epochs.count, 8, run)
            XCTAssertEqual(metrics.endString("monitor"), "val_loss")
            XCTAssertNil(metrics.end?["test_loss"] as? NSNumber, "\(run): the test split is not used")
            let best = try XCTUnwrap(metrics.endInt("best_epoch"))
            let valLosses = metrics.values("val_loss").compactMap { $0 }
            XCTAssertEqual(valLosses.count, 8)
            // The monitored value is the lowest val_loss, at the best epoch.
            XCTAssertEqual(valLosses[best - 1], valLosses.min()!)
            bestValues.append(valLosses[best - 1])
            accuracies.append(try XCTUnwrap(metrics.values("val_accuracy")[best - 1]))
            // Each fold is a TensorBoard run of its own: one event file, a record per epoch after the version.
            let files = try FileManager.default.contentsOfDirectory(atPath: run).filter(TensorBoardWriter.isEventFile)
            XCTAssertEqual(files.count, 1, "\(run): \(files)")
            if let file = files.first {
                let records = try TFRecord.records(Array(try Data(contentsOf: URL(fileURLWithPath: "\(run)/\(file)"))), file: file)
                XCTAssertEqual(records.count, 9, run)
            }
        }

        // The table's fold rows and its mean ± std row against the metrics.jsonl values.
        for fold in 1...3 {
            let row = try XCTUnwrap(Self.tableRow(result.stdout, startingWith: "fold-\(fold) "), result.stdout)
            XCTAssertEqual(try XCTUnwrap(Double(row[3])), bestValues[fold - 1], accuracy: 5e-5)
            XCTAssertEqual(try XCTUnwrap(Double(row[4])), accuracies[fold - 1], accuracy: 5e-5)
        }
        let summary = try XCTUnwrap(Self.tableRow(result.stdout, startingWith: "mean ± std"), result.stdout)
        let (loss, lossStd) = try Self.meanAndStd(summary[3]), (accuracy, accuracyStd) = try Self.meanAndStd(summary[4])
        let expectedLoss = Self.populationMeanAndStd(bestValues), expectedAccuracy = Self.populationMeanAndStd(accuracies)
        XCTAssertEqual(loss, expectedLoss.0, accuracy: 5e-5)
        XCTAssertEqual(lossStd, expectedLoss.1, accuracy: 5e-5)
        XCTAssertEqual(accuracy, expectedAccuracy.0, accuracy: 5e-5)
        XCTAssertEqual(accuracyStd, expectedAccuracy.1, accuracy: 5e-5)

        // cv.json holds the same, unrounded.
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/cv.json"))) as? [String: Any])
        XCTAssertEqual(json["rule"] as? String, "StratifiedKFold")
        let variant = try XCTUnwrap((json["variants"] as? [[String: Any]])?.first)
        let monitored = try XCTUnwrap(variant["monitor_value"] as? [String: Any])
        XCTAssertEqual(try XCTUnwrap(monitored["mean"] as? Double), expectedLoss.0, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(monitored["std"] as? Double), expectedLoss.1, accuracy: 1e-12)
    }

    /// Every rank trains every fold on the same split: the folds' metrics on 2 ranks are those of one process.
    func testTwoRanksTrainTheSameFoldsAsOneProcess() throws {
        let config = try moonsConfig()
        let one = try runDDP(np: nil, ["cv", config, "--folds", "3", "--out", path("np1")])
        XCTAssertEqual(one.status, 0, one.tail)
        let two = try runDDP(np: 2, ["cv", config, "--folds", "3", "--out", path("np2")])
        XCTAssertEqual(two.status, 0, two.tail)
        XCTAssertEqual(two.stdout.components(separatedBy: "mean ± std  ").count, 2, "rank 0 alone prints the table:\n\(two.stdout)")
        for fold in 1...3 {
            let reference = Metrics(runDirectory: path("np1/fold-\(fold)")), other = Metrics(runDirectory: path("np2/fold-\(fold)"))
            XCTAssertEqual(other.endInt("ranks"), 2)
            assertSeriesClose(reference.values("val_loss"), other.values("val_loss"), tolerance: 1e-4, "fold \(fold) val_loss")
            assertSeriesClose(reference.values("loss"), other.values("loss"), tolerance: 1e-4, "fold \(fold) loss")
            XCTAssertEqual(reference.values("val_accuracy"), other.values("val_accuracy"), "fold \(fold) val_accuracy")
        }
    }

    /// With --sweep, one row per variant (mean over folds × seeds); the lowest mean val_loss is starred.
    func testSweepRanksVariantsOverFoldsAndSeeds() throws {
        let config = try moonsConfig()
        let out = path("sweep")
        let result = try runDDP(np: nil, ["cv", config, "--folds", "2", "--repeats", "2", "--sweep", "optimizer.lr=0.05,0.0005", "--out", out])
        XCTAssertEqual(result.status, 0, result.tail)
        var means: [String: Double] = [:]
        for variant in ["moons-lr=0.05", "moons-lr=0.0005"] {
            var values: [Double] = []
            for seed in [5, 6] {
                for fold in 1...2 {
                    let metrics = Metrics(runDirectory: "\(out)/\(variant)/seed-\(seed)/fold-\(fold)")
                    XCTAssertNotNil(metrics.end, "\(variant) seed \(seed) fold \(fold) did not finish")
                    values.append(metrics.values("val_loss").compactMap { $0 }.min() ?? .nan)
                }
            }
            means[variant] = Self.populationMeanAndStd(values).0
            // Columns: variant, runs, best epoch, val_loss (monitored), val_accuracy.
            let row = try XCTUnwrap(Self.tableRow(result.stdout, startingWith: "* \(variant) ")
                                    ?? Self.tableRow(result.stdout, startingWith: "  \(variant) "), result.stdout)
            XCTAssertEqual(row[1], "4", "\(variant): 2 folds × 2 seeds")
            XCTAssertEqual(try Self.meanAndStd(row[3]).0, means[variant]!, accuracy: 5e-5, "\(variant): \(row)")
        }
        // TensorBoard itself sees every fold of every variant and seed as a run of its own, with its epochs.
        if let runs = try Self.tensorBoardRuns(out) {
            var expected: [String: [Float]] = [:]
            for variant in ["moons-lr=0.05", "moons-lr=0.0005"] {
                for seed in [5, 6] {
                    for fold in 1...2 {
                        let run = "\(variant)/seed-\(seed)/fold-\(fold)"
                        expected[run] = Metrics(runDirectory: "\(out)/\(run)").values("val_loss").map { Float($0 ?? .nan) }
                    }
                }
            }
            // Summary values are float32: what TensorBoard read is metrics.jsonl's value as a Float.
            XCTAssertEqual(runs.mapValues { $0.map(Float.init) }, expected)
        }
        let best = means.min { $0.value < $1.value }!.key
        XCTAssertNotNil(Self.tableRow(result.stdout, startingWith: "* \(best) "), "the best variant \(best) is starred:\n\(result.stdout)")
        XCTAssertEqual(result.stdout.split(separator: "\n").filter { $0.hasPrefix("* moons") }.count, 1, result.stdout)
    }

    func testBadFoldCountsFailWithOneClearMessage() throws {
        let config = try moonsConfig()
        let cases: [(np: Int?, folds: String, message: String)] = [
            (nil, "1", "--folds must be at least 2"),
            (nil, "91", "--folds 91 is more than the 90 training samples of data.train"),
            (nil, "46", "--folds 46 is more than the 45 samples of class 0, the smallest class in data.train"),
            (2, "46", "--folds 46 is more than the 45 samples of class 0"),
        ]
        for (np, folds, message) in cases {
            let result = try runDDP(np: np, ["cv", config, "--folds", folds, "--out", path("bad")], timeout: 60)
            XCTAssertNotEqual(result.status, 0, "--folds \(folds) on np=\(np ?? 1) must fail:\n\(result.tail)")
            XCTAssertTrue(result.stderr.contains(message), "--folds \(folds) on np=\(np ?? 1):\n\(result.tail)")
            XCTAssertEqual(result.stderr.components(separatedBy: message).count, 2, "one message, not one per rank:\n\(result.stderr)")
        }
        // mse is split without stratification: 46 folds of 90 samples are fine to make (1 epoch each).
        let regression = try runDDP(np: nil, ["cv", config, "--folds", "46", "--out", path("mse"), "--set", "loss=mse",
                                              "--set", "model.layers.1.units=1", "--set", "training.epochs=1"])
        XCTAssertEqual(regression.status, 0, regression.tail)
        XCTAssertTrue(regression.stdout.contains("(KFold)"), regression.tail)
    }
}

/// `ddp compare --repeats R`: each variant with seeds seed … seed+R−1, one row of mean ± std.
final class CompareRepeatsTests: IntegrationTestCase {
    func testRepeatsTrainEachSeedAndTheTableHoldsTheirMeanAndStd() throws {
        let config = try CrossValidationTests.moonsYAML(in: self)
        let out = path("compare")
        let result = try runDDP(np: nil, ["compare", config, "--repeats", "3", "--out", out, "--set", "training.epochs=4"])
        XCTAssertEqual(result.status, 0, result.tail)
        var bestValLosses: [Double] = [], testAccuracies: [Double] = []
        for seed in 5...7 {
            let run = "\(out)/moons/seed-\(seed)"
            let text = try String(contentsOfFile: run + "/config.yaml", encoding: .utf8)
            XCTAssertTrue(text.contains("seed: \(seed)"), "\(run)/config.yaml:\n\(text)")
            let metrics = Metrics(runDirectory: run)
            XCTAssertEqual(metrics.epochs.count, 4, run)
            bestValLosses.append(try XCTUnwrap(metrics.values("val_loss").compactMap { $0 }.min()))
            testAccuracies.append(try XCTUnwrap((metrics.end?["test_accuracy"] as? NSNumber)?.doubleValue))
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run).filter(TensorBoardWriter.isEventFile).count, 1,
                           "\(run) is a TensorBoard run of its own")
        }
        if let runs = try CrossValidationTests.tensorBoardRuns(out) {
            XCTAssertEqual(Set(runs.keys), ["moons/seed-5", "moons/seed-6", "moons/seed-7"])
        }
        // Two different seeds give two different runs.
        XCTAssertNotEqual(bestValLosses[0], bestValLosses[1])
        // Columns: variant, seeds, epochs, best epoch, train loss, best val_loss, gap, val acc, test acc, …
        let row = try XCTUnwrap(CrossValidationTests.tableRow(result.stdout, startingWith: "moons "), result.stdout)
        XCTAssertEqual(row[1], "3")
        for (cell, values) in [(row[5], bestValLosses), (row[8], testAccuracies)] {
            let (mean, std) = try CrossValidationTests.meanAndStd(cell)
            let expected = CrossValidationTests.populationMeanAndStd(values)
            XCTAssertEqual(mean, expected.0, accuracy: 5e-5, cell)
            XCTAssertEqual(std, expected.1, accuracy: 5e-5, cell)
        }
    }
}
