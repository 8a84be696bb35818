import Foundation
import XCTest
@testable import DDPCore

/// ReduceLROnPlateau against Keras 3's rule (keras/src/callbacks/reduce_lr_on_plateau.py).
/// The tables are worked out by hand from `on_epoch_end`; the random sequences are replayed
/// through `KerasRule` below, a line-for-line transcription of that method written apart from
/// the code under test. Values are multiples of 1/8 so that `best − min_delta` is exact and the
/// tables' ties are real ties.
final class ReduceLROnPlateauTests: XCTestCase {

    private func config(monitor: String = "val_loss", factor: Double = 0.5, patience: Int = 1, mode: ReduceLROnPlateauConfig.Mode = .auto,
                        minDelta: Double = 0, cooldown: Int = 0, minLR: Double = 0) -> ReduceLROnPlateauConfig {
        var config = ReduceLROnPlateauConfig()
        config.monitor = monitor
        config.factor = factor
        config.patience = patience
        config.mode = mode
        config.minDelta = minDelta
        config.cooldown = cooldown
        config.minLearningRate = minLR
        return config
    }

    /// One epoch: the monitored value, then the lr the next epoch trains with and the counters.
    struct Row {
        var value: Double
        var lr: Float
        var wait: Int
        var cooldown = 0
    }

    @discardableResult
    private func replay(_ config: ReduceLROnPlateauConfig, lr: Float, _ table: [Row],
                        file: StaticString = #filePath, line: UInt = #line) -> ReduceLROnPlateau {
        var plateau = ReduceLROnPlateau(config: config, learningRate: lr)
        var previous = lr
        for (epoch, row) in table.enumerated() {
            let reduced = plateau.update(value: row.value)
            let at = "epoch \(epoch + 1), value \(row.value)"
            XCTAssertEqual(plateau.learningRate, row.lr, "lr after \(at)", file: file, line: line)
            XCTAssertEqual(plateau.wait, row.wait, "wait after \(at)", file: file, line: line)
            XCTAssertEqual(plateau.cooldownCounter, row.cooldown, "cooldown counter after \(at)", file: file, line: line)
            XCTAssertEqual(reduced, row.lr != previous ? row.lr : nil, "reported reduction at \(at)", file: file, line: line)
            previous = row.lr
        }
        return plateau
    }

    func testKerasDefaults() {
        let defaults = ReduceLROnPlateauConfig()
        XCTAssertEqual(defaults.monitor, "val_loss")
        XCTAssertEqual(defaults.factor, 0.1)
        XCTAssertEqual(defaults.patience, 10)
        XCTAssertEqual(defaults.mode, .auto)
        XCTAssertEqual(defaults.minDelta, 1e-4)
        XCTAssertEqual(defaults.cooldown, 0)
        XCTAssertEqual(defaults.minLearningRate, 0)
    }

    /// Auto mode: max when "acc" is in the monitor's name, else min.
    func testAutoMode() {
        XCTAssertTrue(config(monitor: "loss").minimizes)
        XCTAssertTrue(config(monitor: "val_loss").minimizes)
        XCTAssertFalse(config(monitor: "accuracy").minimizes)
        XCTAssertFalse(config(monitor: "val_accuracy").minimizes)
        XCTAssertFalse(config(monitor: "val_loss", mode: .max).minimizes)
        XCTAssertTrue(config(monitor: "accuracy", mode: .min).minimizes)
    }

    /// Patience 2: two epochs without improvement, then the lr halves and wait restarts at 0.
    /// An equal value is no improvement (strict less-than).
    func testPatience() {
        replay(config(patience: 2), lr: 1, [
            Row(value: 1.0, lr: 1, wait: 0),      // best = 1.0
            Row(value: 0.875, lr: 1, wait: 0),    // best = 0.875
            Row(value: 0.875, lr: 1, wait: 1),    // a tie: not below best
            Row(value: 0.875, lr: 0.5, wait: 0),  // wait 2 ≥ 2: reduce, wait = 0
            Row(value: 0.875, lr: 0.5, wait: 1),
            Row(value: 0.75, lr: 0.5, wait: 0),   // improvement resets wait
            Row(value: 0.875, lr: 0.5, wait: 1),
            Row(value: 1.0, lr: 0.25, wait: 0),
        ])
    }

    /// min_delta 0.25: a value must lie below best − 0.25 to count; exactly best − 0.25 does not.
    func testMinDelta() {
        let first = Float(Double(Float(1)) * 0.1)
        let second = Float(Double(first) * 0.1)
        replay(config(factor: 0.1, minDelta: 0.25), lr: 1, [
            Row(value: 1.0, lr: 1, wait: 0),           // below +∞ − 0.25
            Row(value: 0.75, lr: first, wait: 0),      // 0.75 < 0.75 is false: wait 1 ≥ 1, reduce
            Row(value: 0.625, lr: first, wait: 0),     // below 0.75: best = 0.625
            Row(value: 0.5, lr: second, wait: 0),      // 0.5 < 0.375 is false: reduce again
            Row(value: 0.25, lr: second, wait: 0),     // below 0.375: best = 0.25
        ])
    }

