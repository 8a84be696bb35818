import Foundation
import XCTest
@testable import DDPCore

/// Decision tables for EarlyStopping, each row derived by hand from Keras 3's
/// keras.callbacks.EarlyStopping.on_epoch_end:
///
///     if epoch < start_from_epoch: return
///     if restore_best_weights and best_weights is None: snapshot; best_epoch = epoch
///     wait += 1
///     if is_improvement(v, best): best = v; best_epoch = epoch; snapshot if restore;
///                                 wait = 0 if baseline is None or is_improvement(v, baseline); return
///     if wait >= patience and epoch > 0: stop
///     is_improvement(v, ref) = v + |min_delta| < ref  (min)   |   v − |min_delta| > ref  (max)
final class EarlyStoppingTests: XCTestCase {

    /// One row: the monitored value at the end of the epoch and what must happen.
    struct Row {
        var value: Double
        var improved: Bool
        var stop: Bool
        var wait: Int
        var snapshot = false
    }

    private func row(_ value: Double, improved: Bool = false, stop: Bool = false, wait: Int, snapshot: Bool = false) -> Row {
        Row(value: value, improved: improved, stop: stop, wait: wait, snapshot: snapshot)
    }

    private func config(monitor: String = "val_loss", patience: Int = 0, minDelta: Double = 0,
                        mode: EarlyStoppingConfig.Mode = .auto, baseline: Double? = nil,
                        restore: Bool = false, startFrom: Int = 0) -> EarlyStoppingConfig {
        var config = EarlyStoppingConfig()
        config.monitor = monitor
        config.patience = patience
        config.minDelta = minDelta
        config.mode = mode
        config.baseline = baseline
        config.restoreBestWeights = restore
        config.startFromEpoch = startFrom
        return config
    }

    /// Feeds the table epoch by epoch (0-based) and checks every row. Returns the final state.
    @discardableResult
    private func run(_ config: EarlyStoppingConfig, _ table: [Row], file: StaticString = #filePath, line: UInt = #line) throws -> EarlyStopping {
        var stopping = try EarlyStopping(config: config)
        for (epoch, expected) in table.enumerated() {
            let decision = stopping.update(epoch: epoch, value: expected.value)
            let where_ = "epoch \(epoch), value \(expected.value)"
            XCTAssertEqual(decision.improved, expected.improved, "improved at \(where_)", file: file, line: line)
            XCTAssertEqual(decision.stop, expected.stop, "stop at \(where_)", file: file, line: line)
            XCTAssertEqual(decision.snapshot, expected.snapshot, "snapshot at \(where_)", file: file, line: line)
            XCTAssertEqual(stopping.wait, expected.wait, "wait after \(where_)", file: file, line: line)
            XCTAssertEqual(stopping.stoppedEpoch, expected.stop ? epoch : nil, "stoppedEpoch after \(where_)", file: file, line: line)
        }
        return stopping
    }

    func testPatience() throws {
        // patience 2, val_loss (min)
        let stopping = try run(config(patience: 2), [
            row(1.0, improved: true, wait: 0),      // inf → 1.0
            row(0.8, improved: true, wait: 0),
            row(0.9, wait: 1),                      // 1 < 2
            row(0.85, stop: true, wait: 2),         // still not below 0.8; 2 ≥ 2
        ])
        XCTAssertEqual(stopping.best, 0.8)
        XCTAssertEqual(stopping.bestEpoch, 1)
    }

    func testPatienceZeroStopsAtFirstNonImprovement() throws {
        try run(config(patience: 0), [
            row(3, improved: true, wait: 0),
            row(2, improved: true, wait: 0),
            row(2, stop: true, wait: 1),            // equal is not an improvement
        ])
    }

