import ArgumentParser
import DDPCore
import DDPExperiments
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
        console.line("ddp: wrote \(counted(plots.count, "plot")) to \(runDirectory)/\(RunPlots.directoryName): "
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
    @Flag(help: "Replace an earlier comparison's output in --out (otherwise it is kept and compare refuses).") var overwrite = false
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
            let variants = try ComparisonVariant.repeated(ComparisonVariant.variants(configs: configs, overrides: options.overrides, sweeps: sweeps),
                                                          repeats: repeats)
            try RunDirectory.refuseEarlierOutput(out, markers: ["results.json", "table.md", "index.html"], command: "ddp compare",
                                                 overwrite: overwrite)
            let start = Date()
            let training = ComparisonTraining(variants: variants, outputDirectory: out, start: start)
            let console = Console(enabled: JobSession.launcherRank == 0)
            console.line("ddp compare: \(counted(variants.count, "variant")) into \(out)/: "
                         + variants.map(\.name).joined(separator: ", "))
            BLASKernels.announce(isRoot: JobSession.launcherRank == 0, quiet: false)
            if MPICommunicator.launchedByMPI {
                try session.startCommunicator(watchdogTimeout: training.watchdogTimeout) { communicator in
                    try training.trainInTurn(communicator: communicator)
                    if communicator.isRoot { try finish(training, start: start) }
                }
            } else if jobs > 1 && variants.count > 1 {
                try training.trainInProcesses(jobs: jobs, executable: Self.executablePath())
                try finish(training, start: start)
            } else {
                try training.trainInTurn()
                try finish(training, start: start)
            }
        }
    }

    /// Plots and a report per variant, then the table and index.html (rank 0 / the one process).
    func finish(_ training: ComparisonTraining, start: Date) throws {
        let variants = training.variants
        var rows: [ComparisonRow] = [], runs: [LoadedRun] = []
        var plots: [String: [RunPlots.Plot]] = [:]
        for variant in variants {
            let run = try LoadedRun(directory: training.directory(variant), weights: plot.weights)
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
        print("ddp compare: \(counted(variants.count, "variant")) in " + String(format: "%.1f s", wall) + "; wrote \(index)")
    }

    /// This ddp binary, which `--jobs` and `ddp bench` start as child processes.
    static func executablePath() -> String {
        let linked = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        if !linked.isEmpty { return linked }
        return Bundle.main.executablePath ?? CommandLine.arguments[0]
    }
}