    /// Cooldown 2: the epoch after a reduction is in cooldown (counter 2 → 1, nothing counts);
    /// the next one brings the counter to 0 before the test, so it counts at once. An
    /// improvement during a cooldown still becomes the best.
    func testCooldown() {
        let plateau = replay(config(cooldown: 2), lr: 1, [
            Row(value: 1.0, lr: 1, wait: 0),
            Row(value: 2.0, lr: 0.5, wait: 0, cooldown: 2),     // reduce; cooldown = 2
            Row(value: 2.0, lr: 0.5, wait: 0, cooldown: 1),     // counter 2 → 1: in cooldown
            Row(value: 2.0, lr: 0.25, wait: 0, cooldown: 2),    // counter 1 → 0: counts, wait 1 ≥ 1
            Row(value: 2.0, lr: 0.25, wait: 0, cooldown: 1),
            Row(value: 2.0, lr: 0.125, wait: 0, cooldown: 2),
            Row(value: 0.5, lr: 0.125, wait: 0, cooldown: 1),   // improvement inside the cooldown
            Row(value: 0.625, lr: 0.0625, wait: 0, cooldown: 2),
            Row(value: 2.0, lr: 0.0625, wait: 0, cooldown: 1),
        ])
        XCTAssertEqual(plateau.best, 0.5)
    }

    /// min_lr 0.003 from lr 0.1, factor 0.1: 0.1 → 0.01 → max(0.001, 0.003) = 0.003, then no
    /// more: Keras compares the float32 lr with float32(min_lr), equal here, so nothing happens,
    /// and wait keeps growing with no new cooldown. (Compared in float64, float32(0.003) =
    /// 0.0030000000260770321 > 0.003 would "reduce" again and reset wait.)
    func testMinLearningRateStopsTheReductions() {
        let start = Float(0.1)
        let once = Float(Double(start) * 0.1)
        let floor = Float(0.003)
        replay(config(factor: 0.1, cooldown: 1, minLR: 0.003), lr: start, [
            Row(value: 1.0, lr: start, wait: 0),
            Row(value: 1.0, lr: once, wait: 0, cooldown: 1),
            Row(value: 1.0, lr: floor, wait: 0, cooldown: 1),   // counter 1 → 0 first, then wait 1 ≥ 1: reduce
            Row(value: 1.0, lr: floor, wait: 1, cooldown: 0),   // float32 lr == float32(min_lr): no reduction
            Row(value: 1.0, lr: floor, wait: 2, cooldown: 0),
            Row(value: 1.0, lr: floor, wait: 3, cooldown: 0),
        ])
    }

    /// Max mode (auto on val_accuracy): a value must exceed best + min_delta.
    func testMaximizedMonitor() {
        replay(config(monitor: "val_accuracy", minDelta: 0.125), lr: 1, [
            Row(value: 0.5, lr: 1, wait: 0),
            Row(value: 0.625, lr: 0.5, wait: 0),    // 0.625 > 0.625 is false
            Row(value: 0.75, lr: 0.5, wait: 0),     // > 0.625: best = 0.75
            Row(value: 0.75, lr: 0.25, wait: 0),
            Row(value: 0.875, lr: 0.125, wait: 0),  // 0.875 > 0.875 is false
        ])
    }

    /// Patience 0 reduces on every epoch that does not improve; factor 0 drops to min_lr at once.
    func testPatienceZeroAndFactorZero() {
        replay(config(factor: 0, patience: 0, minLR: 0.25), lr: 1, [
            Row(value: 1.0, lr: 1, wait: 0),
            Row(value: 1.0, lr: 0.25, wait: 0),
            Row(value: 1.0, lr: 0.25, wait: 1),    // at min_lr: wait counts, nothing changes
        ])
    }

