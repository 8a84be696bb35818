import ArgumentParser
import DDPCore
import DDPReport
import Foundation

/// Options of the commands that draw a run's plots.
struct PlotOptions: ParsableArguments {
    @Option(help: "Weights to plot: a file in the run directory (model.safetensors, best.safetensors) or a path.")
    var weights = "model.safetensors"
    @Option(help: "Cells per side of the decision-region grid (models with 2 inputs).")
    var grid = 100

    func validate() throws {
        guard (2...1000).contains(grid) else { throw ValidationError("--grid must be between 2 and 1000, got \(grid)") }
    }

    var options: RunPlots.Options {
        var options = RunPlots.Options()
        options.weights = weights
        options.resolution = grid
        return options
    }
}

/// The plots of a run, written on rank 0 only; other ranks never touch the plot files.
enum PlotWriter {
    static func write(runDirectory: String, options: RunPlots.Options = RunPlots.Options(), console: Console) throws {
        let plots = try RunPlots.write(runDirectory: runDirectory, options: options)
        console.line("ddp: wrote \(plots.count) plot\(plots.count == 1 ? "" : "s") to \(runDirectory)/\(RunPlots.directoryName): "
                     + plots.map(\.file).joined(separator: ", "))
    }
}

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write SVG plots of a run into RUN_DIR/plots.",
        discussion: """
            loss.svg and accuracy.svg (per epoch, best and early-stopping epochs marked), weights-<layer>.svg \
            (a histogram of each dense kernel with its share of |w| < 1e-3), for a model with 2 inputs, \
            decision-regions.svg (the prediction over the data's range, training points on top) and, for images \
            with data.augment, augmentation.svg (training images beside their augmented versions).
            """)

    @Argument(help: "A run directory written by `ddp train`.") var runDir: String
    @OptionGroup var plot: PlotOptions

    func run() throws {
        JobSession().execute {
            guard JobSession.launcherRank == 0 else { return }
            let plots = try RunPlots.write(runDirectory: runDir, options: plot.options)
            for item in plots { print("\(runDir)/\(RunPlots.directoryName)/\(item.file)") }
        }
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write RUN_DIR/report.html: config, summary, final test metrics, timing and ranks, plots, every epoch.")

    @Argument(help: "A run directory written by `ddp train`.") var runDir: String
    @OptionGroup var plot: PlotOptions

    func run() throws {
        JobSession().execute {
            guard JobSession.launcherRank == 0 else { return }
            print(try HTMLReport.write(runDirectory: runDir, options: plot.options))
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train several configs (and sweeps of a key) and compare them in one table and OUT/index.html.",
        discussion: """
            Each config is one variant (times every combination of --sweep values), trained into OUT/<variant>. \
            Prints a table (epochs, best epoch, train loss, best val_loss, generalization gap, val/test accuracy, \
            dense-kernel L2 norm, share of |w| < 1e-3, time) and writes OUT/index.html with every variant's val_loss \
            curve and plots. Variants train in turn in this process; with --jobs N, N at a time as `ddp train` \
            processes; under mpirun, in turn, each on all ranks. With --repeats R each variant trains with seeds \
            seed … seed+R−1 into OUT/<variant>/seed-<s>, and the table shows one row per variant: means over the \
            seeds, the loss and accuracy figures as mean ± std (population std, as np.std). \
            Example: ddp compare configs/circles*.yaml
            """)

    @Argument(help: "YAML configs, one variant each.") var configs: [String]
    @OptionGroup var options: ConfigOptions
    @Option(name: .customLong("sweep"),
            help: ArgumentHelp("One variant per value, e.g. --sweep optimizer.lr=0.1,0.01 (repeatable: every combination).",
                               valueName: "dotted.key=v1,v2,..."))
    var sweeps: [String] = []
    @Option(help: "Output directory: a run directory per variant, index.html, table.md, results.json.") var out = "compare"
    @Option(help: "Variants trained at once, each as a `ddp train` process (1: in turn, in this process).") var jobs = 1
    @Option(help: "Train each variant with seeds seed, seed+1, …, seed+R−1 and show mean ± std over them.") var repeats = 1
    @OptionGroup var plot: PlotOptions

    func validate() throws {
        if configs.isEmpty { throw ValidationError("give at least one config file") }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
    }

    func run() throws {
        // Variants train in this process (or in `ddp train` children, which choose alike).
        BLASKernels.selectForThisHost()
        let session = JobSession()
        session.execute {
            let variants = try RepeatedComparison.expand(Comparison.variants(configs: configs, overrides: options.overrides, sweeps: sweeps),
                                                         repeats: repeats)
            let start = Date()
            let console = Console(enabled: JobSession.launcherRank == 0)
            console.line("ddp compare: \(variants.count) variant\(variants.count == 1 ? "" : "s") into \(out)/: "
                         + variants.map(\.name).joined(separator: ", "))
            BLASKernels.announce(isRoot: JobSession.launcherRank == 0, quiet: false)
            if MPICommunicator.launchedByMPI {
                // One watchdog for the whole comparison: the most patient variant's deadline.
                let timeout = variants.map(\.config.distributed.timeoutSeconds).max() ?? DistributedConfig().timeoutSeconds
                try session.startCommunicator(watchdogTimeout: timeout) { communicator in
                    for (index, variant) in variants.enumerated() {
                        let outcome = try Comparison.train(variant, runDirectory: directory(variant), communicator: communicator)
                        if communicator.isRoot { report(index, variants.count, variant, outcome: outcome) }
                    }
                    if communicator.isRoot { try finish(variants, start: start) }
                }
            } else if jobs > 1 && variants.count > 1 {
                try trainInProcesses(variants)
                try finish(variants, start: start)
            } else {
                for (index, variant) in variants.enumerated() {
                    let outcome = try Comparison.train(variant, runDirectory: directory(variant))
                    report(index, variants.count, variant, outcome: outcome)
                }
                try finish(variants, start: start)
            }
        }
    }

    func directory(_ variant: ComparisonVariant) -> String { out + "/" + variant.name }

    func report(_ index: Int, _ count: Int, _ variant: ComparisonVariant, outcome: TrainingOutcome) {
        report(index, count, variant, epochs: outcome.epochsRun, best: outcome.bestEpoch, monitor: outcome.monitor, value: outcome.bestValue)
    }

    func report(_ index: Int, _ count: Int, _ variant: ComparisonVariant, epochs: Int, best: Int, monitor: String, value: Double?) {
        print("[\(index + 1)/\(count)] \(variant.name): \(epochs) epochs, best epoch \(best) (\(monitor) "
              + (value.map { String(format: "%.4f", $0) } ?? "—") + ")")
    }

    /// Plots and a report per variant, then the table and index.html (rank 0 / the one process).
    func finish(_ variants: [ComparisonVariant], start: Date) throws {
        var rows: [ComparisonRow] = [], runs: [LoadedRun] = []
        var plots: [String: [RunPlots.Plot]] = [:]
        for variant in variants {
            let run = try LoadedRun(directory: directory(variant), weights: plot.weights)
            let written = try RunPlots.write(run: run, options: plot.options)
            try HTMLReport.write(run: run, plots: written)
            plots[variant.name] = written
            runs.append(run)
            let source = ([variant.configPath] + variant.overrides.map { "--set \($0)" }).joined(separator: " ")
            rows.append(Comparison.row(variant: variant.name, run: run, source: source))
        }
        let wall = Date().timeIntervalSince(start)
        var command = "ddp compare " + configs.joined(separator: " ")
        command += options.overrides.map { " --set \($0)" }.joined() + sweeps.map { " --sweep \($0)" }.joined()
        if repeats > 1 { command += " --repeats \(repeats)" }
        let index = try Comparison.writeIndex(directory: out, rows: rows, runs: runs, plots: plots, command: command, wallSeconds: wall)
        print("")
        if repeats > 1 {
            // One row per variant over its seeds; table.md and results.json keep every run.
            let summary = RepeatedComparison.table(rows)
            try AtomicFile.write(summary + "\n", to: out + "/repeats.txt")
            print(summary)
            print("means over \(repeats) seeds (± population std, as np.std); every run: \(out)/table.md")
        } else {
            print(Comparison.table(rows))
        }
        print("")
        print("ddp compare: \(variants.count) variant\(variants.count == 1 ? "" : "s") in " + String(format: "%.1f s", wall) + "; wrote \(index)")
    }

    /// Runs up to `jobs` `ddp train` processes at once; each writes its output to OUT/<variant>/train.log.
    func trainInProcesses(_ variants: [ComparisonVariant]) throws {
        let executable = Self.executablePath()
        var pending = Array(variants.enumerated())
        var running: [(index: Int, variant: ComparisonVariant, process: Process)] = []
        var failures: [String] = []
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
                process.arguments = ["train", variant.configPath, "--run-dir", directory, "--quiet", "--overwrite"]
                    + variant.overrides.flatMap { ["--set", $0] }
                var environment = ProcessInfo.processInfo.environment
                // Several small trainings share the cores: one BLAS thread each.
                if environment["OPENBLAS_NUM_THREADS"] == nil { environment["OPENBLAS_NUM_THREADS"] = "1" }
                process.environment = environment
                process.standardOutput = log
                process.standardError = log
                try process.run()
                running.append((index, variant, process))
            }
            usleep(20_000)
            for entry in running where !entry.process.isRunning {
                let logPath = directory(entry.variant) + "/train.log"
                if entry.process.terminationStatus == 0 {
                    let end = (try? RunMetrics.load(path: directory(entry.variant) + "/metrics.jsonl"))?.end
                    report(entry.index, variants.count, entry.variant, epochs: end?.epochsRun ?? 0, best: end?.bestEpoch ?? 0,
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
            throw DDPError(.training, "\(failures.count) variant(s) failed:\n" + failures.joined(separator: "\n"))
        }
    }

    static func executablePath() -> String {
        let linked = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        if !linked.isEmpty { return linked }
        return Bundle.main.executablePath ?? CommandLine.arguments[0]
    }
}
