import DDPCore
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Runs across hosts: `launch/cluster` makes two hosts on this machine (network namespaces with
/// their own hostnames on a bridge), OpenMPI starts its daemons on them through the cluster's rsh
/// agent and the ranks talk over TCP, as on a real cluster. mpirun runs on host 0, as on a
/// cluster's first node. Needs root (namespaces); skipped, with the reason, where they cannot be made.
final class MultiHostTests: IntegrationTestCase {
    /// A name and subnet of its own, so a cluster a user brought up (ddpc, 10.77.0) is untouched.
    static let clusterName = "ddptest"
    static let subnet = "10.78.0"
    static var state: String { "/run/ddp-cluster/\(clusterName)" }
    static func host(_ index: Int) -> String { "\(clusterName)-h\(index)" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard getuid() == 0 else {
            throw XCTSkip("multi-host tests need root: they make network namespaces (launch/cluster)")
        }
        let probe = "\(Self.clusterName)-probe"
        let made = try runTool("/bin/sh", ["-c", "ip netns add \(probe) && ip netns del \(probe)"])
        guard made.status == 0 else {
            throw XCTSkip("network namespaces cannot be made here (ip netns add: \(made.output.trimmingCharacters(in: .whitespacesAndNewlines)))")
        }
    }

    override func tearDownWithError() throws {
        _ = try? cluster(["down"])
        try super.tearDownWithError()
    }

    // MARK: Helpers

    /// Runs a tool to completion (a minute at most) and returns what it left.
    private func runTool(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> ProcessResult {
        let job = try Job(executable: executable, arguments: arguments, environment: ProcessInfo.processInfo.environment,
                          logDirectory: directory, label: URL(fileURLWithPath: executable).lastPathComponent)
        if !job.wait(timeout: timeout) { job.killTree() }
        return job.result()
    }

    @discardableResult
    private func cluster(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> ProcessResult {
        let result = try runTool("\(Integration.packageRoot)/launch/cluster",
                                 arguments + ["--name", Self.clusterName, "--subnet", Self.subnet])
        XCTAssertEqual(result.status, 0, "launch/cluster \(arguments.joined(separator: " ")) failed:\n\(result.tail)", file: file, line: line)
        return result
    }

    /// Starts `mpirun [layout] ddp ARGS` on host 0 of the cluster (under `exec HOST`).
    /// `layout` is e.g. `["-np", "4"]` (the hostfile's 2 hosts × 2 slots) or `["-np", "2", "--host", "ddptest-h0:2"]`.
    private func startOnCluster(_ layout: [String], _ arguments: [String], label: String) throws -> Job {
        let flags = try String(contentsOfFile: Self.state + "/mpirun-args", encoding: .utf8)
            .split(whereSeparator: \.isWhitespace).map(String.init)
        return try Job(executable: Self.state + "/exec",
                       arguments: [Self.host(0), try Integration.mpirun()] + flags + layout
                           + ["-x", "OPENBLAS_NUM_THREADS", try Integration.ddpBinary()] + arguments,
                       environment: Integration.environment(underMPI: true), logDirectory: directory, label: label)
    }

    /// Trains to completion on the cluster; the run must exit 0.
    @discardableResult
    private func trainOnCluster(_ layout: [String], config: String, runDirectory: String, _ extra: [String] = [],
                                file: StaticString = #filePath, line: UInt = #line) throws -> ProcessResult {
        let job = try startOnCluster(layout, ["train", config, "--run-dir", runDirectory, "--quiet"] + extra,
                                     label: "cluster-\(layout.joined(separator: "_"))")
        if !job.wait(timeout: Self.defaultTimeout) {
            job.killTree()
            XCTFail("training on the cluster (\(layout)) hung: killed after \(Self.defaultTimeout) s:\n\(job.result().tail)", file: file, line: line)
        }
        let result = job.result()
        XCTAssertEqual(result.status, 0, "training on the cluster (\(layout)) \(extra) failed:\n\(result.tail)", file: file, line: line)
        return result
    }

    /// The pids of `ddp` ranks among `pids`.
    private func ddpRanks(_ pids: [pid_t]) throws -> [pid_t] {
        let binary = try Integration.ddpBinary()
        return pids.filter { ProcessTable.commandLine($0).hasPrefix(binary + " ") }
    }

    /// The processes inside a host's network namespace.
    private func processes(on host: String) throws -> [pid_t] {
        try runTool("/usr/sbin/ip", ["netns", "pids", host]).stdout.split(separator: "\n").compactMap { pid_t($0) }
    }

    // MARK: Same math across hosts

    /// np=4 as 2 hosts × 2 ranks (vader within a host, TCP between hosts) trains the model that
    /// one plain process trains, and OpenMPI really placed two ranks on each host.
    func testFourRanksOnTwoHostsMatchOneProcess() throws {
        try cluster(["up", "2", "--slots", "2"])
        let config = try writeConfig("equivalence.yaml", DistributedTrainingTests.equivalenceYAML)
        try train(np: nil, config: config, runDirectory: path("np1"))
        let result = try trainOnCluster(["-np", "4", "--display-map"], config: config, runDirectory: path("hosts2x2"))
        for index in 0..<2 {
            XCTAssertTrue(result.output.contains("Data for node: \(Self.host(index))\tNum slots: 2\tMax slots: 0\tNum procs: 2"),
                          "mpirun's map does not put 2 ranks on \(Self.host(index)):\n\(result.output)")
        }
        assertTensorsClose(try readTensors(path("np1/model.safetensors")), try readTensors(path("hosts2x2/model.safetensors")),
                           tolerance: DistributedTrainingTests.tolerance, "np=4 on 2 hosts vs one process")
        assertSeriesClose(Metrics(runDirectory: path("np1")).values("loss"), Metrics(runDirectory: path("hosts2x2")).values("loss"),
                          tolerance: DistributedTrainingTests.tolerance, "loss on 2 hosts vs one process")
    }

    /// `distributed.deterministic`: 4 ranks on 2 hosts (the blocks gathered to their owners over
    /// TCP, no shared windows across hosts) write the bytes one plain process writes.
    func testDeterministicModeOnTwoHostsGivesOneProcessBytes() throws {
        try cluster(["up", "2", "--slots", "2"])
        let config = try writeConfig("equivalence.yaml", DistributedTrainingTests.equivalenceYAML)
        let deterministic = ["--set", "distributed.deterministic=true"]
        try train(np: nil, config: config, runDirectory: path("np1"), deterministic)
        try trainOnCluster(["-np", "4"], config: config, runDirectory: path("hosts2x2"), deterministic)
        for file in ["model.safetensors", "checkpoints/epoch-0004.safetensors"] {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("np1/" + file))),
                           try Data(contentsOf: URL(fileURLWithPath: path("hosts2x2/" + file))), "\(file): 2 hosts × 2 ranks against one process")
        }
        XCTAssertEqual(Metrics(runDirectory: path("np1")).values("val_loss"), Metrics(runDirectory: path("hosts2x2")).values("val_loss"))
    }

    /// 2 epochs on 2 hosts × 2 ranks, resumed to 4 epochs on one host with 2 ranks, ends where an
    /// uninterrupted one-process run of 4 epochs ends.
    func testResumeOnAnotherHostLayout() throws {
        try cluster(["up", "2", "--slots", "2"])
        let config = try writeConfig("equivalence.yaml", DistributedTrainingTests.equivalenceYAML)
        try train(np: nil, config: config, runDirectory: path("straight"))
        let run = path("moved")
        try trainOnCluster(["-np", "4"], config: config, runDirectory: run, ["--set", "training.epochs=2"])
        XCTAssertEqual(Metrics(runDirectory: run).epochNumbers(), [1, 2])
        try trainOnCluster(["-np", "2", "--host", "\(Self.host(0)):2"], config: config, runDirectory: run, ["--resume"])
        let metrics = Metrics(runDirectory: run)
        XCTAssertEqual(metrics.epochNumbers(), [1, 2, 3, 4])
        assertTensorsClose(try readTensors(path("straight/model.safetensors")), try readTensors(run + "/model.safetensors"),
                           tolerance: DistributedTrainingTests.tolerance, "2 epochs on 2 hosts + 2 on one host vs 4 on one process")
        assertSeriesClose(Metrics(runDirectory: path("straight")).values("val_loss"), metrics.values("val_loss"),
                          tolerance: DistributedTrainingTests.tolerance, "val_loss across the host change")
    }

    // MARK: A lost host

    /// Host 1's link goes down mid-run: no reset reaches anyone, so without the watchdog every
    /// rank would wait in its collective forever. With `distributed.timeout_seconds: 6` the
    /// ranks end the job: mpirun and every rank are gone within the timeout + 30 s, the message
    /// names the collective, the status is the watchdog's, and the newest checkpoint resumes on
    /// one host.
    ///
    /// The cluster's hosts give up on an unanswered TCP connection after ~12.6 s
    /// (tcp_retries2 = 5), which is what lets mpirun exit once the job is aborted; a rank with
    /// data in flight would then also fail in OpenMPI's TCP transport, so the timeout is kept
    /// well below that (the watchdog checks once a second: it fires at 6 to 7 s) and the test
    /// requires the watchdog's message and exit status, not just an ended job.
    func testLostHostEndsTheJobAndTheCheckpointResumes() throws {
        try cluster(["up", "2", "--slots", "2"])
        let timeout = 6.0
        let config = try writeConfig("lost.yaml", """
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
            training: {epochs: 100000, batch_size: 20}
            checkpoint: {every_epochs: 1, keep: 2}
            distributed: {timeout_seconds: \(timeout)}
            """)
        let run = path("lost")
        let job = try startOnCluster(["-np", "4"], ["train", config, "--run-dir", run, "--quiet"], label: "lost-host")
        defer { if job.process.isRunning { job.killTree() } }

        // Training has reached a checkpoint: take host 1 off the network.
        let checkpoints = run + "/checkpoints"
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, job.process.isRunning,
              ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).filter({ $0.hasSuffix(".json") }).isEmpty {
            usleep(100_000)
        }
        XCTAssertTrue(job.process.isRunning, "the run ended before the host was lost:\n\(job.result().tail)")
        // mpirun starts host 1's daemon through the local rsh agent, so its ranks are mpirun's
        // descendants too: tell the hosts apart by network namespace.
        let onLostHost = try ddpRanks(processes(on: Self.host(1)))
        let survivors = try ddpRanks(ProcessTable.descendants(of: job.pid)).filter { !onLostHost.contains($0) }
        XCTAssertEqual(survivors.count, 2, "ranks on host 0 (mpirun's host)")
        XCTAssertEqual(onLostHost.count, 2, "ranks on host 1")
        let lost = Date()
        let down = try runTool("/usr/sbin/ip", ["netns", "exec", Self.host(1), "ip", "link", "set", "eth0", "down"])
        XCTAssertEqual(down.status, 0, "could not take host 1's link down: \(down.output)")

        let limit = timeout + 30
        let ended = job.wait(timeout: limit)
        let seconds = Date().timeIntervalSince(lost)
        let output = job.result().output
        XCTAssertTrue(ended, "mpirun still runs \(limit) s after host 1 was lost:\n\(output)")
        guard ended else { return }
        XCTAssertEqual(job.process.terminationStatus, CollectiveWatchdog.exitCode,
                       "the watchdog's MPI_Abort should end the job, with its status:\n\(output)")
        let stillAlive = ProcessTable.survivors(survivors + onLostHost, within: 10)
        XCTAssertEqual(stillAlive, [], "ranks still alive \(seconds) s after the host was lost: " +
                       stillAlive.map { "\($0) \(ProcessTable.commandLine($0))" }.joined(separator: "; "))
        XCTAssertTrue(output.contains("ddp: watchdog: rank ") && output.contains(" of 4 (host \(Self.host(0)))"),
                      "no watchdog message from a rank on host 0:\n\(output)")
        // Under the sharded update across hosts: MPI_Waitall (the bucketed reduce-scatter), MPI_Allgather or an MPI_Allreduce.
        XCTAssertNotNil(output.range(of: #"in MPI_[A-Z][A-Za-z_]+ \("#, options: .regularExpression),
                      "the watchdog message does not name the collective:\n\(output)")
        XCTAssertTrue(output.contains("distributed.timeout_seconds = 6"), "the message does not name the deadline:\n\(output)")
        print("lost host: the job ended \(String(format: "%.1f", seconds)) s after the link went down (timeout \(timeout) s)")

        // The newest checkpoint resumes, on one host (a plain process), to two epochs past it.
        let search = CheckpointStore(runDirectory: run).newestValid()
        XCTAssertEqual(search.skipped, [], "damaged checkpoints after the lost host")
        let epoch = try XCTUnwrap(search.checkpoint, "no valid checkpoint after the lost host").state.epoch
        try train(np: nil, config: config, runDirectory: run, ["--resume", "--set", "training.epochs=\(epoch + 2)"])
        let metrics = Metrics(runDirectory: run)
        XCTAssertEqual(metrics.endString("reason"), "completed")
        XCTAssertEqual(metrics.epochNumbers(), Array(1...(epoch + 2)), "metrics.jsonl after resume")
        XCTAssertEqual(metrics.endInt("epochs_run"), epoch + 2)
    }
}