    /// Random configurations and monitored sequences, against the transcription of Keras.
    func testRandomSequencesAgainstTheKerasRule() {
        var random = TestRandom(seed: 2026)
        for trial in 0..<300 {
            let factors = [0.0, 0.1, 0.2, 0.5, 0.9]
            let config = config(monitor: random.next() & 1 == 0 ? "val_loss" : "val_accuracy",
                                factor: factors[Int(random.next() % 5)],
                                patience: Int(random.next() % 4),
                                mode: [.auto, .min, .max][Int(random.next() % 3)],
                                minDelta: [0, 1e-4, 0.125][Int(random.next() % 3)],
                                cooldown: Int(random.next() % 3),
                                minLR: [0, 1e-4, 0.003, 0.02][Int(random.next() % 4)])
            let initial = [Float(0.1), 0.01, 1e-3, 0.05][Int(random.next() % 4)]
            var plateau = ReduceLROnPlateau(config: config, learningRate: initial)
            var keras = KerasRule(config: config, learningRate: initial)
            var reductions = 0
            for epoch in 0..<40 {
                // Eight levels with a drift, so improvements, ties and plateaus all occur.
                let value = Double(random.next() % 8) / 8 + (config.minimizes ? -1 : 1) * Double(epoch) / 64
                let before = plateau.learningRate
                _ = plateau.update(value: value)
                keras.onEpochEnd(current: value)
                if plateau.learningRate != before { reductions += 1 }
                let at = "trial \(trial), epoch \(epoch + 1), \(config)"
                XCTAssertEqual(plateau.learningRate, keras.learningRate, "lr at \(at)")
                XCTAssertEqual(plateau.wait, keras.wait, "wait at \(at)")
                XCTAssertEqual(plateau.cooldownCounter, keras.cooldownCounter, "cooldown at \(at)")
                XCTAssertEqual(plateau.best, keras.best, "best at \(at)")
            }
            if trial == 0 { XCTAssertGreaterThan(reductions, 0, "the first trial never reduced: the test would prove little") }
        }
    }

    /// Stopping after any epoch and resuming from the checkpoint's JSON continues exactly.
    func testCheckpointStateResumesTheSameSequence() throws {
        let config = config(factor: 0.2, patience: 2, minDelta: 0.125, cooldown: 1, minLR: 1e-4)
        let values: [Double] = [1, 0.875, 0.875, 0.875, 0.5, 0.5, 0.5, 0.5, 0.375, 0.5, 0.5, 0.5, 0.5]
        var straight = ReduceLROnPlateau(config: config, learningRate: 0.01)
        let expected = values.map { value -> Float in _ = straight.update(value: value); return straight.learningRate }
        XCTAssertLessThan(expected.last!, 0.01, "the sequence never reduced the lr")
        for stop in 0...values.count {
            var first = ReduceLROnPlateau(config: config, learningRate: 0.01)
            for value in values[..<stop] { _ = first.update(value: value) }
            let state = CheckpointState(epoch: stop, globalStep: 0, optimizerStep: 0, seed: 1, ranks: 1, globalBatch: 1,
                                        monitor: .init(wait: 0, best: 0, bestEpoch: 0, stoppedEpoch: nil, hasSnapshot: false),
                                        tensorsFile: "", tensorsBytes: 0, tensorsChecksum: "", partialEpoch: nil,
                                        plateau: first.state)
            let decoded = try CheckpointState.decoded(from: try state.encoded())
            XCTAssertEqual(decoded, state, "after \(stop) epochs")
            var resumed = ReduceLROnPlateau(config: config, learningRate: 0.01)
            resumed.restore(try XCTUnwrap(decoded.plateau))
            XCTAssertEqual(resumed, first, "restored state after \(stop) epochs")
            for (index, value) in values[stop...].enumerated() {
                _ = resumed.update(value: value)
                XCTAssertEqual(resumed.learningRate, expected[stop + index], "resumed after \(stop): epoch \(stop + index + 1)")
            }
        }
    }

