import XCTest
@testable import DDPCore

/// How a rank publishes its updated block (`ShardedSync`): the faster way, tried again
/// periodically, so a change of core layout is followed within one trial period.
final class PublishChoiceTests: XCTestCase {
    /// Runs `steps` steps where mirroring takes `mirrored` and copying `copied`;
    /// returns how many steps mirrored.
    private func run(_ choice: inout PublishChoice, steps: Int, mirrored: Duration, copied: Duration) -> Int {
        var count = 0
        for _ in 0..<steps {
            let mirrors = choice.mirrors()
            if mirrors { count += 1 }
            choice.record(mirrored: mirrors, time: mirrors ? mirrored : copied)
        }
        return count
    }

    func testTakesTheFasterWayAndFollowsALayoutChange() {
        var choice = PublishChoice()
        let period = PublishChoice.trialEvery
        // Cores sharing a cache: mirroring is faster; the copy is tried once a period.
        let first = run(&choice, steps: 4 * period, mirrored: .microseconds(65), copied: .microseconds(70))
        XCTAssertEqual(first, 4 * period - 4, "all but the first copy trial and one trial a period mirror")
        // The cores move apart: mirroring turns slow; within a step of noticing, it copies.
        let apart = run(&choice, steps: 4 * period, mirrored: .microseconds(430), copied: .microseconds(125))
        XCTAssertLessThanOrEqual(apart, 4 + 2, "mirrors only on trials (and the step that noticed)")
        // Back together: the next trial of mirroring brings it back.
        let back = run(&choice, steps: 4 * period, mirrored: .microseconds(65), copied: .microseconds(70))
        XCTAssertGreaterThanOrEqual(back, 3 * period, "mirrors again from the first trial on")
    }
}
