import DDPCore
import DDPReport
import Foundation

/// Trains `ddp compare`'s variants, each into `<outputDirectory>/<variant name>`: in turn in this
/// process (on every rank under mpirun), or up to `jobs` at a time as `ddp train` processes.
/// Prints one line per finished variant; the table and page come from DDPReport afterwards.
public struct ComparisonTraining {
    public var variants: [ComparisonVariant]
    public var outputDirectory: String
    /// When the comparison began: the lines' ETA counts from here.
    public var start: Date

    public init(variants: [ComparisonVariant], outputDirectory: String, start: Date = Date()) {
        self.variants = variants
        self.outputDirectory = outputDirectory
        self.start = start
    }

    public func directory(_ variant: ComparisonVariant) -> String { outputDirectory + "/" + variant.name }

    /// One watchdog for the whole comparison under MPI: the most patient variant's deadline.
    public var watchdogTimeout: Double {
        variants.map(\.config.distributed.timeoutSeconds).max() ?? DistributedConfig().timeoutSeconds
    }

    /// Every variant in turn with `communicator` (all ranks train each); rank 0 prints the lines.
    public func trainInTurn(communicator: Communicator = LocalCommunicator()) throws {
        for (index, variant) in variants.enumerated() {
            let outcome = try variant.train(runDirectory: directory(variant), communicator: communicator)
            if communicator.isRoot {
                report(index, variant, done: index + 1, epochs: outcome.end.epochsRun, best: outcome.end.bestEpoch,
                       monitor: outcome.end.monitor, value: outcome.end.bestValue)
            }
        }
    }

    /// Runs up to `jobs` `ddp train` processes of `executable` at once; each writes its output to
    /// OUT/<variant>/train.log.
    public func trainInProcesses(jobs: Int, executable: String) throws {
        var pending = Array(variants.enumerated())
        var running: [(index: Int, variant: ComparisonVariant, process: Process)] = []
        var failures: [String] = []
        var finished = 0
        while !pending.isEmpty || !running.isEmpty {
            while running.count < jobs, !pending.isEmpty {
                let (index, variant) = pending.removeFirst()
                let directory = directory(variant)
                try RunDirectory.create(directory)
                let logPath = directory + "/train.log"
                _ = FileManager.default.createFile(atPath: logPath, contents: nil)
                guard let log = FileHandle(forWritingAtPath: logPath) else { throw DDPError(.io, "cannot write \(logPath)") }
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = ["train", variant.configPath, "--run-dir", directory, "--overwrite"]
                    + variant.overrides.flatMap { ["--set", $0] }
                var environment = ProcessInfo.processInfo.environment
                // Several small trainings share the cores: one BLAS thread each.
                if environment["OPENBLAS_NUM_THREADS"] == nil { environment["OPENBLAS_NUM_THREADS"] = "1" }
                // train.log is a log: epoch lines, and a plain progress line in long epochs.
                environment["DDP_PROGRESS"] = "plain"
                process.environment = environment
                process.standardOutput = log
                process.standardError = log
                try process.run()
                running.append((index, variant, process))
            }
            usleep(20_000)
            for entry in running where !entry.process.isRunning {
                finished += 1
                let logPath = directory(entry.variant) + "/train.log"
                if entry.process.terminationStatus == 0 {
                    let end = (try? RunMetrics.load(path: directory(entry.variant) + "/metrics.jsonl"))?.end
                    report(entry.index, entry.variant, done: finished, epochs: end?.epochsRun ?? 0, best: end?.bestEpoch ?? 0,
                           monitor: end?.monitor ?? "?", value: end?.bestValue)
                } else {
                    let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                    let tail = log.split(separator: "\n").suffix(3).joined(separator: "\n")
                    failures.append("\(entry.variant.name) (exit \(entry.process.terminationStatus), \(logPath)): \(tail)")
                }
            }
            running.removeAll { !$0.process.isRunning }
        }
        if !failures.isEmpty {
            throw DDPError(.training, "\(counted(failures.count, "variant")) failed:\n" + failures.joined(separator: "\n"))
        }
    }

    /// One line per finished variant; `done` of them finished so far, and the time left if the
    /// rest take as long on average.
    func report(_ index: Int, _ variant: ComparisonVariant, done: Int, epochs: Int, best: Int, monitor: String, value: Double?) {
        print("[\(index + 1)/\(variants.count)] \(variant.name): \(counted(epochs, "epoch")), best epoch \(best) (\(monitor) "
              + (value.map { String(format: "%.4f", $0) } ?? "—") + ")" + Self.remaining(done: done, of: variants.count, since: start))
    }

    /// " - 3/10 done, ETA 1:05" (nothing once all are done).
    public static func remaining(done: Int, of total: Int, since start: Date) -> String {
        guard done < total, done > 0 else { return "" }
        let eta = Date().timeIntervalSince(start) / Double(done) * Double(total - done)
        return " - \(done)/\(total) done, ETA " + Console.clock(eta)
    }
}
