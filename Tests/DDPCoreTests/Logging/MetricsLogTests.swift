import Foundation
import XCTest
@testable import DDPCore

/// metrics.jsonl is written and read by the same Codable records: its keys, its nulls, and the
/// round trip, checked against an independent JSON reader.
final class MetricsLogTests: XCTestCase {
    private func object(_ line: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
    }

    func testEpochLineKeysAndNulls() throws {
        let record = EpochMetrics(epoch: 3, loss: 0.25, accuracy: nil, valLoss: .nan, valAccuracy: 0.875, lr: 1e-3, seconds: 2.5,
                                  samplesPerSecond: 31_200, syncSeconds: 0.125, dataSeconds: 0, computeSeconds: 0,
                                  communicationSeconds: 0, updateSeconds: 0)
        let line = record.json
        XCTAssertFalse(line.contains("\n"))
        let json = try object(line)
        XCTAssertEqual(Set(json.keys), ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                                        "samples_per_second", "sync_seconds", "data_seconds", "compute_seconds",
                                        "communication_seconds", "update_seconds"])
        XCTAssertEqual(json["epoch"] as? Int, 3)
        XCTAssertEqual(json["loss"] as? Double, 0.25)
        XCTAssertTrue(json["accuracy"] is NSNull, "absent → null")
        XCTAssertTrue(json["val_loss"] is NSNull, "NaN → null: JSON has no NaN")
        XCTAssertEqual(json["samples_per_second"] as? Double, 31_200)

        guard case let .epoch(read) = try MetricsLog.decode(Substring(line)) else { return XCTFail("read back as an end line") }
        var expected = record
        expected.valLoss = nil
        XCTAssertEqual(read, expected)
    }

    /// Runs written before the metric was named for what it measures call it allreduce_seconds.
    func testAnOlderFilesAllreduceSecondsReadsAsSyncSeconds() throws {
        let line = #"{"epoch": 2, "loss": 0.5, "allreduce_seconds": 0.25, "lr": 0.01}"#
        guard case let .epoch(read) = try MetricsLog.decode(Substring(line)) else { return XCTFail("read back as an end line") }
        XCTAssertEqual(read, EpochMetrics(epoch: 2, loss: 0.5, lr: 0.01, syncSeconds: 0.25))
        XCTAssertTrue(read.json.contains(#""sync_seconds":0.25"#) && !read.json.contains("allreduce"), read.json)
    }

    func testTimingBreakdownIsWrittenOnlyWhenMeasured() throws {
        var metrics = EpochMetrics(epoch: 1, loss: 0.5)
        XCTAssertNil(try object(MetricsLog.encode(metrics))["data_seconds"])
        metrics.dataSeconds = 0.25
        metrics.computeSeconds = 1.5
        metrics.communicationSeconds = 0.125
        metrics.updateSeconds = 0.0625
        let json = try object(MetricsLog.encode(metrics))
        XCTAssertEqual(json["data_seconds"] as? Double, 0.25)
        XCTAssertEqual(json["compute_seconds"] as? Double, 1.5)
        XCTAssertEqual(json["communication_seconds"] as? Double, 0.125)
        XCTAssertEqual(json["update_seconds"] as? Double, 0.0625)
        guard case let .epoch(read) = try MetricsLog.decode(Substring(MetricsLog.encode(metrics))) else { return XCTFail() }
        XCTAssertEqual(read, metrics)
    }

    func testEndLineRoundTripAndDefaults() throws {
        let end = EndMetrics(reason: "early_stopping", epochsRun: 7, bestEpoch: 4, monitor: "val_loss", bestValue: 0.5,
                             testLoss: nil, testAccuracy: .infinity, ranks: 2, globalBatch: 32, seconds: 0.75)
        let line = MetricsLog.encode(end)
        let json = try object(line)
        XCTAssertEqual(json["event"] as? String, "end")
        XCTAssertEqual(Set(json.keys), ["event", "reason", "epochs_run", "best_epoch", "monitor", "best_value", "test_loss",
                                        "test_accuracy", "ranks", "global_batch", "seconds"])
        XCTAssertTrue(json["test_accuracy"] is NSNull)
        guard case let .end(read) = try MetricsLog.decode(Substring(line)) else { return XCTFail("read back as an epoch") }
        var expected = end
        expected.testAccuracy = nil
        XCTAssertEqual(read, expected)
        // A hand-written end line with spaces and only some keys (an older ddp's) still reads.
        guard case let .end(old) = try MetricsLog.decode(#"{"event": "end", "epochs_run": 3}"#) else { return XCTFail() }
        XCTAssertEqual(old.reason, "completed")
        XCTAssertEqual(old.epochsRun, 3)
        XCTAssertEqual(old.ranks, 1)
    }

    func testMalformedLineNamesFileAndLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try (EpochMetrics(epoch: 1, loss: 1, lr: 0.1, seconds: 1, samplesPerSecond: 1, syncSeconds: 0).json
             + "\n\n{\"epoch\": \"two\"}\n").write(toFile: path, atomically: true, encoding: .utf8)
        assertDDPError(.data, containing: [path + ":3", "not a metrics record"]) { try MetricsLog.read(path) }
    }

    func testTruncateKeepsEpochLinesUpToTheCheckpoint() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let log = MetricsLog(path: path)
        for epoch in 1...4 { try log.append(MetricsLog.encode(EpochMetrics(epoch: epoch, loss: Double(epoch)))) }
        try log.append("{\"epoch\": 5, \"loss\": 0.") // a write cut short
        try log.append(MetricsLog.encode(EndMetrics(reason: "completed", epochsRun: 4, bestEpoch: 2, monitor: "loss", bestValue: 2,
                                                    testLoss: nil, testAccuracy: nil, ranks: 1, globalBatch: 8, seconds: 1)))
        try log.truncate(toEpoch: 2)
        XCTAssertEqual(try MetricsLog.read(path), [.epoch(EpochMetrics(epoch: 1, loss: 1)), .epoch(EpochMetrics(epoch: 2, loss: 2))])
    }
}