    func testMinDeltaInMinMode() throws {
        // min_delta 0.1, patience 3: an improvement must go below best − 0.1.
        let stopping = try run(config(patience: 3, minDelta: 0.1), [
            row(1.0, improved: true, wait: 0),
            row(0.95, wait: 1),                     // 0.95 + 0.1 = 1.05, not < 1.0
            row(0.89, improved: true, wait: 0),     // 0.99 < 1.0
            row(0.93, wait: 1),                     // worse than best, whatever the delta
            row(0.80, wait: 2),                     // 0.90 not < 0.89
            row(0.795, stop: true, wait: 3),        // 0.895 not < 0.89; 3 ≥ 3
        ])
        XCTAssertEqual(stopping.best, 0.89)
        XCTAssertEqual(stopping.bestEpoch, 2)
    }

    func testMinDeltaSignIsIgnored() throws {
        // Keras takes abs(min_delta).
        try run(config(patience: 1, minDelta: -0.1), [
            row(1.0, improved: true, wait: 0),
            row(0.95, stop: true, wait: 1),
        ])
    }

    func testMinDeltaInMaxMode() throws {
        // val_accuracy resolves to max; min_delta 0.05, patience 2: must exceed best + 0.05.
        let stopping = try run(config(monitor: "val_accuracy", patience: 2, minDelta: 0.05), [
            row(0.50, improved: true, wait: 0),     // 0.45 > −inf
            row(0.53, wait: 1),                     // 0.48 not > 0.50
            row(0.56, improved: true, wait: 0),     // 0.51 > 0.50
            row(0.60, wait: 1),                     // 0.55 not > 0.56
            row(0.62, improved: true, wait: 0),     // 0.57 > 0.56
            row(0.64, wait: 1),                     // 0.59 not > 0.62
            row(0.65, stop: true, wait: 2),         // 0.60 not > 0.62; 2 ≥ 2
        ])
        XCTAssertEqual(stopping.best, 0.62)
        XCTAssertEqual(stopping.bestEpoch, 4)
    }

    func testBaselineDoesNotResetWaitUntilBeaten() throws {
        // min mode, baseline 0.5, patience 2: improvements above the baseline keep counting.
        try run(config(patience: 2, baseline: 0.5), [
            row(0.9, improved: true, wait: 1),      // improves best, not the baseline
            row(0.8, improved: true, wait: 2),      // an improvement never stops, even with wait ≥ patience
            row(0.7, improved: true, wait: 3),
            row(0.6, improved: true, wait: 4),
            row(0.4, improved: true, wait: 0),      // beats the baseline: reset
            row(0.45, wait: 1),
            row(0.42, stop: true, wait: 2),
        ])
    }

    func testBaselineNeverBeatenStopsAtFirstNonImprovementPastPatience() throws {
        try run(config(patience: 3, baseline: 0.5), [
            row(0.9, improved: true, wait: 1),
            row(0.8, improved: true, wait: 2),
            row(0.85, stop: true, wait: 3),
        ])
    }

    func testBaselineInMaxMode() throws {
        try run(config(monitor: "accuracy", patience: 1, baseline: 0.7), [
            row(0.6, improved: true, wait: 1),      // below the 0.7 baseline
            row(0.75, improved: true, wait: 0),     // beats it
            row(0.74, stop: true, wait: 1),
        ])
    }

    func testModes() throws {
        XCTAssertTrue(try config(monitor: "val_loss").minimizes())
        XCTAssertTrue(try config(monitor: "loss").minimizes())
        XCTAssertFalse(try config(monitor: "val_accuracy").minimizes())
        XCTAssertFalse(try config(monitor: "accuracy").minimizes())
        XCTAssertFalse(try config(monitor: "val_acc").minimizes())
        XCTAssertTrue(try config(monitor: "val_accuracy", mode: .min).minimizes())
        XCTAssertFalse(try config(monitor: "val_loss", mode: .max).minimizes())
        assertDDPError(.config, containing: ["val_f1", "early_stopping.mode"]) { try EarlyStopping(config: self.config(monitor: "val_f1")) }
        XCTAssertNoThrow(try EarlyStopping(config: config(monitor: "val_f1", mode: .max)))

        // Explicit max on a loss: rising values are the improvements.
        try run(config(monitor: "val_loss", patience: 0, mode: .max), [
            row(1.0, improved: true, wait: 0),
            row(2.0, improved: true, wait: 0),
            row(1.5, stop: true, wait: 1),
        ])
        // Initial best is +inf for min and −inf for max.
        XCTAssertEqual(try EarlyStopping(config: config()).best, .infinity)
        XCTAssertEqual(try EarlyStopping(config: config(monitor: "val_accuracy")).best, -.infinity)
    }

