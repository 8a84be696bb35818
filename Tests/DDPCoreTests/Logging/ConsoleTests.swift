import Foundation
import XCTest
@testable import DDPCore

/// The console's two progress modes, written to files as a terminal or a log would receive them.
final class ConsoleTests: XCTestCase {
    private func capture(_ body: (Console) throws -> Void, mode: Console.Mode, plainSeconds: Double = 30,
                         now: @escaping () -> ContinuousClock.Instant = { ContinuousClock.now }) throws -> (stdout: String, stderr: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ConsoleTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("out"), err = directory.appendingPathComponent("err")
        XCTAssertTrue(FileManager.default.createFile(atPath: out.path, contents: nil))
        XCTAssertTrue(FileManager.default.createFile(atPath: err.path, contents: nil))
        let outHandle = try FileHandle(forWritingTo: out), errHandle = try FileHandle(forWritingTo: err)
        try body(Console(enabled: true, plainProgressSeconds: plainSeconds, mode: mode, output: outHandle, errors: errHandle, now: now))
        try outHandle.close()
        try errHandle.close()
        return (try String(contentsOf: out, encoding: .utf8), try String(contentsOf: err, encoding: .utf8))
    }

    func testTerminalRedrawsOneLineAndClearsIt() throws {
        let (stdout, stderr) = try capture({ console in
            console.progress(epoch: 1, of: 2, step: 16, of: 100, loss: 0.5, rate: 1000)
            console.progress(epoch: 1, of: 2, step: 32, of: 100, loss: 0.25, rate: 1000, eta: 65)
            console.endProgress()
            console.line("Epoch 1/2 - done")
        }, mode: .terminal)
        XCTAssertEqual(stdout, "Epoch 1/2 - done\n")
        let redraws = stderr.split(separator: "\r", omittingEmptySubsequences: false)
        XCTAssertEqual(redraws.count, 5, "\\r before each of two progress lines and around the clearing blanks: \(redraws)")
        XCTAssertTrue(redraws[1].hasPrefix("Epoch 1/2  16/100 [===>..........................] - loss: 0.5000 - 1000 samples/s"),
                      String(redraws[1]))
        XCTAssertTrue(redraws[2].hasPrefix("Epoch 1/2  32/100 [========>.....................] ETA 1:05 - loss: 0.2500"),
                      String(redraws[2]))
        XCTAssertEqual(redraws[3].trimmingCharacters(in: .whitespaces), "")
        XCTAssertEqual(redraws[4], "", "the cursor ends at the start of the cleared line")
        XCTAssertFalse(stderr.contains("\n"))
    }

    /// Plain mode: no carriage return; a line only once `plainProgressSeconds` have passed in the
    /// epoch (counted from its first progress call), then at most one per interval. The test
    /// moves the console's clock itself, so the machine's speed plays no part.
    func testPlainModeWritesTimedLinesWithoutCarriageReturns() throws {
        var clock = ContinuousClock.now
        let (stdout, stderr) = try capture({ console in
            for epoch in 1...2 {
                console.progress(epoch: epoch, of: 2, step: 16, of: 100, loss: 0.5, rate: 1000)
                console.progress(epoch: epoch, of: 2, step: 32, of: 100, loss: 0.5, rate: 1000)
                clock += .milliseconds(250)
                console.progress(epoch: epoch, of: 2, step: 48, of: 100, loss: 0.5, rate: 1000)
                console.progress(epoch: epoch, of: 2, step: 64, of: 100, loss: 0.5, rate: 1000)
                console.endProgress()
                console.line("Epoch \(epoch)/2 - done")
            }
        }, mode: .plain, plainSeconds: 0.2, now: { clock })
        XCTAssertFalse(stdout.contains("\r") || stderr.contains("\r"))
        XCTAssertEqual(stdout, "Epoch 1/2 - done\nEpoch 2/2 - done\n")
        XCTAssertEqual(stderr.split(separator: "\n").map { String($0.prefix(22)) },
                       ["Epoch 1/2  step 48/100", "Epoch 2/2  step 48/100"])
    }

    /// Keras's bar (30 cells, '>' at the front until the last step) and the ETA's clock.
    func testBarAndClock() {
        XCTAssertEqual(Console.bar(0, of: 10), "[>" + String(repeating: ".", count: 29) + "]")
        XCTAssertEqual(Console.bar(5, of: 10), "[" + String(repeating: "=", count: 14) + ">" + String(repeating: ".", count: 15) + "]")
        XCTAssertEqual(Console.bar(10, of: 10), "[" + String(repeating: "=", count: 30) + "]")
        XCTAssertEqual(Console.bar(937, of: 938).count, 32)
        XCTAssertEqual([0.4, 4, 59.6, 750, 3723].map(Console.clock), ["0:00", "0:04", "1:00", "12:30", "1:02:03"])
    }

    func testModeFromEnvironmentOrTerminal() {
        // Under `swift test` stderr is whatever the runner gives; the override wins either way.
        setenv("DDP_PROGRESS", "plain", 1)
        XCTAssertEqual(Console.detectedMode(), .plain)
        setenv("DDP_PROGRESS", "terminal", 1)
        XCTAssertEqual(Console.detectedMode(), .terminal)
        unsetenv("DDP_PROGRESS")
        XCTAssertEqual(Console.detectedMode(), isatty(STDERR_FILENO) == 1 ? .terminal : .plain)
    }
}
