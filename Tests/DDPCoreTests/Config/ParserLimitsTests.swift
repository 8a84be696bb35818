import Foundation
import XCTest
@testable import DDPCore

/// Inputs built to break a parser get one clear error, never a crash: nesting that would
/// overflow Yams's recursive composer, aliases that expand exponentially, layer sizes that
/// cannot be allocated, and gzip files that inflate past memory.
final class ParserLimitsTests: XCTestCase {
    private let model = """
        seed: 1
        data:
          train: {format: moons, samples: 64}
        model:
          inputs: 2
          layers:
            - {type: dense, units: 8, activation: relu}
            - {type: dense, units: 2}
        optimizer: {type: sgd, lr: 0.1}
        training: {epochs: 1, batch_size: 16}
        """

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

    // MARK: Sizes against memory

    func testLayerTooLargeForMemoryNamesTheKeyAndTheBytes() {
        assertDDPError(.config, containing: ["model.layers[0].units", "needs at least", "bytes", "GiB", "this machine has"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["model.layers.0.units=2000000000"])
        }
        assertDDPError(.config, containing: ["model.layers[1].units", "more than 2^63 bytes"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["model.layers.1.units=\(Int.max)"])
        }
        assertDDPError(.config, containing: ["model.inputs", "bytes"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["model.inputs=3000000000"])
        }
        assertDDPError(.config, containing: ["training.batch_size", "activations for 1000000000 rows"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["training.batch_size=1000000000"])
        }
    }

    /// The estimate is a lower bound: a model a quarter the machine's memory in parameters passes
    /// the check (it is not allocated here), one twice the memory does not.
    func testTheBoundFollowsThisMachinesMemory() throws {
        let quarter = MemoryCheck.physicalBytes / 4 / 4 / 2 / 1024     // floats per unit of a 1024-input layer, params + grads
        _ = try TrainingConfig.parse(yaml: model, overrides: ["model.inputs=1024", "model.layers.0.units=\(quarter / 2)"])
        assertDDPError(.config, containing: ["model.layers[0].units"]) {
            try TrainingConfig.parse(yaml: self.model, overrides: ["model.inputs=1024", "model.layers.0.units=\(quarter * 8)"])
        }
    }

    func testGzipThatInflatesPastTheLimitIsAnError() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ParserLimitsTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let raw = directory.appendingPathComponent("zeros")
        try Data(count: 4 << 20).write(to: raw)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-k", raw.path]
        try gzip.run()
        gzip.waitUntilExit()
        XCTAssertEqual(gzip.terminationStatus, 0)
        let compressed = try DataFile.readAll(raw.path + ".gz", what: "test")
        XCTAssertLessThan(compressed.count, 10_000)
        XCTAssertEqual(try DataFile.gunzip(compressed, path: "z.gz", limit: 8 << 20).count, 4 << 20)
        assertDDPError(.data, containing: ["z.gz", "decompresses to more than", "bytes"]) {
            try DataFile.gunzip(compressed, path: "z.gz", limit: 1 << 20)
        }
    }
}
