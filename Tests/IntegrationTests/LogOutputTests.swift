import DDPCore
import Foundation
import XCTest

/// What a run prints where no terminal is watching (a batch job's log file): plain lines, no
/// carriage-return redraws; and on a terminal (a pty from script(1)): the progress bar redrawn
/// in place from the first step.
final class LogOutputTests: IntegrationTestCase {
    /// One epoch of 640 steps of 1024-wide GEMMs, each step's loss written to steps/ as it
    /// happens, so the test can tell from outside that the epoch is under way.
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
        logging: {progress_seconds: 0.5, tensorboard_every_steps: 1}
        """

    private func epochSeconds(_ run: String) throws -> Double {
        try XCTUnwrap(Metrics(runDirectory: run).values("seconds").first ?? nil, "no epoch in \(run)")
    }

    /// The whole records in the run's step file so far (the file version, then one per step).
    private func stepRecords(_ run: String) -> Int {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: run + "/steps")) ?? []).filter(TensorBoardWriter.isEventFile)
        guard let name = names.first, let data = FileManager.default.contents(atPath: run + "/steps/" + name) else { return 0 }
        let bytes = [UInt8](data)
        var count = 0, offset = 0
        while bytes.count - offset >= 12 {
            let length = (0..<8).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
            guard bytes.count - offset >= 16 + length else { break }
            offset += 16 + length
            count += 1
        }
        return count
    }

    /// A plain line needs two progress calls `progress_seconds` (0.5 s) apart, so the test
    /// stretches the epoch itself instead of hoping the machine is slow: it stops the
    /// process for 2.5 s once the first step is written, lets it run 17 steps (past a progress
    /// call, which the trainer makes at most every 0.1 s), and stops it 0.6 s more.
    func testLogFilesGetPlainLines() throws {
        let config = try writeConfig("long.yaml", Self.longEpochYAML)
        let run = path("run")
        let job = try start(np: nil, ["train", config, "--run-dir", run], label: "plain", environment: ["DDP_PROGRESS": nil])
        var finished = false
        defer { if !finished { job.killTree() } }
        let deadline = Date().addingTimeInterval(IntegrationTestCase.defaultTimeout)     // against a hang only
        func waitForRecords(_ count: Int) -> Bool {
            while stepRecords(run) < count {
                guard job.process.isRunning, Date() < deadline else { return false }
                usleep(2_000)
            }
            return true
        }
        func pause(_ seconds: Double) {
            kill(job.pid, SIGSTOP)
            usleep(UInt32(seconds * 1_000_000))
            kill(job.pid, SIGCONT)
        }
        guard waitForRecords(2) else { XCTFail("no step written:\n\(job.result().tail)"); return }
        pause(2.5)
        let resumed = stepRecords(run)
        guard waitForRecords(resumed + 17) else { XCTFail("the epoch ended before the test could pause it again:\n\(job.result().tail)"); return }
        pause(0.6)
        guard job.wait(timeout: max(1, deadline.timeIntervalSinceNow)) else { XCTFail("the run hung:\n\(job.result().tail)"); return }
        finished = true

        let result = job.result()
        XCTAssertEqual(result.status, 0, result.tail)
        XCTAssertFalse(result.stdout.contains("\r"), "carriage return in stdout:\n\(result.stdout)")
        XCTAssertFalse(result.stderr.contains("\r"), "carriage return in stderr:\n\(result.stderr)")
        XCTAssertEqual(result.stdout.split(separator: "\n").filter { $0.hasPrefix("Epoch 1/1 - ") }.count, 1, result.stdout)
        let seconds = try epochSeconds(run)
        XCTAssertGreaterThan(seconds, 3, "the test's pauses alone take 3.1 s")
        let progress = result.stderr.split(separator: "\n").filter { $0.hasPrefix("Epoch 1/1  step ") && $0.contains(" samples/s  ETA ") }
        XCTAssertGreaterThanOrEqual(progress.count, 1, "a \(seconds) s epoch with progress_seconds 0.5 printed no progress line:\n\(result.stderr)")
        XCTAssertLessThanOrEqual(progress.count, Int(seconds / 0.5) + 1, "more lines than one per 0.5 s:\n\(result.stderr)")
    }

    /// On a terminal the progress bar is redrawn in place, from the first step, with its ETA,
    /// and cleared before each epoch line.
    func testATerminalGetsABarRedrawnInPlace() throws {
        let script = "/usr/bin/script"
        guard FileManager.default.isExecutableFile(atPath: script) else { throw XCTSkip("no script(1) to give ddp a terminal") }
        let run = path("terminal")
        let command = [try Integration.ddpBinary(), "train", BadInputTests.moons, "--run-dir", run, "--set", "training.epochs=2"]
            .map { "'\($0)'" }.joined(separator: " ")
        var environment = Integration.environment(underMPI: false)
        environment["DDP_PROGRESS"] = nil
        let job = try Job(executable: script, arguments: ["-qec", command, "/dev/null"], environment: environment,
                          logDirectory: path(""), label: "script")
        XCTAssertTrue(job.wait(timeout: 120), "ddp under script(1) hung")
        let result = job.result()
        XCTAssertEqual(result.status, 0, result.tail)
        let redraws = result.stdout.split(separator: "\r").filter { $0.hasPrefix("Epoch 1/2  ") && $0.contains(" [") }
        XCTAssertFalse(redraws.isEmpty, "no bar redrawn on the terminal:\n\(result.tail)")
        XCTAssertTrue(redraws.first?.hasPrefix("Epoch 1/2  1/") ?? false, "the bar starts at the first step: \(redraws.first ?? "")")
        XCTAssertTrue(redraws.allSatisfy { $0.contains("] ETA ") || $0.contains("] - loss") }, "\(redraws)")
        XCTAssertTrue(result.stdout.contains("Epoch 2/2 - "), result.tail)
    }
}
