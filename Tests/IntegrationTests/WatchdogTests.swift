import DDPCore
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// The collective watchdog on one host, where no namespaces are needed: a rank that stops
/// (SIGSTOP: alive, silent, as a rank stuck in the kernel or swapped out) leaves the other in its
/// collective, and `distributed.timeout_seconds` ends the job. The lost-host case, over TCP
/// between namespaces, is `MultiHostTests.testLostHostEndsTheJobAndTheCheckpointResumes`.
final class WatchdogTests: IntegrationTestCase {
    func testStoppedRankEndsTheJobAtTheDeadline() throws {
        let timeout = 3.0
        let config = try writeConfig("stuck.yaml", FailureTests.longYAML + "\ndistributed: {timeout_seconds: \(timeout)}\n")
        let run = path("stuck")
        let job = try start(np: 2, ["train", config, "--run-dir", run, "--quiet"], label: "np2-stopped")
        defer { if job.process.isRunning { job.killTree() } }

        // Stop rank 1 once training runs (its first checkpoint is on disk).
        let checkpoints = run + "/checkpoints"
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, job.process.isRunning,
              !((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).contains(where: { $0.hasSuffix(".json") }) {
            usleep(20_000)
        }
        let ranks = ProcessTable.descendants(of: job.pid).filter { ProcessTable.commandLine($0).contains(run) }
        let victim = try XCTUnwrap(ranks.first { ProcessTable.mpiRank($0) == 1 }, "no rank 1 among \(ranks):\n\(job.result().tail)")
        XCTAssertEqual(kill(victim, SIGSTOP), 0)
        let stopped = Date()

        let ended = job.wait(timeout: timeout + 20)
        let seconds = Date().timeIntervalSince(stopped)
        let result = job.result()
        XCTAssertTrue(ended, "the job still runs \(timeout + 20) s after rank 1 stopped:\n\(result.tail)")
        guard ended else { return }
        XCTAssertEqual(result.status, CollectiveWatchdog.exitCode, "the watchdog's status:\n\(result.tail)")
        XCTAssertGreaterThanOrEqual(seconds, timeout, "the job ended before the deadline:\n\(result.tail)")
        XCTAssertTrue(result.stderr.contains("ddp: watchdog: rank 0 of 2 (host "), "rank 0's watchdog line:\n\(result.tail)")
        XCTAssertTrue(result.stderr.contains("past distributed.timeout_seconds = 3"), result.tail)
        XCTAssertTrue(["MPI_Allreduce", "MPI_Bcast", "MPI_Barrier"].contains { result.stderr.contains(" in \($0)") },
                      "the line names no collective:\n\(result.tail)")
        let outlived = ProcessTable.survivors(ranks, within: 10)
        for pid in ranks { XCTAssertFalse(outlived.contains(pid), "rank process \(pid) outlived mpirun by 10 s") }
        print("stopped rank: the job ended \(String(format: "%.1f", seconds)) s after SIGSTOP (timeout \(timeout) s)")
    }
}
