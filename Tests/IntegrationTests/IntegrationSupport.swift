import DDPCore
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Shared machinery of the integration tests: they run the built `ddp` executable, alone or
/// under a real `mpirun`, in a fresh temporary directory, and read what it wrote.
///
/// The binary is `$DDP_BINARY`, else `<package>/.build/release/ddp`, else `.build/debug/ddp`
/// (build it first: `swift build -c release`). `mpirun` is `$MPIRUN`, else the first on PATH.
/// Every subprocess runs under a hard timeout: on a hang it and all its descendants are killed
/// and the test fails with the job's output.
enum Integration {
    /// The package root, from this file's path: <root>/Tests/IntegrationTests/IntegrationSupport.swift.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    struct SetupError: Error, CustomStringConvertible {
        let description: String
    }

    static func ddpBinary() throws -> String {
        let fileManager = FileManager.default
        if let path = ProcessInfo.processInfo.environment["DDP_BINARY"], !path.isEmpty {
            guard fileManager.isExecutableFile(atPath: path) else {
                throw SetupError(description: "DDP_BINARY=\(path) is not an executable file; build it with `swift build -c release` or unset DDP_BINARY")
            }
            return path
        }
        let candidates = ["\(packageRoot)/.build/release/ddp", "\(packageRoot)/.build/debug/ddp"]
        if let found = candidates.first(where: fileManager.isExecutableFile(atPath:)) { return found }
        throw SetupError(description: "the ddp executable was not found (looked at $DDP_BINARY, \(candidates.joined(separator: ", "))); run `swift build -c release` before the integration tests, or set DDP_BINARY")
    }

    static func mpirun() throws -> String {
        if let path = ProcessInfo.processInfo.environment["MPIRUN"], !path.isEmpty { return path }
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/usr/local/bin").split(separator: ":")
        for directory in directories {
            let path = "\(directory)/mpirun"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw SetupError(description: "mpirun was not found on PATH (install openmpi-bin or set MPIRUN)")
    }

    /// The OpenBLAS kernels every ddp run on this host uses, and who chose them: the table ddp
    /// re-executes itself with, else the library's pick (as this test process, which never
    /// re-executes, has it). A library may load a table of the same tier for a name it lacks
    /// (Debian's 0.3.21 loads Cooperlake's for SapphireRapids), so compare with `sameTier`.
    static func expectedBLASCore() throws -> (core: String, chosenBy: BLASKernels.ChosenBy) {
        guard let library = BLASKernels.current, let decision = BLASKernels.decisionHere else {
            throw SetupError(description: "OpenBLAS does not name its kernels")
        }
        if case let .reexecute(target) = decision { return (target.core, .ddp) }
        return (library, ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil ? .openblas : .user)
    }

    /// Whether a run's recorded table is the expected one or one of its tier.
    static func sameTier(_ recorded: String?, _ expected: String) -> Bool {
        guard let recorded else { return false }
        guard recorded.lowercased() != expected.lowercased() else { return true }
        guard let tier = BLASKernels.tier(recorded) else { return false }
        return tier > 0 && tier == BLASKernels.tier(expected)
    }

    /// The environment every job gets: root allowed (CI containers), one BLAS thread per rank.
    static func environment(underMPI: Bool) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        if !underMPI {
            // A plain process must not believe a launcher started it.
            for key in env.keys where key.hasPrefix("OMPI_COMM_WORLD") || key.hasPrefix("PMIX_") || key.hasPrefix("PMI_") {
                env[key] = nil
            }
        }
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OPENBLAS_NUM_THREADS"] = "1"
        return env
    }
}

/// What a finished subprocess left.
struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double
    var output: String { stdout + (stdout.isEmpty || stdout.hasSuffix("\n") ? "" : "\n") + stderr }
    /// The output's last lines, for failure messages.
    var tail: String { output.split(separator: "\n", omittingEmptySubsequences: false).suffix(25).joined(separator: "\n") }
}

/// A started subprocess whose stdout/stderr go to files (no pipe can fill up and block it).
final class Job {
    let process = Process()
    let label: String
    private let stdoutPath: String
    private let stderrPath: String
    private let started = Date()

    init(executable: String, arguments: [String], environment: [String: String], logDirectory: String, label: String) throws {
        self.label = label
        let stem = "\(logDirectory)/\(label.replacingOccurrences(of: "/", with: "_"))-\(UUID().uuidString.prefix(8))"
        stdoutPath = stem + ".stdout"
        stderrPath = stem + ".stderr"
        guard FileManager.default.createFile(atPath: stdoutPath, contents: nil),
              FileManager.default.createFile(atPath: stderrPath, contents: nil) else {
            throw Integration.SetupError(description: "cannot create the log files \(stem).stdout/.stderr")
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        try process.run()
    }

    var pid: pid_t { process.processIdentifier }

    /// Waits up to `timeout` seconds; true when the process has exited.
    func wait(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() >= deadline { return false }
            usleep(20_000)
        }
        process.waitUntilExit()
        return true
    }

