import Foundation
import XCTest

/// README's generated blocks (comparison tables, the default job's fixed-seed accuracies and the
/// captions quoting them) against what the commands print today: `launch/docs --render` reruns
/// them once, then `launch/docs --check` compares README, and a hand-edited copy, with it; and
/// docs/CONFIG.md, and a hand-edited copy, against `ddp config-reference`.
final class DocsTests: IntegrationTestCase {
    private func docs(_ arguments: [String]) throws -> ProcessResult {
        let job = try Job(executable: Integration.packageRoot + "/launch/docs", arguments: arguments,
                          environment: Integration.environment(underMPI: false).merging(["DDP_BINARY": try Integration.ddpBinary()]) { $1 },
                          logDirectory: directory, label: "docs")
        guard job.wait(timeout: 600) else {
            job.killTree()
            XCTFail("launch/docs \(arguments) hung:\n\(job.result().tail)")
            return job.result()
        }
        return job.result()
    }

    func testReadmeBlocksMatchWhatTheCommandsPrint() throws {
        #if !arch(x86_64)
        throw XCTSkip("README's figures are made with OpenBLAS's Haswell kernels (launch/docs pins them); this machine is not x86-64")
        #endif
        let rendered = path("README.rendered.md")
        let render = try docs(["--render", rendered])
        XCTAssertEqual(render.status, 0, render.tail)
        let readme = try String(contentsOfFile: Integration.packageRoot + "/README.md", encoding: .utf8)
        let fresh = try String(contentsOfFile: rendered, encoding: .utf8)
        XCTAssertNotEqual(readme.range(of: "<!-- docs:moons-compare -->"), nil)
        XCTAssertTrue(fresh.contains("| moons-l1 |") && fresh.contains("| launch/train: 2 ranks | 2 |"), "the render holds the generated tables")

        let check = try docs(["--check", "--rendered", rendered])
        XCTAssertEqual(check.status, 0, "README.md has drifted from the code; run launch/docs:\n\(check.output)")

        // A figure edited by hand inside a table is caught, and named in the diff.
        let row = try XCTUnwrap(readme.split(separator: "\n").first { $0.hasPrefix("| circles-l2 |") }.map(String.init))
        var cells = row.components(separatedBy: " | ")
        cells[4] = cells[4] == "0.0903" ? "0.0904" : "0.0903"
        let edited = path("README.edited.md")
        try readme.replacingOccurrences(of: row, with: cells.joined(separator: " | ")).write(toFile: edited, atomically: true, encoding: .utf8)
        let caught = try docs(["--check", "--rendered", rendered, "--readme", edited])
        XCTAssertEqual(caught.status, 1, caught.output)
        XCTAssertTrue(caught.output.contains("differs from what the commands print") && caught.output.contains("circles-l2"), caught.output)

        // Durations are measured, not reproduced: editing one is not drift.
        var timed = row.components(separatedBy: " | ")
        timed[timed.count - 1] = "9.99 s |"
        try readme.replacingOccurrences(of: row, with: timed.joined(separator: " | ")).write(toFile: edited, atomically: true, encoding: .utf8)
        XCTAssertEqual(try docs(["--check", "--rendered", rendered, "--readme", edited]).status, 0)

        // docs/CONFIG.md is `ddp config-reference` whole: a default edited by hand is caught.
        let reference = try String(contentsOfFile: Integration.packageRoot + "/docs/CONFIG.md", encoding: .utf8)
        XCTAssertTrue(reference.contains("| `timeout_seconds` | number in [1, 604800] | `300` |"), "CONFIG.md lists distributed.timeout_seconds")
        let editedReference = path("CONFIG.edited.md")
        try reference.replacingOccurrences(of: "| `timeout_seconds` | number in [1, 604800] | `300` |",
                                           with: "| `timeout_seconds` | number in [1, 604800] | `600` |")
            .write(toFile: editedReference, atomically: true, encoding: .utf8)
        let drifted = try docs(["--check", "--rendered", rendered, "--config-doc", editedReference])
        XCTAssertEqual(drifted.status, 1, drifted.output)
        XCTAssertTrue(drifted.output.contains("differs from ddp config-reference") && drifted.output.contains("timeout_seconds"), drifted.output)
    }
}
