import DDPCore
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// What happens when things go wrong under a real `mpirun`: the job must end (never hang), say
/// why once, and leave a checkpoint that resumes.
final class FailureTests: IntegrationTestCase {
    // MARK: 6. A rank killed mid-run

    /// 2000 samples, a checkpoint every epoch, and far more epochs than the test waits for
    /// (minutes of work), so the kill always lands mid-run, possibly while rank 0 writes.
    static let longYAML = """
        seed: 5
        data:
          train: {format: moons, samples: 2000, noise: 0.2}
        model:
          inputs: 2
          layers:
            - {type: dense, units: 64, use_bias: false}
            - {type: batchnorm}
            - {type: activation, fn: relu}
            - {type: dense, units: 2}
        optimizer: {type: adamw, lr: 0.001}
        training: {epochs: 50000, batch_size: 32}
        checkpoint: {every_epochs: 1, keep: 2}
        """

    func testKilledRankEndsTheJobAndLeavesAResumableCheckpoint() throws {
        let config = try writeConfig("long.yaml", Self.longYAML)
        let run = path("killed-run")
        let job = try start(np: 2, ["train", config, "--run-dir", run, "--quiet"], label: "np2-killed")
        var finished = false
        defer { if !finished { job.killTree() } }

        // Wait for the first complete checkpoint (its JSON is written last).
        let checkpoints = run + "/checkpoints"
        let deadline = Date().addingTimeInterval(60)
        func hasCheckpoint() -> Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).contains { $0.hasPrefix("epoch-") && $0.hasSuffix(".json") }
        }
        while !hasCheckpoint() {
            guard job.process.isRunning else {
                finished = true
                XCTFail("the job ended before its first checkpoint:\n\(job.result().tail)")
                return
            }
            guard Date() < deadline else { XCTFail("no checkpoint after 60 s:\n\(job.result().tail)"); return }
            usleep(20_000)
        }

        // The ranks: mpirun's descendants whose command line names this (unique) run directory.
        let ranks = ProcessTable.descendants(of: job.pid).filter { ProcessTable.commandLine($0).contains(run) }
        XCTAssertEqual(ranks.count, 2, "expected 2 ddp rank processes under mpirun, found \(ranks)")
        let byRank = Dictionary(ranks.compactMap { pid in ProcessTable.mpiRank(pid).map { ($0, pid) } }, uniquingKeysWith: { a, _ in a })
        let victim = try XCTUnwrap(byRank[1] ?? ranks.max(), "no rank process to kill")
        XCTAssertEqual(kill(victim, SIGKILL), 0, "kill(\(victim), SIGKILL)")
        let killedAt = Date()

        guard job.wait(timeout: 10) else {
            XCTFail("mpirun did not end within 10 s of rank 1 being killed (the surviving rank hangs):\n\(job.result().tail)")
            return
        }
        finished = true
        let result = job.result()
        XCTAssertNotEqual(result.status, 0, "mpirun exited 0 although a rank was killed:\n\(result.tail)")
        print("mpirun ended \(String(format: "%.2f", Date().timeIntervalSince(killedAt))) s after the kill, status \(result.status)")
        for pid in ranks {
            XCTAssertFalse(ProcessTable.isAlive(pid), "rank process \(pid) outlived mpirun")
        }
        XCTAssertNil(Metrics(runDirectory: run).end, "a killed run must not write an end line")

        // The newest checkpoint on disk is whole: its JSON's size and checksum match its tensors.
        let store = CheckpointStore(runDirectory: run)
        let search = store.newestValid()
        XCTAssertEqual(search.skipped, [], "damaged checkpoints after the kill")
        let newest = try XCTUnwrap(search.checkpoint, "no valid checkpoint left after the kill")
        XCTAssertEqual(newest.state.ranks, 2)
        let completed = newest.state.epoch
        XCTAssertGreaterThanOrEqual(completed, 1)
        XCTAssertEqual(newest.state.globalStep, completed * 63, "2000 samples / batch 32 = 63 steps per epoch")

        // It resumes on one process and runs to completion (2 more epochs, to stay quick).
        let resumed = try train(np: nil, config: config, runDirectory: run,
                                ["--resume", "--set", "training.epochs=\(completed + 2)"], timeout: 60)
        XCTAssertEqual(resumed.status, 0)
        let metrics = Metrics(runDirectory: run)
        XCTAssertEqual(metrics.endString("reason"), "completed")
        XCTAssertEqual(metrics.endInt("epochs_run"), completed + 2)
        XCTAssertEqual(metrics.epochNumbers(), Array(1...(completed + 2)), "metrics.jsonl after resume")
        let model = try readTensors(run + "/model.safetensors")
        XCTAssertEqual(model["1.num_batches_tracked"]?.int64s(), [Int64((completed + 2) * 63)])
    }

    // MARK: 7. Clear errors, no hang

    func testUnknownConfigKeyFailsFastWithOneMessage() throws {
        let config = try writeConfig("typo.yaml", """
            seed: 1
            data:
              train: {format: moons, samples: 200, noise: 0.2}
            model:
              inputs: 2
              layers:
                - {type: dense, units: 16, activation: relu, unitz: 3}
                - {type: dense, units: 2}
            optimizer: {type: sgd, lr: 0.1}
            training: {epochs: 5, batch_size: 20}
            """)
        let result = try runDDP(np: 2, ["train", config, "--run-dir", path("typo-run"), "--quiet"], timeout: 60)
        let messages = assertFailedFast(result, "a config error should end the job at once")
        XCTAssertEqual(messages.count, 1, "expected one error message (rank 0's), got:\n\(result.output)")
        XCTAssertTrue(messages.first?.contains("model.layers[0].unitz") ?? false, "the message does not name the key:\n\(result.output)")
        XCTAssertTrue(messages.first?.contains("unknown key") ?? false, result.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("typo-run/model.safetensors")))
    }

    /// Plain SGD with lr 1000 on a squared loss diverges to inf within a few steps. Every rank
    /// sees the flag in the same allreduce, so the job ends without waiting on anyone.
    func testNonFiniteLossFailsWithoutHanging() throws {
        let config = try writeConfig("diverge.yaml", """
            seed: 1
            data:
              train: {format: moons, samples: 200, noise: 0.2}
            model:
              inputs: 2
              layers:
                - {type: dense, units: 16, activation: relu}
                - {type: dense, units: 1}
            loss: mse
            optimizer: {type: sgd, lr: 1000}
            training: {epochs: 5, batch_size: 20}
            """)
        let result = try runDDP(np: 2, ["train", config, "--run-dir", path("diverge-run"), "--quiet"], timeout: 60)
        let messages = assertFailedFast(result, "a non-finite loss should end the job at once")
        XCTAssertFalse(messages.isEmpty, "no ddp error message:\n\(result.output)")
        XCTAssertTrue(messages.contains { $0.contains("non-finite") }, "the message does not mention non-finite:\n\(result.output)")
        XCTAssertNil(Metrics(runDirectory: path("diverge-run")).end)
    }

    /// Only rank 0 reads checkpoints; when it finds none, the other ranks must learn it and stop
    /// with it rather than wait in the next broadcast.
    func testResumeWithoutCheckpointFailsOnAllRanks() throws {
        let config = try writeConfig("noresume.yaml", """
            seed: 1
            data:
              train: {format: moons, samples: 100, noise: 0.2}
            model:
              inputs: 2
              layers:
                - {type: dense, units: 8, activation: relu}
                - {type: dense, units: 2}
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 2, batch_size: 20}
            """)
        let result = try runDDP(np: 2, ["train", config, "--run-dir", path("empty-run"), "--quiet", "--resume"], timeout: 60)
        assertFailedFast(result, "a missing checkpoint should end the job at once")
        XCTAssertTrue(result.output.contains("no valid checkpoint"), result.output)
    }

    /// The job failed (non-zero status) within 20 s; returns its `ddp: error` lines.
    @discardableResult
    func assertFailedFast(_ result: ProcessResult, _ why: String,
                          file: StaticString = #filePath, line: UInt = #line) -> [Substring] {
        XCTAssertNotEqual(result.status, 0, result.tail, file: file, line: line)
        XCTAssertLessThan(result.seconds, 20, why, file: file, line: line)
        return result.output.split(separator: "\n").filter { $0.contains("ddp: error") }
    }
}