    /// SIGKILLs the process and every descendant (for mpirun: its ranks), then reaps it.
    func killTree() {
        let descendants = ProcessTable.descendants(of: pid)
        for child in descendants { kill(child, SIGKILL) }
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    func result() -> ProcessResult {
        func read(_ path: String) -> String {
            (try? String(contentsOfFile: path, encoding: .utf8)) ?? String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
        }
        return ProcessResult(status: process.isRunning ? -1 : process.terminationStatus,
                             stdout: read(stdoutPath), stderr: read(stderrPath),
                             seconds: Date().timeIntervalSince(started))
    }
}

/// The few /proc reads the tests need (what pgrep does), without depending on procps.
enum ProcessTable {
    /// (pid, ppid, state) of every process.
    static func all() -> [(pid: pid_t, parent: pid_t, state: Character)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { name -> (pid_t, pid_t, Character)? in
            guard let pid = pid_t(name), let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // "pid (comm) S ppid …": comm may contain spaces or parentheses, so parse after the last ')'.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, let parent = pid_t(fields[1]), let state = fields[0].first else { return nil }
            return (pid, parent, state)
        }
    }

    static func descendants(of root: pid_t) -> [pid_t] {
        let table = all()
        var result: [pid_t] = []
        var frontier = [root]
        while let next = frontier.popLast() {
            let children = table.filter { $0.parent == next }.map(\.pid)
            result += children
            frontier += children
        }
        return result
    }

    static func commandLine(_ pid: pid_t) -> String {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return "" }
        return String(decoding: data.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
    }

    /// The MPI rank OpenMPI gave `pid` (from its environment), if readable.
    static func mpiRank(_ pid: pid_t) -> Int? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return nil }
        for entry in data.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            if text.hasPrefix("OMPI_COMM_WORLD_RANK=") { return Int(text.dropFirst("OMPI_COMM_WORLD_RANK=".count)) }
        }
        return nil
    }

    /// Running (not gone, not a zombie).
    static func isAlive(_ pid: pid_t) -> Bool {
        all().contains { $0.pid == pid && $0.state != "Z" && $0.state != "X" }
    }

    /// Those of `pids` still running after `timeout` seconds; it returns as soon as all are gone,
    /// so the timeout is a deadline against a hang, not a guess at how long teardown takes.
    static func survivors(_ pids: [pid_t], within timeout: Double) -> [pid_t] {
        let deadline = Date().addingTimeInterval(timeout)
        var alive = pids.filter(isAlive)
        while !alive.isEmpty, Date() < deadline {
            usleep(20_000)
            alive = alive.filter(isAlive)
        }
        return alive
    }
}

/// A test case with its own temporary directory and helpers to run `ddp`.
class IntegrationTestCase: XCTestCase {
    /// Hard limit for one ordinary `ddp` run (each takes about a second).
    static let defaultTimeout: Double = 120

    var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("ddp-integration-\(String(describing: type(of: self)))-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        guard let directory else { return }
        if (testRun?.failureCount ?? 0) + (testRun?.unexpectedExceptionCount ?? 0) == 0 {
            try? FileManager.default.removeItem(atPath: directory)
        } else {
            print("integration test files kept in \(directory)")
        }
    }

    func path(_ name: String) -> String { "\(directory!)/\(name)" }

    /// Writes a YAML config and returns its path.
    @discardableResult
    func writeConfig(_ name: String, _ yaml: String) throws -> String {
        let file = path(name)
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// Starts `ddp ARGS`: a plain process when `np` is nil, else under `mpirun --oversubscribe -np N`.
    /// `environment` adds to (or, with nil values, removes from) the job's environment.
    func start(np: Int?, _ arguments: [String], label: String, environment: [String: String?] = [:]) throws -> Job {
        let ddp = try Integration.ddpBinary()
        var jobEnvironment = Integration.environment(underMPI: np != nil)
        for (key, value) in environment { jobEnvironment[key] = value }
        if let np {
            return try Job(executable: try Integration.mpirun(),
                           arguments: ["--oversubscribe", "-np", "\(np)", ddp] + arguments,
                           environment: jobEnvironment, logDirectory: directory, label: label)
        }
        return try Job(executable: ddp, arguments: arguments, environment: jobEnvironment, logDirectory: directory, label: label)
    }

    /// Runs `ddp ARGS` to completion under a hard timeout. On a hang the job is killed and the
    /// test fails; the (partial) result is returned either way.
    @discardableResult
    func runDDP(np: Int?, _ arguments: [String], timeout: Double = IntegrationTestCase.defaultTimeout,
                environment: [String: String?] = [:], file: StaticString = #filePath, line: UInt = #line) throws -> ProcessResult {
        let label = "np\(np.map(String.init) ?? "plain")"
        let job = try start(np: np, arguments, label: label, environment: environment)
        if !job.wait(timeout: timeout) {
            job.killTree()
            let result = job.result()
            XCTFail("`ddp \(arguments.joined(separator: " "))` on \(label) hung: killed after \(timeout) s. Output:\n\(result.tail)",
                    file: file, line: line)
            return result
        }
        return job.result()
    }

    /// `ddp train CONFIG --run-dir DIR --quiet [extra]`, which must exit 0.
    @discardableResult
    func train(np: Int?, config: String, runDirectory: String, _ extra: [String] = [],
               timeout: Double = IntegrationTestCase.defaultTimeout,
               file: StaticString = #filePath, line: UInt = #line) throws -> ProcessResult {
        let result = try runDDP(np: np, ["train", config, "--run-dir", runDirectory, "--quiet"] + extra,
                                timeout: timeout, file: file, line: line)
        XCTAssertEqual(result.status, 0, "training on np=\(np.map(String.init) ?? "1 (plain)") \(extra) failed:\n\(result.tail)",
                       file: file, line: line)
        return result
    }
}

// MARK: Reading what a run wrote

struct Metrics {
    var epochs: [[String: Any]]
    var end: [String: Any]?