    /// A checkpoint written before reduce_on_plateau existed has no "plateau" key.
    func testOlderCheckpointWithoutPlateauDecodes() throws {
        let state = CheckpointState(epoch: 1, globalStep: 2, optimizerStep: 2, seed: 1, ranks: 1, globalBatch: 4,
                                    monitor: .init(wait: 0, best: 1, bestEpoch: 0, stoppedEpoch: nil, hasSnapshot: false),
                                    tensorsFile: "a", tensorsBytes: 1, tensorsChecksum: "x", partialEpoch: nil)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: try state.encoded()) as? [String: Any])
        XCTAssertNil(object["plateau"], "a nil plateau is left out, as in older files")
        XCTAssertEqual(try CheckpointState.decoded(from: JSONSerialization.data(withJSONObject: object)), state)
    }

    // MARK: Config

    private let base = """
        seed: 7
        data:
          train: {format: moons, samples: 64, noise: 0.1}
          validation_split: 0.25
        model:
          inputs: 2
          layers:
            - {type: dense, units: 2}
        loss: cross_entropy
        optimizer: {type: sgd, lr: 0.05}
        training: {epochs: 3, batch_size: 16}
        """

    func testParsesTheSchedule() throws {
        var config = try TrainingConfig.parse(yaml: base + "\nschedule: {type: reduce_on_plateau}")
        XCTAssertEqual(config.schedule, LearningRateSchedule(kind: .reduceOnPlateau(ReduceLROnPlateauConfig())))
        config = try TrainingConfig.parse(yaml: base + """

            schedule: {type: reduce_on_plateau, monitor: accuracy, factor: 0.2, patience: 3, mode: max,
                       min_delta: 0.01, cooldown: 2, min_lr: 1.0e-5, warmup_steps: 4}
            """)
        let expected = self.config(monitor: "accuracy", factor: 0.2, patience: 3, mode: .max, minDelta: 0.01, cooldown: 2, minLR: 1e-5)
        XCTAssertEqual(config.schedule, LearningRateSchedule(kind: .reduceOnPlateau(expected), warmupSteps: 4))
        XCTAssertEqual(config.schedule.learningRate(base: 0.5, epoch: 3, globalStep: 2, stepsPerEpoch: 10), 0.25, "warmup climbs to the plateau's lr")
    }

    func testBadSettings() {
        let cases: [(String, [String])] = [
            ("factor: 1", ["schedule.factor", "factor ≥ 1"]),
            ("factor: 1.5", ["schedule.factor", "factor ≥ 1"]),
            ("factor: -0.5", ["schedule.factor", "[0, 1)"]),
            ("patience: -1", ["schedule.patience", "≥ 0"]),
            ("cooldown: -2", ["schedule.cooldown", "≥ 0"]),
            ("min_lr: -1.0e-3", ["schedule.min_lr", "≥ 0"]),
            ("min_delta: -0.1", ["schedule.min_delta", "≥ 0"]),
            ("mode: maximum", ["schedule.mode", "'maximum'", "auto, min, max"]),
            ("monitor: val_f1", ["schedule.monitor", "'val_f1'"]),
            ("t_max: 3", ["unknown key 'schedule.t_max'"]),
        ]
        for (setting, parts) in cases {
            assertDDPError(.config, containing: parts) {
                try TrainingConfig.parse(yaml: self.base + "\nschedule: {type: reduce_on_plateau, \(setting)}")
            }
        }
        let noValidation = base.replacingOccurrences(of: "  validation_split: 0.25\n", with: "")
        assertDDPError(.config, containing: ["schedule.monitor", "val_loss", "no validation data"]) {
            try TrainingConfig.parse(yaml: noValidation + "\nschedule: {type: reduce_on_plateau}")
        }
        XCTAssertNoThrow(try TrainingConfig.parse(yaml: noValidation + "\nschedule: {type: reduce_on_plateau, monitor: loss}"))
        let mse = base.replacingOccurrences(of: "loss: cross_entropy", with: "loss: mse")
        assertDDPError(.config, containing: ["schedule.monitor", "accuracy", "mse"]) {
            try TrainingConfig.parse(yaml: mse + "\nschedule: {type: reduce_on_plateau, monitor: val_accuracy}")
        }
    }
}

/// keras.callbacks.ReduceLROnPlateau.on_epoch_end, transcribed: Python floats are Doubles, the
/// optimizer's float32 lr variable is a Float.
private struct KerasRule {
    let factor: Double, minLR: Double, minDelta: Double
    let patience: Int, cooldown: Int
    let isMin: Bool
    var learningRate: Float
    var cooldownCounter = 0
    var wait = 0
    var best: Double

    init(config: ReduceLROnPlateauConfig, learningRate: Float) {
        factor = config.factor
        minLR = config.minLearningRate
        minDelta = config.minDelta
        patience = config.patience
        cooldown = config.cooldown
        // self.mode == "min" or (self.mode == "auto" and "acc" not in self.monitor)
        isMin = config.mode == .min || (config.mode == .auto && config.monitor.range(of: "acc") == nil)
        best = isMin ? .infinity : -.infinity
        self.learningRate = learningRate
    }

    func monitorOp(_ a: Double, _ b: Double) -> Bool { isMin ? a < b - minDelta : a > b + minDelta }
    var inCooldown: Bool { cooldownCounter > 0 }

    mutating func onEpochEnd(current: Double) {
        if inCooldown {
            cooldownCounter -= 1
            wait = 0
        }
        if monitorOp(current, best) {
            best = current
            wait = 0
        } else if !inCooldown {
            wait += 1
            if wait >= patience {
                let oldLR = Double(learningRate)                  // float(optimizer.learning_rate)
                if oldLR > Double(Float(minLR)) {                 // old_lr > np.float32(self.min_lr)
                    var newLR = oldLR * factor
                    newLR = Swift.max(newLR, minLR)
                    learningRate = Float(newLR)                   // assigned to the float32 variable
                    cooldownCounter = cooldown
                    wait = 0
                }
            }
        }
    }
}
