import Foundation
import XCTest
@testable import DDPCore

/// TensorBoard event files: CRC-32C against published check values, TFRecord framing and Event
/// encoding against bytes that TensorBoard's own Python writer produced, and (when a Python with
/// tensorboard is at hand) a trained run's file read back by TensorBoard's EventAccumulator.
final class TensorBoardTests: XCTestCase {
    private var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("TensorBoardTests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Checksums and framing

    /// RFC 3720 appendix B.4 and the common "123456789" check value.
    func testCRC32CKnownVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }), 0x113F_DB5C)
        // tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c(b"123456789")
        XCTAssertEqual(CRC32C.masked(Array("123456789".utf8)), 0xC78A_B0E5)
    }

    /// tensorboard.summary.writer.record_writer.RecordWriter(BytesIO()).write(b"brain").
    func testFramingMatchesTensorBoardsRecordWriter() throws {
        let framed = TFRecord.frame(Array("brain".utf8))
        XCTAssertEqual(framed, [5, 0, 0, 0, 0, 0, 0, 0, 234, 178, 4, 62, 98, 114, 97, 105, 110, 146, 210, 121, 203])
        XCTAssertEqual(try TFRecord.records(framed + TFRecord.frame([]), file: "f"), [Array("brain".utf8), []])
    }

    func testDamagedOrTruncatedRecordsAreErrorsNamingTheFile() throws {
        let framed = TFRecord.frame(Array("brain".utf8)) + TFRecord.frame(Array("event".utf8))
        var damaged = framed
        damaged[14] ^= 1
        assertDDPError(.data, containing: ["run/events", "record 1", "checksum"]) { try TFRecord.records(damaged, file: "run/events") }
        damaged = framed
        damaged[21] ^= 1
        assertDDPError(.data, containing: ["record 2", "length's checksum"]) { try TFRecord.records(damaged, file: "run/events") }
        assertDDPError(.data, containing: ["record 2", "cut short"]) { try TFRecord.records(Array(framed.dropLast(16)), file: "f") }
        assertDDPError(.data, containing: ["record 2", "claims 5 bytes"]) { try TFRecord.records(Array(framed.dropLast(3)), file: "f") }
    }

    // MARK: Event encoding

    /// Bytes of `tensorboard.compat.proto.event_pb2.Event(...).SerializeToString()` (tensorboard 2.21).
    func testEventsEncodeAsTensorBoardsProtobuf() {
        let wallTime = 1_700_000_000.5
        let wallBytes: [UInt8] = [9, 0, 0, 32, 64, 252, 84, 217, 65]
        XCTAssertEqual(TensorBoardEvent.fileVersion(wallTime: wallTime),
                       wallBytes + [26, 13] + Array("brain.Event:2".utf8))
        XCTAssertEqual(TensorBoardEvent.scalars([("loss", 0.25), ("val_accuracy", 0.875)], step: 3, wallTime: wallTime),
                       wallBytes + [16, 3, 42, 34, 10, 11, 10, 4, 108, 111, 115, 115, 21, 0, 0, 128, 62, 10, 19, 10, 12, 118, 97, 108,
                                    95, 97, 99, 99, 117, 114, 97, 99, 121, 21, 0, 0, 96, 63])
        XCTAssertEqual(TensorBoardEvent.sessionStart(step: 4, wallTime: wallTime), wallBytes + [16, 4, 58, 2, 8, 1])
    }

    func testFileNameAndRecords() throws {
        let time = Date(timeIntervalSince1970: 1_700_000_123)
        XCTAssertEqual(TensorBoardWriter.fileName(time: time, host: "node7"), "events.out.tfevents.1700000123.node7")
        let writer = try TensorBoardWriter(directory: directory, now: time)
        try writer.write(scalars: [("loss", 0.5)], step: 1, wallTime: 1_700_000_124)
        let second = try TensorBoardWriter(directory: directory, resumingAfter: 1, now: time)
        XCTAssertNotEqual(writer.path, second.path, "a second file in the same second gets its own name")
        XCTAssertTrue(TensorBoardWriter.isEventFile(URL(fileURLWithPath: second.path).lastPathComponent))

        let records = try TFRecord.records(Array(try Data(contentsOf: URL(fileURLWithPath: writer.path))), file: writer.path)
        XCTAssertEqual(records, [TensorBoardEvent.fileVersion(wallTime: 1_700_000_123),
                                 TensorBoardEvent.scalars([("loss", 0.5)], step: 1, wallTime: 1_700_000_124)])
        let resumed = try TFRecord.records(Array(try Data(contentsOf: URL(fileURLWithPath: second.path))), file: second.path)
        XCTAssertEqual(resumed.last, TensorBoardEvent.sessionStart(step: 2, wallTime: 1_700_000_123))
    }

    func testUnwritableDirectoryIsAnErrorNamingIt() {
        assertDDPError(.io, containing: ["TensorBoard event file", directory + "/missing/events.out.tfevents."]) {
            try TensorBoardWriter(directory: directory + "/missing")
        }
    }

    // MARK: Read back by TensorBoard

    private static let runYAML = """
        seed: 3
        data:
          train: {format: moons, samples: 120, noise: 0.2}
          validation_split: 0.25
          normalize: none
        model:
          inputs: 2
          layers:
            - {type: dense, units: 16, activation: relu}
            - {type: dense, units: 1, activation: sigmoid}
        loss: {type: binary_crossentropy, from_logits: false}
        optimizer: {type: adam, lr: 0.01}
        training: {epochs: 4, batch_size: 30}
        checkpoint: {every_epochs: 1, keep: 5}
        """

    private func train(_ run: String, resume: Bool = false, overrides: [String] = []) throws -> TrainingOutcome {
        let config = try TrainingConfig.parse(yaml: Self.runYAML, overrides: overrides)
        var options = TrainOptions(runDirectory: run)
        options.quiet = true
        options.resume = resume
        return try Trainer(config: config, data: try RunData(config: config), communicator: LocalCommunicator(), options: options).run()
    }

    private func eventFiles(_ run: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: run).filter(TensorBoardWriter.isEventFile).sorted()
    }

    /// TensorBoard's EventAccumulator, over a run directory: {tag: [[step, value], ...]}.
    private func readWithTensorBoard(_ run: String) throws -> [String: [[Double]]] {
        let python = try InteropPython.require(["tensorboard"])
        let script = """
            import json, sys
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            accumulator = EventAccumulator(sys.argv[1])
            accumulator.Reload()
            print(json.dumps({tag: [[event.step, event.value] for event in accumulator.Scalars(tag)]
                              for tag in accumulator.Tags()["scalars"]}))
            """
        let (status, output) = try runPython(python, ["-c", script, run])
        XCTAssertEqual(status, 0, output)
        let line = try XCTUnwrap(output.split(separator: "\n").last, output)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [[Double]]], output)
    }

    func testTensorBoardReadsEveryEpochsScalars() throws {
        let run = directory + "/run"
        let outcome = try train(run)
        XCTAssertEqual(try eventFiles(run).count, 1)
        let scalars = try readWithTensorBoard(run)
        XCTAssertEqual(Set(scalars.keys), ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                                           "samples_per_second", "sync_seconds", "data_seconds", "compute_seconds",
                                           "communication_seconds", "update_seconds"])
        for record in outcome.epochs {
            for (tag, value) in record.tensorBoardScalars {
                let logged = try XCTUnwrap(scalars[tag]?.first { $0[0] == Double(record.epoch) }, "\(tag) at epoch \(record.epoch)")
                // Summary.Value.simple_value is a float: ours rounded to Float is exactly what TensorBoard read.
                XCTAssertEqual(Float(logged[1]), Float(value), "\(tag) at epoch \(record.epoch)")
            }
        }
        XCTAssertEqual(scalars["val_loss"]?.map { $0[0] }, [1, 2, 3, 4])
    }

    /// A run stopped after 2 epochs, resumed to 4, then replaced with --overwrite: TensorBoard
    /// shows each epoch once, from the run that produced it.
    func testResumedAndOverwrittenRunsShowEachEpochOnce() throws {
        let run = directory + "/run"
        _ = try train(run, overrides: ["training.epochs=4"])
        let full = try readWithTensorBoard(run)
        try FileManager.default.removeItem(atPath: run)

        _ = try train(run, overrides: ["training.epochs=3"])
        try FileManager.default.removeItem(atPath: run + "/checkpoints/epoch-0003.json")
        _ = try train(run, resume: true, overrides: ["training.epochs=4"])
        XCTAssertEqual(try eventFiles(run).count, 2)
        let resumed = try readWithTensorBoard(run)
        XCTAssertEqual(resumed["loss"]?.map { $0[0] }, [1, 2, 3, 4], "epoch 3 of the first attempt is purged")
        XCTAssertEqual(resumed["loss"]?.map { $0[1] }, full["loss"]?.map { $0[1] }, "a resumed run continues exactly")

        var options = TrainOptions(runDirectory: run)
        options.quiet = true
        options.overwrite = true
        let config = try TrainingConfig.parse(yaml: Self.runYAML, overrides: ["training.epochs=2"])
        _ = try Trainer(config: config, data: try RunData(config: config), communicator: LocalCommunicator(), options: options).run()
        XCTAssertEqual(try eventFiles(run).count, 1, "--overwrite removes the old run's event files")
    }

    // MARK: Per-step scalars (logging.tensorboard_every_steps)

    /// The step writer's records, byte for byte, are what the general encoder (checked against
    /// TensorBoard's own bytes above) makes of the same scalars: 90 training samples in batches
    /// of 30 are 3 steps an epoch, 12 in 4 epochs, every 5th written.
    func testStepEventsAreTheGeneralEncodersBytes() throws {
        let run = directory + "/run"
        _ = try train(run, overrides: ["logging.tensorboard_every_steps=5"])
        let files = try eventFiles(run + "/steps")
        XCTAssertEqual(files.count, 1)
        let path = run + "/steps/" + files[0]
        let records = try TFRecord.records(Array(try Data(contentsOf: URL(fileURLWithPath: path))), file: path)
        XCTAssertEqual(records.count, 1 + 2, "the file version, then steps 5 and 10")
        for (record, step) in zip(records.dropFirst(), [5, 10]) {
            let wallTime = Double(bitPattern: record[1..<9].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            XCTAssertEqual(abs(wallTime - Date().timeIntervalSince1970), 0, accuracy: 600)
            func float(_ offset: Int) -> Float {
                Float(bitPattern: record[offset..<offset + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            }
            // … batch_loss's float | 10, 15, 10, 8, "batch_lr", 21 (13 bytes) | batch_lr's float.
            let loss = float(record.count - 4 - 13 - 4), lr = float(record.count - 4)
            XCTAssertEqual(record, TensorBoardEvent.scalars([("batch_loss", loss), ("batch_lr", lr)], step: step, wallTime: wallTime))
            XCTAssertEqual(lr, 0.01)
        }
    }

    /// Read back by TensorBoard: every step's `batch_loss` and `batch_lr`, at step = optimizer
    /// steps taken. Independent checks: the steps of an epoch (equal batches) average to the
    /// epoch's `loss`, which the trainer sums separately, and the learning rate is warmup's
    /// formula lr·s/W at 0-based step s < W (torch LinearLR from start_factor 0), then lr.
    func testTensorBoardReadsEveryStepsLossAndLearningRate() throws {
        let run = directory + "/run"
        let outcome = try train(run, overrides: ["logging.tensorboard_every_steps=1", "schedule={type: warmup, warmup_steps: 8}"])
        let steps = try readWithTensorBoard(run + "/steps")
        XCTAssertEqual(Set(steps.keys), ["batch_loss", "batch_lr"])
        let losses = try XCTUnwrap(steps["batch_loss"]), rates = try XCTUnwrap(steps["batch_lr"])
        XCTAssertEqual(losses.map { $0[0] }, (1...12).map(Double.init))
        XCTAssertEqual(rates.count, 12)
        for (s, rate) in rates.enumerated() {
            XCTAssertEqual(rate[1], 0.01 * min(1, Double(s) / 8), accuracy: 1e-9, "step \(s + 1)")   // float32 rounding
        }
        for record in outcome.epochs {
            let epoch = losses[(record.epoch - 1) * 3..<record.epoch * 3].map { $0[1] }
            let loss = try XCTUnwrap(record.loss)
            XCTAssertEqual(epoch.reduce(0, +) / 3, loss, accuracy: 1e-6 * loss, "epoch \(record.epoch)")
        }
        XCTAssertFalse(try readWithTensorBoard(run).keys.contains("batch_loss"), "the epoch run has only the epoch scalars")
    }

    /// Stopped after 3 epochs, resumed from epoch 2's checkpoint: TensorBoard shows steps 1…12
    /// once each, and the resumed steps are the uninterrupted run's.
    func testResumedRunShowsEachStepOnce() throws {
        let run = directory + "/run"
        _ = try train(run, overrides: ["logging.tensorboard_every_steps=1"])
        let full = try readWithTensorBoard(run + "/steps")
        try FileManager.default.removeItem(atPath: run)

        _ = try train(run, overrides: ["training.epochs=3", "logging.tensorboard_every_steps=1"])
        try FileManager.default.removeItem(atPath: run + "/checkpoints/epoch-0003.json")
        _ = try train(run, resume: true, overrides: ["logging.tensorboard_every_steps=1"])
        XCTAssertEqual(try eventFiles(run + "/steps").count, 2)
        let resumed = try readWithTensorBoard(run + "/steps")
        XCTAssertEqual(resumed["batch_loss"]?.map { $0[0] }, (1...12).map(Double.init), "steps 7–9 of the first attempt are purged")
        XCTAssertEqual(resumed["batch_loss"]?.map { $0[1] }, full["batch_loss"]?.map { $0[1] })
    }

    func testStepScalarsConfig() throws {
        XCTAssertEqual(try TrainingConfig.parse(yaml: Self.runYAML).logging.tensorboardEverySteps, 0, "off by default")
        assertDDPError(.config, containing: ["logging.tensorboard_every_steps", "≥ 0"]) {
            try TrainingConfig.parse(yaml: Self.runYAML, overrides: ["logging.tensorboard_every_steps=-1"])
        }
        assertDDPError(.config, containing: ["logging.tensorboard_every_steps", "logging.tensorboard is false"]) {
            try TrainingConfig.parse(yaml: Self.runYAML, overrides: ["logging.tensorboard=false", "logging.tensorboard_every_steps=10"])
        }
        let run = directory + "/run"
        _ = try train(run, overrides: ["training.epochs=1"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/steps"), "no steps/ unless asked for")
    }

    func testTurnedOffByConfig() throws {
        let run = directory + "/run"
        _ = try train(run, overrides: ["logging.tensorboard=false", "training.epochs=1"])
        XCTAssertEqual(try eventFiles(run), [])
        assertDDPError(.config, containing: ["logging.tensorboard", "true or false"]) {
            try TrainingConfig.parse(yaml: Self.runYAML, overrides: ["logging.tensorboard=sometimes"])
        }
    }
}
