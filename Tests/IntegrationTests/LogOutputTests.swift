import DDPCore
import Foundation
import XCTest

/// What a run prints where no terminal is watching (a batch job's log file): plain lines, no
/// carriage-return redraws. (The terminal mode's redraws: ConsoleTests.)
final class LogOutputTests: IntegrationTestCase {
    /// One epoch of 640 steps of 1024-wide GEMMs: about 5 s on the 2-core development machine,
    /// long enough for progress to show (it starts 2 s into an epoch).
    static let longEpochYAML = """
        seed: 1
        data:
          train: {format: circles, samples: 40960}
          normalize: none
        model:
          inputs: 2
          layers:
            - {type: dense, units: 1024, activation: relu}
            - {type: dense, units: 1024, activation: relu}
            - {type: dense, units: 1, activation: sigmoid}
        loss: {type: binary_crossentropy, from_logits: false}
        optimizer: {type: adam, lr: 0.001}
        training: {epochs: 1, batch_size: 64}
        checkpoint: {every_epochs: 0, keep: 1}
        logging: {progress_seconds: 0.5}
        """

    private func epochSeconds(_ run: String) throws -> Double {
        try XCTUnwrap(Metrics(runDirectory: run).values("seconds").first ?? nil, "no epoch in \(run)")
    }

    func testLogFilesGetPlainLines() throws {
        let config = try writeConfig("long.yaml", Self.longEpochYAML)
        let run = path("run")
        let result = try runDDP(np: nil, ["train", config, "--run-dir", run], environment: ["DDP_PROGRESS": nil])
        XCTAssertEqual(result.status, 0, result.tail)
        XCTAssertFalse(result.stdout.contains("\r"), "carriage return in stdout:\n\(result.stdout)")
        XCTAssertFalse(result.stderr.contains("\r"), "carriage return in stderr:\n\(result.stderr)")
        XCTAssertEqual(result.stdout.split(separator: "\n").filter { $0.hasPrefix("Epoch 1/1 - ") }.count, 1, result.stdout)
        let seconds = try epochSeconds(run)
        XCTAssertGreaterThan(seconds, 3, "the epoch must outlast the 2 s before progress starts for this test to mean anything")
        let progress = result.stderr.split(separator: "\n").filter { $0.hasPrefix("Epoch 1/1  step ") && $0.hasSuffix("samples/s") }
        XCTAssertGreaterThanOrEqual(progress.count, 1, "a \(seconds) s epoch with progress_seconds 0.5 printed no progress line:\n\(result.stderr)")
        XCTAssertLessThanOrEqual(progress.count, Int(seconds / 0.5) + 1, "more lines than one per 0.5 s:\n\(result.stderr)")
    }
}