    init(runDirectory: String) {
        // Read here with JSONSerialization, independently of the records that wrote the file.
        let text = (try? String(contentsOfFile: runDirectory + "/metrics.jsonl", encoding: .utf8)) ?? ""
        let objects = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        epochs = objects.filter { $0["epoch"] != nil && $0["event"] == nil }
        end = objects.last { ($0["event"] as? String) == "end" }
    }

    func values(_ key: String) -> [Double?] { epochs.map { ($0[key] as? NSNumber)?.doubleValue } }
    func epochNumbers() -> [Int] { epochs.compactMap { ($0["epoch"] as? NSNumber)?.intValue } }
    func endInt(_ key: String) -> Int? { (end?[key] as? NSNumber)?.intValue }
    func endString(_ key: String) -> String? { end?[key] as? String }
}

typealias Tensors = [String: StoredTensor]

func readTensors(_ path: String) throws -> Tensors { try SafeTensors.read(path: path).tensors }

/// max|a − b| / max|a| of one float tensor (0 when both are all zeros).
func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var difference = 0.0, scale = 0.0
    for (x, y) in zip(a, b) {
        difference = max(difference, abs(Double(x) - Double(y)))
        scale = max(scale, abs(Double(x)))
    }
    if difference == 0 { return 0 }
    return scale == 0 ? .infinity : difference / scale
}

/// Asserts that both sets hold the same tensor names and shapes, every float tensor
/// within `tolerance` relative (max|Δ| / max|reference|, per tensor) and every other tensor equal.
func assertTensorsClose(_ reference: Tensors, _ other: Tensors, tolerance: Double, _ what: String,
                        only include: (String) -> Bool = { _ in true },
                        file: StaticString = #filePath, line: UInt = #line) {
    let names = reference.keys.filter(include).sorted()
    XCTAssertEqual(names, other.keys.filter(include).sorted(), "\(what): tensor names differ", file: file, line: line)
    XCTAssertFalse(names.isEmpty, "\(what): no tensors to compare", file: file, line: line)
    for name in names {
        guard let a = reference[name], let b = other[name] else { continue }
        XCTAssertEqual(a.shape, b.shape, "\(what): \(name) shapes", file: file, line: line)
        if let x = a.floats(), let y = b.floats(), x.count == y.count {
            let difference = relativeDifference(x, y)
            XCTAssertLessThanOrEqual(difference, tolerance, "\(what): tensor \(name) differs by \(difference) relative", file: file, line: line)
        } else {
            XCTAssertEqual(a, b, "\(what): tensor \(name) differs", file: file, line: line)
        }
    }
}

/// Asserts two lists of per-epoch numbers agree within `tolerance` relative.
func assertSeriesClose(_ reference: [Double?], _ other: [Double?], tolerance: Double, _ what: String,
                       file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(reference.count, other.count, "\(what): epoch counts", file: file, line: line)
    XCTAssertFalse(reference.isEmpty, "\(what): no epochs", file: file, line: line)
    for (index, (a, b)) in zip(reference, other).enumerated() {
        guard let a, let b else {
            XCTFail("\(what): epoch \(index + 1) lacks a value (\(String(describing: a)) vs \(String(describing: b)))", file: file, line: line)
            continue
        }
        let relative = abs(a - b) / max(abs(a), 1e-12)
        XCTAssertLessThanOrEqual(relative, tolerance, "\(what) epoch \(index + 1): \(a) vs \(b)", file: file, line: line)
    }
}

/// Runs a Python interpreter with `arguments`; stdout and stderr together.
func runPython(_ python: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}
