import DDPCore
import Foundation
import XCTest

/// A run directory belongs to one run: a fresh run never mixes with an older one, and
/// `--resume` continues only the run the checkpoint came from.
final class RunDirectoryTests: IntegrationTestCase {
    func testFreshRunRefusesADirectoryHoldingARunAndOverwriteReplacesIt() throws {
        let config = try writeConfig("run.yaml", DistributedTrainingTests.resumeYAML)
        let run = path("run")
        try train(np: 2, config: config, runDirectory: run, ["--set", "training.epochs=4"])
        let before = try readTensors(run + "/model.safetensors")

        let refused = try runDDP(np: 2, ["train", config, "--run-dir", run, "--quiet"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("already holds a run"), refused.tail)
        XCTAssertEqual(try readTensors(run + "/model.safetensors"), before, "a refused run must not touch the old one")

        try train(np: 2, config: config, runDirectory: run, ["--overwrite", "--set", "training.epochs=2"])
        let metrics = Metrics(runDirectory: run)
        XCTAssertEqual(metrics.epochNumbers(), [1, 2], "the old run's epochs are gone")
        let stems = try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints").filter { $0.hasSuffix(".json") }.sorted()
        XCTAssertEqual(stems, ["epoch-0001.json", "epoch-0002.json"], "only the new run's checkpoints remain")
    }

    func testResumeRefusesACheckpointFromAnotherSeed() throws {
        let config = try writeConfig("run.yaml", DistributedTrainingTests.resumeYAML)
        let run = path("run")
        try train(np: nil, config: config, runDirectory: run, ["--set", "training.epochs=2"])
        let result = try runDDP(np: nil, ["train", config, "--run-dir", run, "--resume", "--quiet", "--set", "seed=22"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("seed 21") && result.output.contains("22"), result.tail)
    }

    func testResumingAnEarlyStoppedRunTrainsNoMore() throws {
        let config = try writeConfig("stop.yaml", DistributedTrainingTests.earlyStoppingYAML)
        let run = path("stop")
        try train(np: 2, config: config, runDirectory: run)
        let first = Metrics(runDirectory: run)
        XCTAssertEqual(first.endString("reason"), "early_stopping")
        let model = try readTensors(run + "/model.safetensors")

        try train(np: 2, config: config, runDirectory: run, ["--resume"])
        let second = Metrics(runDirectory: run)
        XCTAssertEqual(second.epochNumbers(), first.epochNumbers(), "no epoch trained after the stop")
        XCTAssertEqual(second.endString("reason"), "early_stopping")
        XCTAssertEqual(second.endInt("best_epoch"), first.endInt("best_epoch"))
        XCTAssertEqual(try readTensors(run + "/model.safetensors"), model, "the same restored best weights")
    }
}
