import DDPCore
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// launch/slurm.sbatch end to end under a real one-node Slurm (launch/slurm-local: munged,
/// slurmctld, slurmd): the job trains on 2 ranks, SIGUSR1 to its batch shell (what
/// `--signal=B:USR1@120` sends before the time limit) is forwarded to the step, the job requeues
/// itself, and the second attempt resumes from the checkpoint and completes.
///
/// Opt-in (`DDP_SLURM_TESTS=1`, as root): bringing Slurm up installs Debian's slurm-wlm and
/// munge when missing, and the test takes about 30 s.
final class SlurmTests: IntegrationTestCase {
    private var slurmDirectory: String { path("slurm") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard ProcessInfo.processInfo.environment["DDP_SLURM_TESTS"] == "1" else {
            throw XCTSkip("opt-in: set DDP_SLURM_TESTS=1 to run launch/slurm.sbatch under a one-node Slurm (root; installs slurm-wlm and munge)")
        }
        guard getuid() == 0 else { throw XCTSkip("the one-node Slurm of launch/slurm-local runs its daemons as root") }
        let up = try tool("\(Integration.packageRoot)/launch/slurm-local", ["up", "--dir", slurmDirectory], timeout: 300)
        guard up.status == 0 else { throw Integration.SetupError(description: "launch/slurm-local up failed:\n\(up.tail)") }
    }

    override func tearDownWithError() throws {
        _ = try? tool("\(Integration.packageRoot)/launch/slurm-local", ["down", "--dir", slurmDirectory])
        try super.tearDownWithError()
    }

    /// Runs a tool with SLURM_CONF pointing at the test's cluster.
    private func tool(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> ProcessResult {
        var environment = Integration.environment(underMPI: false)
        environment["SLURM_CONF"] = slurmDirectory + "/slurm.conf"
        environment["RUN_DIR"] = path("run")
        environment["DDP_BINARY"] = try Integration.ddpBinary()
        let job = try Job(executable: executable, arguments: arguments, environment: environment,
                          logDirectory: directory, label: URL(fileURLWithPath: executable).lastPathComponent)
        if !job.wait(timeout: timeout) { job.killTree() }
        return job.result()
    }

    private func slurm(_ command: String, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let result = try tool("/usr/bin/\(command)", arguments)
        XCTAssertEqual(result.status, 0, "\(command) \(arguments.joined(separator: " ")) failed:\n\(result.tail)", file: file, line: line)
        return result.stdout
    }

    /// `JobState=…` and `Restarts=…` of a job, from scontrol.
    private func jobState(_ id: String) throws -> (state: String, restarts: Int) {
        let text = try tool("/usr/bin/scontrol", ["show", "job", id]).stdout
        func field(_ name: String) -> String? {
            text.split(whereSeparator: \.isWhitespace).first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
        }
        return (field("JobState") ?? "?", field("Restarts").flatMap(Int.init) ?? -1)
    }

    private func waitFor(_ what: String, timeout: Double, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(200_000)
        }
        XCTFail("timed out after \(timeout) s waiting for \(what)")
        throw Integration.SetupError(description: "timed out waiting for \(what)")
    }

    func testSignalledJobRequeuesAndResumes() throws {
        let config = try writeConfig("slurm.yaml", """
            seed: 3
            data:
              train: {format: moons, samples: 400, noise: 0.2}
              validation_split: 0.25
              normalize: standardize
            model:
              inputs: 2
              layers:
                - {type: dense, units: 16, activation: relu}
                - {type: dense, units: 2}
            loss: cross_entropy
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 300, batch_size: 20}
            checkpoint: {every_epochs: 1, keep: 2}
            """)
        let id = try slurm("sbatch", ["--parsable", "--chdir", directory, "--nodes=1", "--ntasks-per-node=2", "--time=5",
                                      "\(Integration.packageRoot)/launch/slurm.sbatch", config, "--quiet"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertFalse(id.isEmpty, "sbatch printed no job id")
        let checkpoints = path("run/checkpoints")
        try waitFor("the first checkpoint", timeout: 60) {
            !((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).filter { $0.hasSuffix(".json") }.isEmpty
        }
        _ = try slurm("scancel", ["--signal=USR1", "--batch", id])
        // Requeued: pending, one restart. Slurm holds a requeued job back for 120 s; start it now.
        try waitFor("the requeue", timeout: 60) { try jobState(id).restarts == 1 && jobState(id).state == "PENDING" }
        _ = try slurm("scontrol", ["update", "JobId=\(id)", "StartTime=now"])
        try waitFor("the second attempt to complete", timeout: 120) { try jobState(id).state == "COMPLETED" }

        let output = try String(contentsOfFile: path("slurm-ddp-train-\(id).out"), encoding: .utf8)
        XCTAssertTrue(output.contains("job \(id) attempt 1, run directory"), output)
        XCTAssertTrue(output.contains("SIGUSR1 received: forwarding it to the job step"), output)
        XCTAssertTrue(output.contains("job \(id) attempt 2, run directory \(path("run")) --resume"), output)
        let metrics = Metrics(runDirectory: path("run"))
        XCTAssertEqual(metrics.endString("reason"), "completed")
        XCTAssertEqual(metrics.endInt("ranks"), 2)
        XCTAssertEqual(metrics.epochNumbers(), Array(1...300), "metrics.jsonl across the requeue")
    }
}
