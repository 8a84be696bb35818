import Foundation
import XCTest
@testable import DDPCore

/// Learning-rate schedules as pure functions of (epoch, step): step decay, cosine, warmup.
final class ScheduleTests: XCTestCase {
    func testStepSchedule() {
        let schedule = LearningRateSchedule(kind: .step(stepSize: 2, gamma: 0.5))
        let expected: [Double] = [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125]
        for (epoch, lr) in expected.enumerated() {
            XCTAssertEqual(Double(schedule.learningRate(base: 0.1, epoch: epoch, globalStep: epoch * 10)), lr, accuracy: 1e-8, "epoch \(epoch)")
        }
    }

    func testCosineSchedule() {
        let schedule = LearningRateSchedule(kind: .cosine(tMax: 10, minimum: 0.001))
        // η_min + (lr₀ − η_min)(1 + cos(π e/T))/2: e = 0 → 0.1, e = 2 → 0.0905463, e = 5 → 0.0505, e = 10 → 0.001
        let table: [(Int, Double)] = [(0, 0.1), (2, 0.001 + 0.099 * (1 + cos(Double.pi / 5)) / 2), (5, 0.0505), (10, 0.001)]
        for (epoch, lr) in table {
            XCTAssertEqual(Double(schedule.learningRate(base: 0.1, epoch: epoch, globalStep: 0)), lr, accuracy: 1e-7, "epoch \(epoch)")
        }
        XCTAssertEqual(Double(schedule.learningRate(base: 0.1, epoch: 2, globalStep: 0)), 0.0905463, accuracy: 1e-6)
        // Monotone decreasing over [0, T].
        let lrs = (0...10).map { schedule.learningRate(base: 0.1, epoch: $0, globalStep: 0) }
        XCTAssertEqual(lrs, lrs.sorted(by: >))
    }

    func testWarmup() {
        let warmup = LearningRateSchedule(kind: .constant, warmupSteps: 4)
        // lr·min(1, (step + 1)/warmup)
        let expected: [Double] = [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]
        for (step, lr) in expected.enumerated() {
            XCTAssertEqual(Double(warmup.learningRate(base: 0.1, epoch: 0, globalStep: step)), lr, accuracy: 1e-8, "step \(step)")
        }
        // Warmup multiplies whatever the epoch schedule gives: step decay at epoch 2 (0.05), half-way through warmup.
        let combined = LearningRateSchedule(kind: .step(stepSize: 2, gamma: 0.5), warmupSteps: 10)
        XCTAssertEqual(Double(combined.learningRate(base: 0.1, epoch: 2, globalStep: 4)), 0.05 * 0.5, accuracy: 1e-8)
        XCTAssertEqual(LearningRateSchedule().learningRate(base: 0.3, epoch: 7, globalStep: 99), 0.3)
    }
}
