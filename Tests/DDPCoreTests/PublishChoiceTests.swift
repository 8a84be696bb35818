import XCTest
@testable import DDPCore

/// How a rank publishes its updated block (`ShardedSync`): the faster way, tried again
/// periodically, so a change of core layout is followed within one trial period.
final class PublishChoiceTests: XCTestCase {
    /// Runs `steps` steps where mirroring takes `mirrored` seconds and copying `copied`;
    /// returns how many steps mirrored.
    private func run(_ choice: inout PublishChoice, steps: Int, mirrored: Double, copied: Double) -> Int {
        var count = 0
        for _ in 0..<steps {
            let mirrors = choice.mirrors()
            if mirrors { count += 1 }
            choice.record(mirrored: mirrors, seconds: mirrors ? mirrored : copied)
        }
        return count
    }

    func testTakesTheFasterWayAndFollowsALayoutChange() {
        var choice = PublishChoice()
        let period = PublishChoice.trialEvery
        // Cores sharing a cache: mirroring is faster; the copy is tried once a period.
        let first = run(&choice, steps: 4 * period, mirrored: 65e-6, copied: 70e-6)
        XCTAssertEqual(first, 4 * period - 4, "all but the first copy trial and one trial a period mirror")
        // The cores move apart: mirroring turns slow; within a step of noticing, it copies.
        let apart = run(&choice, steps: 4 * period, mirrored: 430e-6, copied: 125e-6)
        XCTAssertLessThanOrEqual(apart, 4 + 2, "mirrors only on trials (and the step that noticed)")
        // Back together: the next trial of mirroring brings it back.
        let back = run(&choice, steps: 4 * period, mirrored: 65e-6, copied: 70e-6)
        XCTAssertGreaterThanOrEqual(back, 3 * period, "mirrors again from the first trial on")
    }
}
