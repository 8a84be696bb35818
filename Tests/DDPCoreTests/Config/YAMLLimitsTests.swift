import Foundation
import XCTest
@testable import DDPCore

/// YAML built to break a parser gets one clear error, never a crash: nesting that would
/// overflow Yams's recursive composer and aliases that expand exponentially.
final class YAMLLimitsTests: XCTestCase {
    private let model = smallTrainingYAML

    func testDeepFlowNestingIsAnErrorNotAStackOverflow() {
        // 100,000 levels: Yams's recursive composer overflows the stack after a few thousand.
        let deep = model + "\nextra: " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "\n"
        assertDDPError(.config, containing: ["deep.yaml", "line 11", "nest more than 64 levels"]) {
            try TrainingConfig.parse(yaml: deep, source: "deep.yaml")
        }
    }

    func testDeepBlockNestingIsAnError() {
        var text = "seed: 1\n"
        for level in 0..<5_000 { text += String(repeating: " ", count: level) + "a:\n" }
        assertDDPError(.config, containing: ["nest more than 64 levels"]) { try TrainingConfig.parse(yaml: text) }
    }

    func testNestingWithinTheLimitStillParses() throws {
        let nested = String(repeating: "[", count: 60) + String(repeating: "]", count: 60)
        // The value is then rejected as an unknown key, which proves it got through the composer.
        assertDDPError(.config, containing: ["unknown key 'extra'"]) { try TrainingConfig.parse(yaml: self.model + "\nextra: \(nested)\n") }
    }

    func testOverridesAreBoundedToo() {
        assertDDPError(.config, containing: ["--set extra", "nest more than 64 levels"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["extra=" + String(repeating: "{a: ", count: 10_000)])
        }
        let longKey = Array(repeating: "a", count: 10_000).joined(separator: ".") + "=1"
        assertDDPError(.config, containing: ["--set", "10000 parts", "at most 64"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: [longKey])
        }
    }

    /// "Billion laughs": ten anchors, each a list of ten aliases of the one before (10^10 values).
    func testExponentialAliasesAreRefused() {
        var text = model + "\nlaughs:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 {
            text += "  a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ") + "]\n"
        }
        let start = Date()
        assertDDPError(.config, containing: ["more than 100000 values", "aliases expanded"]) { try TrainingConfig.parse(yaml: text) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "the walk stops at the limit")
    }

    /// Each alias adds its anchor's depth: a chain of aliases nests deeper than its text does.
    func testAliasChainsCannotNestPastTheLimit() {
        var text = model + "\nchain:\n  c0: &c0 [[[[[[[[[[x]]]]]]]]]]\n"
        for level in 1...20 { text += "  c\(level): &c\(level) [[[[[[[[[[*c\(level - 1)]]]]]]]]]]\n" }
        assertDDPError(.config, containing: ["nest more than 64 levels"]) { try TrainingConfig.parse(yaml: text) }
    }

    func testAnchorsWithinLimitsStillWork() throws {
        let text = model.replacingOccurrences(of: "{type: dense, units: 8, activation: relu}", with: "&hidden {type: dense, units: 8, activation: relu}")
            .replacingOccurrences(of: "- {type: dense, units: 2}", with: "- *hidden\n    - {type: dense, units: 2}")
        let config = try TrainingConfig.parse(yaml: text)
        XCTAssertEqual(config.model.layers.count, 3)
        XCTAssertEqual(config.model.layers[0], config.model.layers[1])
    }
}
