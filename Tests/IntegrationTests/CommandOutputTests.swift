import DDPCore
import Foundation
import XCTest

/// What the commands print besides training: the version report, and one copy of a result
/// under mpirun.
final class CommandOutputTests: IntegrationTestCase {
    /// `ddp --version`: ddp's version and commit, Swift, MPI, OpenBLAS and its kernel table.
    func testVersionNamesEveryPieceARunDependsOn() throws {
        let result = try runDDP(np: nil, ["--version"], timeout: 60)
        XCTAssertEqual(result.status, 0, result.tail)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 5, result.stdout)
        XCTAssertTrue(lines.first?.hasPrefix("ddp ") ?? false, result.stdout)
        XCTAssertTrue(lines.first?.contains("git ") ?? false, "the commit of the tree it was built from: \(result.stdout)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("Swift: 6.") }, result.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("MPI: Open MPI v") }, result.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("OpenBLAS: OpenBLAS 0.") }, result.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("kernels: ") && $0.contains(BLASKernels.current ?? "?") }, result.stdout)
    }

    /// `ddp eval` and `ddp summary` under mpirun print their result once, and eval's rows are
    /// shared by the ranks: the same accuracy as one process.
    func testEvalAndSummaryPrintOnceUnderMPI() throws {
        let run = path("eval-run")
        let trained = try runDDP(np: nil, ["train", BadInputTests.moons, "--run-dir", run, "--quiet", "--set", "training.epochs=3"], timeout: 120)
        XCTAssertEqual(trained.status, 0, trained.tail)
        let arguments = ["eval", "--config", BadInputTests.moons, "--weights", run + "/model.safetensors"]
        let single = try runDDP(np: nil, arguments, timeout: 120)
        let shared = try runDDP(np: 2, arguments, timeout: 120)
        XCTAssertEqual(single.status, 0, single.tail)
        XCTAssertEqual(shared.status, 0, shared.tail)
        let lines = shared.stdout.split(separator: "\n").filter { $0.hasPrefix("{") }
        XCTAssertEqual(lines.count, 1, shared.stdout)
        func accuracy(_ line: Substring?) throws -> Double? {
            let object = try JSONSerialization.jsonObject(with: Data((line ?? "").utf8)) as? [String: Any]
            return object?["accuracy"] as? Double
        }
        XCTAssertEqual(try accuracy(lines.first), try accuracy(single.stdout.split(separator: "\n").first { $0.hasPrefix("{") }))
        let summary = try runDDP(np: 2, ["summary", BadInputTests.moons], timeout: 120)
        XCTAssertEqual(summary.status, 0, summary.tail)
        XCTAssertEqual(summary.stdout.components(separatedBy: "Total params").count - 1, 1, summary.stdout)
    }
}