    func testStartFromEpoch() throws {
        // The first two epochs are ignored entirely: their good values never become `best`.
        let stopping = try run(config(patience: 0, startFrom: 2), [
            row(0.1, wait: 0),
            row(0.2, wait: 0),
            row(0.9, improved: true, wait: 0),
            row(0.8, improved: true, wait: 0),
            row(0.85, stop: true, wait: 1),
        ])
        XCTAssertEqual(stopping.best, 0.8)
    }

    func testStopNeedsEpochAboveZero() throws {
        // patience 0 and no improvement at epoch 0 (NaN never improves): wait 1 ≥ 0, but epoch 0 never stops.
        try run(config(patience: 0), [
            row(.nan, wait: 1),
            row(.nan, stop: true, wait: 2),
        ])
        // The rule is on the epoch number itself, not on the first counted epoch.
        try run(config(patience: 0, startFrom: 1), [
            row(.nan, wait: 0),
            row(.nan, stop: true, wait: 1),
        ])
    }

    func testRestoreBestWeightsSnapshots() throws {
        let stopping = try run(config(patience: 2, restore: true), [
            row(1.0, improved: true, wait: 0, snapshot: true),
            row(0.8, improved: true, wait: 0, snapshot: true),
            row(0.9, wait: 1),
            row(0.95, stop: true, wait: 2),
        ])
        XCTAssertEqual(stopping.bestEpoch, 1)
        XCTAssertTrue(stopping.hasSnapshot)
    }

    func testRestoreBestWeightsTakesFirstSnapshotEvenWithoutImprovement() throws {
        // Keras: "if best weights were never set, the current weights are the best".
        var stopping = try run(config(patience: 5, restore: true), [
            row(.nan, wait: 1, snapshot: true),
            row(.nan, wait: 2),
            row(0.5, improved: true, wait: 0, snapshot: true),
        ])
        XCTAssertEqual(stopping.bestEpoch, 2)
        // And the first snapshot waits for start_from_epoch.
        stopping = try run(config(patience: 5, restore: true, startFrom: 2), [
            row(0.3, wait: 0),
            row(0.2, wait: 0),
            row(0.9, improved: true, wait: 0, snapshot: true),
        ])
        XCTAssertEqual(stopping.bestEpoch, 2)
        // Without restore_best_weights there is never a snapshot.
        stopping = try run(config(patience: 5), [row(1, improved: true, wait: 0), row(0.5, improved: true, wait: 0)])
        XCTAssertFalse(stopping.hasSnapshot)
    }

    func testNeverTriggers() throws {
        // patience 3 with an improvement at least every third epoch: wait peaks at 2.
        let values = [5, 5.1, 5.2, 4.9, 5.0, 5.3, 4.8, 4.85, 4.9, 4.7]
        var stopping = try EarlyStopping(config: config(patience: 3))
        var waits: [Int] = []
        for (epoch, value) in values.enumerated() {
            XCTAssertFalse(stopping.update(epoch: epoch, value: value).stop, "epoch \(epoch)")
            waits.append(stopping.wait)
        }
        XCTAssertEqual(waits, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
        XCTAssertNil(stopping.stoppedEpoch)
        XCTAssertEqual(stopping.best, 4.7)
        XCTAssertEqual(stopping.bestEpoch, 9)
    }
}
