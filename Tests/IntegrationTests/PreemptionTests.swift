import DDPCore
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Preemption to the step under a real `mpirun`: a signal (to mpirun, or to one rank alone)
/// stops every rank after the same step, rank 0 writes a step checkpoint, every rank exits 75,
/// and `--resume` continues exactly where the run stopped.
final class PreemptionTests: IntegrationTestCase {
    /// 1500 moons samples, 25 % held out, batch 10: 113 steps an epoch, so a signal lands
    /// inside an epoch; dropout and BatchNorm carry per-step state across the stop. A small plain
    /// SGD step keeps the trajectory well conditioned: uninterrupted runs on 1 and 2 ranks end
    /// 1.0e-6 apart after these 2,825 steps, where AdamW (lr 0.003) or SGD with momentum 0.9
    /// (lr 0.02) amplify the rounding differences to 1e-2, which would hide what "the same
    /// trajectory on another rank count" checks.
    static let yaml = """
        seed: 5
        data:
          train: {format: moons, samples: 1500, noise: 0.2}
          validation_split: 0.25
          normalize: standardize
        model:
          inputs: 2
          layers:
            - {type: dense, units: 32, use_bias: false}
            - {type: batchnorm}
            - {type: activation, fn: relu}
            - {type: dropout, rate: 0.2}
            - {type: dense, units: 2}
        loss: cross_entropy
        optimizer: {type: sgd, lr: 0.005}
        training: {epochs: 25, batch_size: 10}
        checkpoint: {every_epochs: 1, keep: 3}
        """

    /// Starts a run, waits for its first epoch checkpoint, signals `target`, and returns the
    /// finished job's result.
    private func interrupt(np: Int, config: String, run: String, signal: Int32, toOneRank: Bool) throws -> ProcessResult {
        let job = try start(np: np, ["train", config, "--run-dir", run], label: "preempt")
        defer { if job.process.isRunning { job.killTree() } }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, job.process.isRunning,
              ((try? FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")) ?? []).filter({ $0.hasSuffix(".json") }).isEmpty {
            usleep(20_000)
        }
        XCTAssertTrue(job.process.isRunning, "the run ended before it could be signalled:\n\(job.result().tail)")
        if toOneRank {
            let ranks = ProcessTable.descendants(of: job.pid).filter { ProcessTable.commandLine($0).contains("ddp train") }
            let rankOne = try XCTUnwrap(ranks.first { ProcessTable.mpiRank($0) == 1 }, "no rank 1 among \(ranks)")
            kill(rankOne, signal)
        } else {
            kill(job.pid, signal)
        }
        XCTAssertTrue(job.wait(timeout: 60), "the signalled run did not end")
        return job.result()
    }

    private func stepCheckpoints(_ run: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")) ?? []).filter { $0.contains("-step-") && $0.hasSuffix(".json") }
    }

    func testSignalToMpirunStopsAtAStepAndResumesBitIdentically() throws {
        let config = try writeConfig("preempt.yaml", Self.yaml)
        let uninterrupted = path("uninterrupted")
        try train(np: 2, config: config, runDirectory: uninterrupted)

        let run = path("preempted")
        let result = try interrupt(np: 2, config: config, run: run, signal: SIGUSR1, toOneRank: false)
        XCTAssertEqual(result.status, 75, "every rank exits 75 after its checkpoint:\n\(result.tail)")
        XCTAssertTrue(result.output.contains("Preempted by signal \(SIGUSR1)"), "rank 0 names the signal:\n\(result.tail)")
        let step = stepCheckpoints(run)
        XCTAssertEqual(step.count, 1, "one step checkpoint: \(step)")
        XCTAssertNil(Metrics(runDirectory: run).end, "a preempted run has no end line")

        // A copy resumes on one process: another rank count, the same trajectory up to rounding.
        let single = path("resumed-np1")
        try FileManager.default.copyItem(atPath: run, toPath: single)
        try train(np: 2, config: config, runDirectory: run, ["--resume"])
        try train(np: nil, config: config, runDirectory: single, ["--resume"])
        let reference = try readTensors(uninterrupted + "/model.safetensors")
        XCTAssertEqual(try readTensors(run + "/model.safetensors"), reference, "resumed on 2 ranks: not bit-identical")
        assertTensorsClose(reference, try readTensors(single + "/model.safetensors"), tolerance: 1e-5, "resumed on 1 process")
        let a = Metrics(runDirectory: uninterrupted), b = Metrics(runDirectory: run)
        XCTAssertEqual(b.epochNumbers(), Array(1...25), "one metrics line per epoch, the interrupted one included")
        XCTAssertEqual(a.values("loss"), b.values("loss"), "the interrupted epoch's loss carries its partial sums")
        XCTAssertEqual(a.values("val_loss"), b.values("val_loss"))
    }

    /// Accumulating 3 micro-batches a step, a signal mostly lands inside a step's window: the
    /// window is finished (the flag rides the step's one collective), the step checkpoint
    /// follows, and the resumed run ends bit-identical to the uninterrupted one.
    func testSignalInsideAnAccumulationWindowResumesBitIdentically() throws {
        let yaml = Self.yaml.replacingOccurrences(of: "training: {epochs: 25, batch_size: 10}",
                                                  with: "training: {epochs: 12, batch_size: 6, accumulate_steps: 3}")
        XCTAssertNotEqual(yaml, Self.yaml)
        let config = try writeConfig("accumulate.yaml", yaml)
        let uninterrupted = path("accumulate-uninterrupted")
        try train(np: 2, config: config, runDirectory: uninterrupted)
        let run = path("accumulate-preempted")
        let result = try interrupt(np: 2, config: config, run: run, signal: SIGUSR1, toOneRank: false)
        XCTAssertEqual(result.status, 75, "every rank exits 75 after its checkpoint:\n\(result.tail)")
        XCTAssertEqual(stepCheckpoints(run).count, 1)
        try train(np: 2, config: config, runDirectory: run, ["--resume"])
        XCTAssertEqual(try readTensors(run + "/model.safetensors"), try readTensors(uninterrupted + "/model.safetensors"),
                       "resumed after a stop inside an accumulation window: not bit-identical")
        XCTAssertEqual(Metrics(runDirectory: uninterrupted).values("val_loss"), Metrics(runDirectory: run).values("val_loss"))
    }

    func testSignalToOneRankStopsEveryRank() throws {
        let config = try writeConfig("preempt.yaml", Self.yaml)
        let run = path("one-rank")
        let result = try interrupt(np: 2, config: config, run: run, signal: SIGTERM, toOneRank: true)
        XCTAssertEqual(result.status, 75, "the flag rides the step's collective to every rank:\n\(result.tail)")
        XCTAssertTrue(result.output.contains("Preempted by another rank's signal"), "rank 0 had no signal of its own:\n\(result.tail)")
        XCTAssertEqual(stepCheckpoints(run).count, 1)
        let newest = try XCTUnwrap(CheckpointStore(runDirectory: run).newestValid().checkpoint)
        XCTAssertNotNil(newest.state.partialEpoch, "the newest valid checkpoint is the step checkpoint")
    }
}
