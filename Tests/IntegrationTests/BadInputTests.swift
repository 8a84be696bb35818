import DDPCore
import Foundation
import XCTest

/// Input built to crash a parser, given to the real binary: one `ddp: error` line naming the
/// file or key, exit status 1, and no crash report (these inputs used to segfault or trap).
final class BadInputTests: IntegrationTestCase {
    private func assertOneClearError(_ arguments: [String], naming parts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try runDDP(np: nil, arguments, timeout: 60, file: file, line: line)
        XCTAssertEqual(result.status, 1, result.tail, file: file, line: line)
        let errors = result.output.split(separator: "\n").filter { $0.hasPrefix("ddp: error") }
        XCTAssertEqual(errors.count, 1, result.tail, file: file, line: line)
        for part in parts { XCTAssertTrue(errors.first?.contains(part) ?? false, "'\(errors)' lacks '\(part)'", file: file, line: line) }
        XCTAssertFalse(result.output.contains("crashed") || result.output.contains("Fatal error"), result.tail, file: file, line: line)
    }

    func testDeeplyNestedYAML() throws {
        let config = try writeConfig("deep.yaml", "seed: " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "\n")
        try assertOneClearError(["summary", config], naming: [config, "nest more than 64 levels"])
    }

    func testLayerTooLargeForMemory() throws {
        try assertOneClearError(["summary", Self.moons, "--set", "model.layers.0.units=2000000000"],
                                naming: ["model.layers[0].units", "bytes", "this machine has"])
    }

    static let moons = Integration.packageRoot + "/configs/moons.yaml"
}
