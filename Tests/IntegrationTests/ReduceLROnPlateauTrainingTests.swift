import DDPCore
import Foundation
import XCTest

/// `schedule: {type: reduce_on_plateau}` under a real mpirun: rank 0 decides and broadcasts the
/// lr, so every rank trains with it; the state rides the checkpoints, so a resume reduces on
/// the same epochs.
final class ReduceLROnPlateauTrainingTests: IntegrationTestCase {
    /// The training loss falls by less than min_delta = 0.02 an epoch within a few epochs, so
    /// the lr halves (patience 1) every other epoch (cooldown 2: Keras counts the epoch whose
    /// start ends the cooldown), down to min_lr. 160 training samples, batch 32: 5 steps an epoch.
    static let yaml = """
        seed: 5
        data:
          train: {format: moons, samples: 200, noise: 0.25}
          validation_split: 0.2
          normalize: standardize
        model:
          inputs: 2
          layers:
            - {type: dense, units: 16, activation: relu}
            - {type: dropout, rate: 0.1}
            - {type: dense, units: 2}
        loss: cross_entropy
        optimizer: {type: adam, lr: 0.02}
        schedule: {type: reduce_on_plateau, monitor: loss, factor: 0.5, patience: 1, min_delta: 0.02, cooldown: 2, min_lr: 0.002}
        training: {epochs: 12, batch_size: 32}
        checkpoint: {every_epochs: 1, keep: 20}
        """

    /// The lr each epoch trained with, as metrics.jsonl logs it, replayed from the logged losses
    /// through the rule (checked against Keras in ReduceLROnPlateauTests): epoch e + 1 trains
    /// with the lr decided at the end of epoch e.
    private func expectedLearningRates(losses: [Double?]) throws -> [Float] {
        let parsed = try TrainingConfig.parse(yaml: Self.yaml)
        guard case let .reduceOnPlateau(config) = parsed.schedule.kind else { throw XCTSkip("not a plateau schedule") }
        var plateau = ReduceLROnPlateau(config: config, learningRate: parsed.optimizer.learningRate)
        var rates: [Float] = []
        for loss in losses {
            rates.append(plateau.learningRate)
            _ = plateau.update(value: try XCTUnwrap(loss))
        }
        return rates
    }

    /// np=2 and one process: the lr drops on the epochs the rule says, the same on both, and the
    /// weights agree within 1e-5. Under the sharded update each rank applies the optimizer with
    /// its own lr to its half of the parameters, so a rank that missed a reduction would leave
    /// its half off the one-process model by far more than that.
    func testLearningRateDropsTheSameOnEveryRank() throws {
        let config = try writeConfig("plateau.yaml", Self.yaml)
        let one = path("np1"), two = path("np2")
        try train(np: nil, config: config, runDirectory: one)
        try train(np: 2, config: config, runDirectory: two)
        let metricsOne = Metrics(runDirectory: one), metricsTwo = Metrics(runDirectory: two)
        // Each Float lr as a Double, read back by JSONSerialization (which may miss its last digit): back to Float it is exact.
        let rates = metricsTwo.values("lr").compactMap { $0.map(Float.init) }
        XCTAssertEqual(rates.count, 12)
        XCTAssertEqual(rates.first, 0.02)
        XCTAssertGreaterThanOrEqual(Set(rates).count, 3, "the lr should drop at least twice: \(rates)")
        XCTAssertEqual(rates.last, 0.002, "the lr should reach min_lr: \(rates)")
        XCTAssertEqual(rates, try expectedLearningRates(losses: metricsTwo.values("loss")), "np=2 lr against the rule on its losses")
        XCTAssertEqual(metricsOne.values("lr"), metricsTwo.values("lr"), "np=1 and np=2 reduced on different epochs")
        assertTensorsClose(try readTensors(one + "/model.safetensors"), try readTensors(two + "/model.safetensors"),
                           tolerance: 1e-5, "np=2 vs one process under reduce_on_plateau")
    }

    /// Stopped right after the first reduction (so the next epoch is in cooldown with the
    /// reduced lr) and resumed: the same lr sequence and bit-identical weights on np=2.
    func testResumeContinuesTheReductions() throws {
        let config = try writeConfig("plateau.yaml", Self.yaml)
        let straight = path("straight"), interrupted = path("interrupted")
        try train(np: 2, config: config, runDirectory: straight)
        let straightMetrics = Metrics(runDirectory: straight)
        let rates = straightMetrics.values("lr").compactMap { $0 }
        // The epoch (1-based) at whose end the lr was first reduced.
        let firstReduction = try XCTUnwrap(rates.firstIndex { $0 < rates[0] }, "no reduction in \(rates)")
        XCTAssertLessThan(firstReduction, 10, "the first reduction came too late to test a resume after it")

        try train(np: 2, config: config, runDirectory: interrupted, ["--set", "training.epochs=\(firstReduction)"])
        let stateData = try XCTUnwrap(FileManager.default.contents(atPath: interrupted + String(format: "/checkpoints/epoch-%04d.json", firstReduction)))
        let state = try CheckpointState.decoded(from: stateData)
        let saved = try XCTUnwrap(state.plateau, "the checkpoint holds no plateau state")
        XCTAssertEqual(Float(saved.learningRate), Float(rates[firstReduction]), "the checkpoint's lr is the next epoch's")
        XCTAssertEqual(saved.cooldownCounter, 2, "the checkpoint was written at the start of a cooldown")

        try train(np: 2, config: config, runDirectory: interrupted, ["--resume", "--set", "training.epochs=12"])
        let resumedMetrics = Metrics(runDirectory: interrupted)
        XCTAssertEqual(resumedMetrics.epochNumbers(), Array(1...12))
        XCTAssertEqual(resumedMetrics.values("lr"), straightMetrics.values("lr"), "the lr sequence after resume")
        XCTAssertEqual(resumedMetrics.values("loss"), straightMetrics.values("loss"), "per-epoch losses after resume")
        let straightBytes = try XCTUnwrap(FileManager.default.contents(atPath: straight + "/model.safetensors"))
        let resumedBytes = try XCTUnwrap(FileManager.default.contents(atPath: interrupted + "/model.safetensors"))
        XCTAssertEqual(straightBytes, resumedBytes, "\(firstReduction) + \(12 - firstReduction) epochs on np=2 is not bit-identical to 12")
    }

    /// Bad settings stop `ddp train` before MPI work, with one message naming the key.
    func testBadSettingsAreConfigErrors() throws {
        let config = try writeConfig("plateau.yaml", Self.yaml)
        let cases: [(String, String)] = [
            ("schedule.factor=1.0", "schedule.factor"),
            ("schedule.patience=-1", "schedule.patience"),
            ("schedule.mode=maximum", "schedule.mode"),
            ("schedule.monitor=val_loss", "no validation data"),
        ]
        for (setting, message) in cases {
            var arguments = ["train", config, "--run-dir", path("bad"), "--quiet", "--set", setting]
            if setting.hasPrefix("schedule.monitor") { arguments += ["--set", "data.validation_split=0"] }
            let result = try runDDP(np: 2, arguments)
            XCTAssertEqual(result.status, 1, "\(setting): \(result.tail)")
            XCTAssertTrue(result.tail.contains(message), "\(setting): the error does not name \(message): \(result.tail)")
        }
    }
}
