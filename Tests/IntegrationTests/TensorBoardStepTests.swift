import DDPCore
import Foundation
import XCTest

/// `logging.tensorboard_every_steps` under a real `mpirun`: rank 0 alone writes the step file,
/// and its per-step losses are those of one process (N ranks compute the same model).
final class TensorBoardStepTests: IntegrationTestCase {
    /// 300 moons samples, 240 for training in batches of 24: 10 steps an epoch, 30 in 3 epochs,
    /// every 4th written (4, 8, …, 28).
    static let yaml = """
        seed: 5
        data:
          train: {format: moons, samples: 300, noise: 0.2}
          validation_split: 0.2
        model:
          inputs: 2
          layers:
            - {type: dense, units: 16, activation: relu}
            - {type: dense, units: 2}
        loss: cross_entropy
        optimizer: {type: adam, lr: 0.01}
        schedule: {type: cosine, t_max: 3}
        training: {epochs: 3, batch_size: 24}
        checkpoint: {every_epochs: 0, keep: 1}
        logging: {tensorboard_every_steps: 4}
        """

    /// (step, batch_loss, batch_lr) of each record after the file version, read from the bytes.
    private func stepScalars(_ run: String) throws -> [(step: Int, loss: Float, lr: Float)] {
        let names = try FileManager.default.contentsOfDirectory(atPath: run + "/steps").filter(TensorBoardWriter.isEventFile)
        XCTAssertEqual(names.count, 1, "one step file, rank 0's: \(names)")
        let path = run + "/steps/" + (names.first ?? "")
        return try TFRecord.records(Array(try Data(contentsOf: URL(fileURLWithPath: path))), file: path).dropFirst().map { record in
            // wall_time (9 bytes), then 0x10 and the step's varint (one byte below 128) …
            XCTAssertEqual(record[9], 0x10)
            func float(_ offset: Int) -> Float {
                Float(bitPattern: record[offset..<offset + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            }
            // … and the two values' floats, each after its tag: "batch_loss" 0x15 and "batch_lr" 0x15.
            return (Int(record[10]), float(record.count - 4 - 13 - 4), float(record.count - 4))
        }
    }

    func testRankZeroWritesTheStepsOfOneProcess() throws {
        let config = try writeConfig("steps.yaml", Self.yaml)
        let single = path("np1"), double = path("np2")
        try train(np: nil, config: config, runDirectory: single)
        try train(np: 2, config: config, runDirectory: double)
        let reference = try stepScalars(single), distributed = try stepScalars(double)
        XCTAssertEqual(reference.map(\.step), Array(stride(from: 4, through: 28, by: 4)))
        XCTAssertEqual(distributed.map(\.step), reference.map(\.step))
        for (a, b) in zip(reference, distributed) {
            XCTAssertEqual(Double(b.loss), Double(a.loss), accuracy: 1e-5 * Double(a.loss), "batch_loss at step \(a.step)")
            XCTAssertEqual(b.lr, a.lr, "batch_lr at step \(a.step)")
        }
        XCTAssertNotEqual(reference.first?.lr, reference.last?.lr, "the cosine schedule moves the rate")
    }
}
