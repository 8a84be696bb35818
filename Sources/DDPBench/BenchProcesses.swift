import DDPCore
import Foundation

/// The child processes a case starts, their environment and their output.
extension ScalingBench {
    static func mpirun() throws -> String {
        guard let path = onPath("mpirun") else { throw DDPError(.config, "mpirun was not found on PATH (install openmpi-bin)") }
        return path
    }

    static func onPath(_ name: String) -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// A started command whose output goes to a log file until `finish`.
    struct RunningCommand {
        let process: Process
        let log: URL
        let handle: FileHandle
        let commandLine: String

        /// Waits for the command; returns its output (stdout and stderr), or throws with it on failure.
        func finish() throws -> String {
            process.waitUntilExit()
            try? handle.close()
            defer { try? FileManager.default.removeItem(at: log) }
            let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            guard process.terminationStatus == 0 else {
                throw DDPError(.training, "`\(commandLine)` exited \(process.terminationStatus):\n\(output.suffix(3000))")
            }
            return output
        }
    }

    /// Runs a command to completion; its output (stdout and stderr) is returned, a failure throws with it.
    static func execute(_ executable: String, _ arguments: [String], environment extra: [String: String], plain: Bool) throws -> String {
        try start(executable, arguments, environment: extra, plain: plain).finish()
    }

    static func start(_ executable: String, _ arguments: [String], environment extra: [String: String], plain: Bool) throws -> RunningCommand {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        if plain {
            // A plain process must not believe a launcher started it (ddp bench may itself run under one).
            for key in environment.keys where key.hasPrefix("OMPI_COMM_WORLD") || key.hasPrefix("PMIX_") || key.hasPrefix("PMI_") {
                environment[key] = nil
            }
        }
        if getuid() == 0 {
            environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        }
        environment.merge(extra) { $1 }
        process.environment = environment
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("ddp-bench-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(at: log)
            throw error
        }
        return RunningCommand(process: process, log: log, handle: handle, commandLine: ([executable] + arguments).joined(separator: " "))
    }
}
