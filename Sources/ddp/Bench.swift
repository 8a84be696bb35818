import ArgumentParser
import DDPCore
import DDPReport
import Foundation

/// `ddp bench`: the scaling benchmark users run on their own machines and clusters.
///
/// Every configuration is a real `ddp train` (under `mpirun` for more than one rank), run once
/// per round, round after round, so that a machine whose speed drifts over minutes affects all
/// of them alike; figures are medians over rounds, and every ratio is taken within a round.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput and scaling of a config: rank counts, strong and weak scaling, threads against ranks.",
        discussion: """
            Prints samples/s, speedup over one process, efficiency and the step-time breakdown (data, compute, \
            communication, update) for each case, as medians over interleaved rounds; writes OUT/bench.json and \
            OUT/speedup.svg. Example: ddp bench configs/fashion-mnist.yaml --ranks 1,2 --repeats 5
            """)

    @Argument(help: "The YAML config to train.") var config: String
    @OptionGroup var options: ConfigOptions
    @Option(help: "Rank counts, comma separated.") var ranks = "1,2,4"
    @Option(help: "strong, weak, or strong,weak: weak keeps training.batch_size per rank.") var scaling = "strong,weak"
    @Flag(inversion: .prefixedNo, help: "Also run one process with T BLAS threads for every rank count T > 1.")
    var threadComparison = true
    @Flag(help: "Also run every multi-rank case with the other gradient syncs: the sharded update over MPI collectives (distributed.shared_memory=false) and one allreduce (distributed.sharded_update=false).")
    var allreduce = false
    @Option(help: "Rounds; every case runs once per round. A round where the host took part of a core or moved the cores apart is left out and made again (at most as many more).") var repeats = 4
    @Option(help: "Epochs per run; figures are the median of epochs 2… (epoch 1 warms up).") var epochs = 3
    @Option(help: "mpirun hostfile for multi-node runs.") var hostfile: String?
    @Option(help: "Seconds a multi-core case waits for the host to bring its cores back together before it runs anyway (see the cross-core check).")
    var layoutWait = 60.0
    @Option(help: "Extra mpirun arguments, one string (e.g. \"--mca btl self,vader,tcp\").") var mpirunArgs = ""
    @Option(help: "Output directory for bench.json, speedup.svg and the run directories.") var out = "bench"
    @Option(help: "A Python with torch, numpy and mpi4py: also run the PyTorch peer (--peer-script) at each weak rank count.")
    var peer: String?
    @Option(help: "The PyTorch peer script (shared/peers/fmnist_torch.py).") var peerScript: String?
    @Option(help: "sgemm_peak.py: measure the 8-GEMM step limit with --peer's Python each round.") var gemmScript: String?
    @Flag(inversion: .prefixedNo, help: "Also run each multi-rank case as N independent processes without MPI (one per core, batch as a rank's), the machine's ceiling for N ranks: what they would reach if communication were free. Not with --hostfile.")
    var ceiling = true

    func validate() throws {
        if rankCounts.isEmpty { throw ValidationError("--ranks: expected positive integers, got '\(ranks)'") }
        if scalings.isEmpty { throw ValidationError("--scaling: expected strong, weak or strong,weak, got '\(scaling)'") }
        if repeats < 1 || epochs < 1 { throw ValidationError("--repeats and --epochs must be at least 1") }
        if peer != nil && peerScript == nil { throw ValidationError("--peer needs --peer-script (shared/peers/fmnist_torch.py)") }
    }

    /// The rank counts, 1 always among them; empty when any item is not a positive integer
    /// ("1,x" is refused, not read as "1").
    var rankCounts: [Int] {
        let items = ranks.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        let values = items.compactMap { $0 }
        return values.count == items.count && values.allSatisfy { $0 > 0 } ? Array(Set(values + [1])).sorted() : []
    }
    var scalings: [String] {
        let values = scaling.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return values.allSatisfy { $0 == "strong" || $0 == "weak" } ? values : []
    }

    struct Case: Codable {
        var name: String
        var ranks: Int
        var threads: Int
        var scaling: String
        var sharded: Bool
        var sharedMemory = true
        var peer = false
        /// N plain processes at once, each with one rank's batch and no MPI (`--ceiling`).
        var independent = false
    }

    struct Figures: Codable {
        var samplesPerSecond: Double
        /// Shares of epoch time: data, compute, communication, update.
        var shares: [Double]
        /// Cases on more than one core: `CoreCheck.crossCoreSlowdown`, the higher of before and
        /// after the run these figures come from, and the limit it was held to.
        var crossCoreSlowdown: Double? = nil
        var crossCoreLimit: Double? = nil
        /// Runs made of this case in this round (see `measure`); the figures are the last one's.
        var attempts = 1
        /// OpenBLAS's kernel table ddp's run used (its metrics.jsonl end line); nil for the peers.
        var blasCore: String? = nil
    }

    func run() throws {
        let config = try options.load(self.config)
        let batch = config.training.batchSizePerRank ?? config.training.batchSize
        var cases = [Case(name: "np=1", ranks: 1, threads: 1, scaling: "-", sharded: false)]
        for n in rankCounts where n > 1 {
            if threadComparison { cases.append(Case(name: "1 process × \(n) threads", ranks: 1, threads: n, scaling: "-", sharded: false)) }
            for mode in scalings {
                cases.append(Case(name: "np=\(n) \(mode)", ranks: n, threads: 1, scaling: mode, sharded: true))
                if ceiling && hostfile == nil {
                    cases.append(Case(name: "np=\(n) \(mode), no comm", ranks: n, threads: 1, scaling: mode, sharded: true, independent: true))
                }
                if allreduce {
                    cases.append(Case(name: "np=\(n) \(mode) mpi", ranks: n, threads: 1, scaling: mode, sharded: true, sharedMemory: false))
                    cases.append(Case(name: "np=\(n) \(mode) allreduce", ranks: n, threads: 1, scaling: mode, sharded: false))
                }
            }
        }
        if peer != nil {
            for n in rankCounts { cases.append(Case(name: "torch peer np=\(n)", ranks: n, threads: 1, scaling: "weak", sharded: false, peer: true)) }
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let binary = Compare.executablePath()
        print("ddp bench: \(cases.count) cases × \(repeats) rounds (up to \(2 * repeats) if some are left out), \(epochs) epochs each, batch \(batch)"
              + (config.training.batchSizePerRank == nil ? " (global)" : " per rank") + "; \(ProcessInfo.processInfo.activeProcessorCount) cores")
        var rounds: [[String: Figures]] = []
        var gemmLimits: [Double] = []
        var gemmCores: Set<String> = []
        /// The layout limit as each round ended: what decided whether another round was needed.
        var roundLimits: [Double] = []
        var availability: [Double] = []
        let layout = Layout()
        let checkedCores = min(cases.map { $0.ranks * $0.threads }.max() ?? 1, ProcessInfo.processInfo.activeProcessorCount)
        /// A round counts when the host gave every core (`CoreCheck.availability`) and every
        /// checked multi-core case ran within `layoutTolerance` of the closest layout the bench
        /// has seen (`layout.limit`): its ratios then compare like with like. A run the check
        /// passed before the bench had seen the cores together (a bench that started apart kept
        /// np=2 at 84.8k and two threads at 53.5k samples/s, against 126k and 105k), or one kept
        /// after `maximumAttempts` runs apart, leaves its round out.
        func counts(_ index: Int) -> Bool {
            availability[index] >= Self.minimumAvailability && rounds[index].values.allSatisfy(layout.together)
        }
        var round = 0
        // Rounds left out are made again, at most `repeats` more, so that the medians come
        // from `repeats` rounds where the machine allows.
        while round < repeats || (rounds.indices.filter(counts).count < repeats && round < 2 * repeats) {
            round += 1
            var figures: [String: Figures] = [:]
            let before = CoreCheck.availability(threads: checkedCores)
            for item in cases {
                figures[item.name] = try measure(item, round: round, layout: layout) {
                    try item.peer ? runPeer(item)
                        : item.independent ? runIndependent(item, binary: binary, batch: batch, round: round)
                        : runOurs(item, binary: binary, batch: batch, round: round)
                }
            }
            if let limit = try gemmLimit(batch: batch) {
                gemmLimits.append(limit.samplesPerSecond)
                if let core = limit.blasCore { gemmCores.insert(core) }
                print("  round \(round)  " + Self.padded("8-GEMM limit (1 thread)", 28) + String(format: " %9.0f samples/s", limit.samplesPerSecond)
                      + (limit.blasCore.map { " (OpenBLAS \($0))" } ?? ""))
            }
            let cores = min(before, CoreCheck.availability(threads: checkedCores))
            availability.append(cores)
            print("  round \(round)  " + Self.padded("\(checkedCores) cores available", 28) + String(format: " %9.2f", cores)
                  + (cores < Self.minimumAvailability ? "  (left out: the host took part of a core)" : ""))
            rounds.append(figures)
            roundLimits.append(layout.limit)
        }
        for (index, figures) in rounds.enumerated() where availability[index] >= Self.minimumAvailability {
            let apart = figures.filter { !layout.together($0.value) }.map(\.key).sorted()
            if !apart.isEmpty {
                print("  round \(index + 1)  left out: " + apart.joined(separator: ", ")
                      + String(format: " ran with the cores apart (cross-core reads above %.2f× own)", layout.limit))
            }
        }
        var kept = rounds.indices.filter(counts)
        if kept.isEmpty {
            print("ddp bench: warning: no round ran with every core and the cores together; figures use all rounds")
            kept = Array(rounds.indices)
        }
        let keptGemm = gemmLimits.count == rounds.count ? kept.map { gemmLimits[$0] } : gemmLimits
        let summary = report(cases: cases, rounds: kept.map { rounds[$0] }, gemmLimits: keptGemm)
        try write(cases: cases, rounds: rounds, gemmLimits: gemmLimits, gemmCores: gemmCores.sorted(), availability: availability,
                  layoutLimits: roundLimits, kept: kept.map { $0 + 1 }, summary: summary)
    }

    /// Below this `CoreCheck.availability`, a round is left out of the figures.
    static let minimumAvailability = 0.9
    /// A multi-core run counts as made with the cores together when `CoreCheck.crossCoreSlowdown`
    /// before and after it is at most this many times the closest layout the bench has read
    /// (`Layout.closest`): on the AMD development VM it read 1.00–1.01 while np = 2 ran at
    /// 117–124k samples/s and 1.41–1.90 while np = 2 ran at 79–84k, switching every few seconds
    /// to minutes (2026-11-23). Relative,
    /// so that a machine whose cores never share a cache runs every case once.
    static let layoutTolerance = 1.25
    /// Runs of one case per round before its figures are taken whatever the check says.
    static let maximumAttempts = 4

    /// The closest layout the host has shown: the lower quartile of the checks made before and
    /// after each run (not those made while waiting for the layout, which would fill it with
    /// one layout). Not the lowest: on the Intel (Emerald Rapids) development VM, whose cores
    /// share no L2, a read of the other core's data takes 2.4× one of its own in the median, and
    /// 100 checks of a C copy of the probe read 1.60–2.77 in one layout (2026-12-07). The few
    /// low ones made a minimum-based limit reject nearly every run there, each after waiting
    /// `--layout-wait` for a layout that never came. The lower quartile stays at 1.00 on the AMD
    /// VM as long as a quarter of the checks find the cores together. It can rise as well as
    /// fall, so bench.json records the limit after each round.
    private final class Layout {
        private var readings: [Double] = []
        var closest: Double { readings.isEmpty ? .infinity : readings.sorted()[readings.count / 4] }
        /// A check; `recorded` ones count toward `closest`.
        func check(recorded: Bool = true) -> Double {
            let slowdown = CoreCheck.crossCoreSlowdown()
            if recorded { readings.append(slowdown) }
            return slowdown
        }
        var limit: Double { Bench.layoutTolerance * closest }
        /// Whether a run was made within `limit` of the closest layout (an unchecked one was).
        func together(_ figures: Figures) -> Bool { (figures.crossCoreSlowdown ?? 1) <= limit }
    }

    /// Runs a case. A case whose processes or threads share data across cores is checked with
    /// `CoreCheck.crossCoreSlowdown` before and after; it first waits (polling, up to
    /// `--layout-wait`) until the check says the cores are together, and is run again (up to
    /// `maximumAttempts` runs) when the check after says they came apart, so every case of a
    /// round is measured on the same core layout. Independent processes share nothing and are
    /// not checked (the no-comm ceiling ran at 129.1–130.9k either way). A rejected run is
    /// printed, not used; the figures record the check, its limit and the attempts.
    private func measure(_ item: Case, round: Int, layout: Layout, _ run: () throws -> Figures) throws -> Figures {
        let checked = item.ranks * item.threads > 1 && !item.independent && hostfile == nil
        var attempt = 0
        while true {
            attempt += 1
            var before = checked ? layout.check(recorded: false) : 1
            let waitEnd = ContinuousClock.now + .milliseconds(Int(layoutWait * 1000))
            while checked && before > layout.limit && ContinuousClock.now < waitEnd {
                Thread.sleep(forTimeInterval: 0.5)
                before = layout.check(recorded: false)
            }
            if checked { before = layout.check() }
            var figures = try run()
            let line = "  round \(round)  " + Self.padded(item.name, 28) + String(format: " %9.0f samples/s", figures.samplesPerSecond)
            guard checked else {
                print(line)
                return figures
            }
            let slowdown = max(before, layout.check())
            figures.crossCoreSlowdown = slowdown
            figures.crossCoreLimit = layout.limit
            figures.attempts = attempt
            let together = layout.together(figures)
            if together || attempt == Self.maximumAttempts {
                print(line + (together ? "" : String(format: "  (cores apart: cross-core reads %.2f× own, kept after %d runs)", slowdown, attempt)))
                return figures
            }
            print(line + String(format: "  (not used: cross-core reads %.2f× own, the host moved the cores apart; again)", slowdown))
        }
    }

    // MARK: Running

    private func runDirectory(_ item: Case, round: Int) -> String {
        let name = item.name.replacingOccurrences(of: ", ", with: "_").replacingOccurrences(of: " ", with: "_").replacingOccurrences(of: "×", with: "x")
        return "\(out)/runs/\(name)-r\(round)"
    }

    private func trainArguments(_ item: Case, directory: String) -> [String] {
        ["train", config, "--quiet", "--overwrite", "--run-dir", directory,
         "--set", "training.epochs=\(epochs)", "--set", "early_stopping=null", "--set", "data.test=null",
         "--set", "checkpoint.every_epochs=0", "--set", "distributed.sharded_update=\(item.sharded)",
         "--set", "distributed.shared_memory=\(item.sharedMemory)"] + options.overrides.flatMap { ["--set", $0] }
    }

    private func runOurs(_ item: Case, binary: String, batch: Int, round: Int) throws -> Figures {
        let directory = runDirectory(item, round: round)
        var arguments = trainArguments(item, directory: directory)
        if item.scaling == "weak" { arguments += ["--set", "training.batch_size_per_rank=\(batch)"] }
        if item.scaling == "strong" { arguments += ["--set", "training.batch_size=\(batch)", "--set", "training.batch_size_per_rank=null"] }
        let output: String
        if item.ranks == 1 {
            output = try Self.execute(binary, arguments, environment: ["OPENBLAS_NUM_THREADS": "\(item.threads)"], plain: true)
        } else {
            output = try Self.execute(try Self.mpirun(), mpirunFlags(item) + ["-x", "OPENBLAS_NUM_THREADS=\(item.threads)", binary] + arguments,
                                      environment: [:], plain: false)
        }
        let (timed, blasCore) = try Self.timedEpochs(directory, item, output: output)
        let rates = timed.compactMap(\.samplesPerSecond).sorted()
        guard !rates.isEmpty else { throw DDPError(.training, "bench case \(item.name) recorded no samples/s") }
        return Figures(samplesPerSecond: rates[rates.count / 2], shares: Self.shares(timed), blasCore: blasCore)
    }

    /// The ceiling of N ranks on this machine: N plain `ddp train` processes at once (pinned one
    /// per core with taskset where it exists, as mpirun's --bind-to core pins ranks), each with
    /// one rank's batch, no MPI: the same data, compute and update per step as a rank, minus all
    /// communication and SyncBatchNorm's collectives. A process updates every parameter where a
    /// rank of the sharded update updates 1/N of them, so (N − 1)/N of its measured update time
    /// is taken off its epoch; the figure is the sum of the processes' samples/s.
    private func runIndependent(_ item: Case, binary: String, batch: Int, round: Int) throws -> Figures {
        let perProcess = item.scaling == "strong" ? batch / item.ranks : batch
        guard perProcess > 0 else { throw DDPError(.config, "bench case \(item.name): a batch of \(batch) does not split over \(item.ranks) processes") }
        let taskset = Self.onPath("taskset")
        let pin = taskset != nil && item.ranks <= ProcessInfo.processInfo.activeProcessorCount
        var running: [(directory: String, run: RunningCommand)] = []
        for k in 0..<item.ranks {
            let directory = runDirectory(item, round: round) + "-p\(k)"
            let arguments = trainArguments(item, directory: directory)
                + ["--set", "training.batch_size=\(perProcess)", "--set", "training.batch_size_per_rank=null"]
            let command = pin ? (taskset!, ["-c", "\(k)", binary] + arguments) : (binary, arguments)
            running.append((directory, try Self.start(command.0, command.1, environment: ["OPENBLAS_NUM_THREADS": "1"], plain: true)))
        }
        // Every process is waited for before any failure is reported, so none is left running.
        let outputs = running.map { item in (item.directory, Result { try item.run.finish() }) }
        var total = 0.0
        var shares: [[Double]] = []
        var blasCore: String?
        for (directory, output) in outputs {
            let text = try output.get()
            let (timed, kernels) = try Self.timedEpochs(directory, item, output: text)
            blasCore = blasCore ?? kernels
            let kept = 1 / Double(item.ranks)
            let rates = timed.compactMap { epoch -> Double? in
                guard let seconds = epoch.seconds, let rate = epoch.samplesPerSecond, let update = epoch.updateSeconds else { return nil }
                return rate * seconds / (seconds - update * (1 - kept))
            }.sorted()
            guard !rates.isEmpty else { throw DDPError(.training, "bench case \(item.name) recorded no samples/s") }
            total += rates[rates.count / 2]
            shares.append(Self.shares(timed))
        }
        return Figures(samplesPerSecond: total, shares: shares[0], blasCore: blasCore)
    }

    /// What a finished case recorded: the epochs that count (all but the first, which warms up)
    /// and the OpenBLAS kernels it ran (`BLASKernels`).
    private static func timedEpochs(_ directory: String, _ item: Case, output: String) throws -> (epochs: [EpochMetrics], blasCore: String?) {
        let metrics = try? RunMetrics.load(path: directory + "/metrics.jsonl")
        let records = metrics?.epochs ?? []
        let timed = records.count > 1 ? Array(records.dropFirst()) : records
        guard !timed.isEmpty else { throw DDPError(.training, "bench case \(item.name) wrote no epochs; its output:\n\(output)") }
        return (timed, metrics?.end?.blasCore)
    }

    /// Mean shares of epoch time: data, compute, communication, update.
    private static func shares(_ timed: [EpochMetrics]) -> [Double] {
        func share(_ part: KeyPath<EpochMetrics, Double?>) -> Double {
            let values = timed.compactMap { epoch -> Double? in
                guard let part = epoch[keyPath: part], let total = epoch.seconds, total > 0 else { return nil }
                return part / total
            }
            return values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
        }
        return [\EpochMetrics.dataSeconds, \.computeSeconds, \.communicationSeconds, \.updateSeconds].map(share)
    }

    private func mpirunFlags(_ item: Case) -> [String] {
        var flags = ["-np", "\(item.ranks)"]
        if let hostfile { flags += ["--hostfile", hostfile] }
        else if item.ranks * item.threads > ProcessInfo.processInfo.activeProcessorCount { flags.append("--oversubscribe") }
        else { flags += ["--bind-to", "core"] }
        return flags + mpirunArgs.split(separator: " ").map(String.init)
    }

    private func runPeer(_ item: Case) throws -> Figures {
        guard let peer, let peerScript else { throw DDPError(.config, "--peer needs --peer-script") }
        let arguments = [peerScript, "--threads", "1", "--max-steps", "300"]
        let output = item.ranks == 1
            ? try Self.execute(peer, arguments, environment: ["OMP_NUM_THREADS": "1"], plain: true)
            : try Self.execute(try Self.mpirun(), mpirunFlags(item) + ["-x", "OMP_NUM_THREADS=1", peer] + arguments + ["--mpi"],
                               environment: [:], plain: false)
        guard let range = output.range(of: #"throughput=[0-9.]+"#, options: .regularExpression),
              let rate = Double(output[range].dropFirst("throughput=".count)) else {
            throw DDPError(.training, "the PyTorch peer printed no throughput; its output:\n\(output.suffix(2000))")
        }
        return Figures(samplesPerSecond: rate, shares: [])
    }

    /// The GEMM-bound limit of one single-threaded step as samples/s (sgemm_peak.py, openblas
    /// backend), measured with the kernel table ddp's runs use (`ddpKernels`), and the table
    /// the script's library reported running.
    private func gemmLimit(batch: Int) throws -> (samplesPerSecond: Double, blasCore: String?)? {
        guard let peer, let gemmScript else { return nil }
        let output = try Self.execute(peer, [gemmScript, "--backend", "openblas", "--threads", "1", "--batch", "\(batch)"],
                                      environment: Self.ddpKernels.map { ["OPENBLAS_CORETYPE": $0] } ?? [:], plain: true)
        guard let line = output.split(separator: "\n").first(where: { $0.contains("8 necessary GEMMs") }),
              let range = line.range(of: #"\): [0-9.]+ ms"#, options: .regularExpression),
              let milliseconds = Double(line[range].dropFirst(3).dropLast(3)) else {
            throw DDPError(.training, "sgemm_peak.py printed no 8-GEMM limit; its output:\n\(output.suffix(2000))")
        }
        let core = output.range(of: #"core=[A-Za-z0-9_]+"#, options: .regularExpression).map { String(output[$0].dropFirst("core=".count)) }
        return (Double(batch) / (milliseconds / 1000), core)
    }

    /// The `OPENBLAS_CORETYPE` that gives sgemm_peak.py's library (the system's, loaded through
    /// ctypes) the table ddp's own runs use on this host: the one they re-execute with (the
    /// bench itself never does), else the library's pick; nil where the user set the variable,
    /// which the bench's children inherit alike.
    static var ddpKernels: String? {
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil else { return nil }
        guard case let .reexecute(target)? = BLASKernels.decisionHere else { return BLASKernels.current }
        return target.core
    }

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

    // MARK: Reporting

    struct Row: Codable {
        var name: String, ranks: Int, threads: Int, scaling: String
        var samplesPerSecond: Double, speedup: Double, efficiency: Double
        var shares: [Double]
    }

    static func padded(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// Median over rounds of a ratio taken within each round.
    static func ratio(_ rounds: [[String: Figures]], _ a: String, _ b: String) -> Double? {
        let values = rounds.compactMap { round -> Double? in
            guard let x = round[a]?.samplesPerSecond, let y = round[b]?.samplesPerSecond, y > 0 else { return nil }
            return x / y
        }
        return values.isEmpty ? nil : median(values)
    }

    private func report(cases: [Case], rounds: [[String: Figures]], gemmLimits: [Double]) -> (rows: [Row], ratios: [String: Double]) {
        var rows: [Row] = []
        print("")
        print("case                          ranks thr   samples/s  speedup  effic.   data compute   comm update   (median of \(rounds.count) rounds; shares of epoch time)")
        for item in cases {
            let rates = rounds.compactMap { $0[item.name]?.samplesPerSecond }
            let speedup = Self.ratio(rounds, item.name, "np=1") ?? .nan
            let workers = Double(item.ranks * item.threads)
            let shares = (0..<4).map { k in Self.median(rounds.compactMap { $0[item.name]?.shares }.filter { $0.count == 4 }.map { $0[k] }) }
            let row = Row(name: item.name, ranks: item.ranks, threads: item.threads, scaling: item.scaling,
                          samplesPerSecond: Self.median(rates), speedup: speedup, efficiency: speedup / workers, shares: item.peer ? [] : shares)
            rows.append(row)
            let breakdown = item.peer ? "" : shares.map { String(format: " %5.1f%%", 100 * $0) }.joined()
            print(Self.padded(item.name, 29) + String(format: " %5d %3d %11.0f %7.2fx %6.0f%% ", item.ranks, item.threads,
                                                      row.samplesPerSecond, speedup, 100 * row.efficiency) + breakdown)
        }
        var ratios: [String: Double] = [:]
        for n in rankCounts where n > 1 {
            ratios["np=\(n) strong / 1 process × \(n) threads"] = Self.ratio(rounds, "np=\(n) strong", "1 process × \(n) threads")
            ratios["np=\(n) strong / np=\(n) strong allreduce"] = Self.ratio(rounds, "np=\(n) strong", "np=\(n) strong allreduce")
            ratios["np=\(n) strong / np=\(n) strong mpi"] = Self.ratio(rounds, "np=\(n) strong", "np=\(n) strong mpi")
            ratios["np=\(n) weak / np=\(n) weak allreduce"] = Self.ratio(rounds, "np=\(n) weak", "np=\(n) weak allreduce")
            ratios["np=\(n) weak / torch peer np=\(n)"] = Self.ratio(rounds, "np=\(n) weak", "torch peer np=\(n)")
            ratios["np=\(n) weak, no comm / torch peer np=\(n)"] = Self.ratio(rounds, "np=\(n) weak, no comm", "torch peer np=\(n)")
            for mode in scalings {
                ratios["np=\(n) \(mode) / np=\(n) \(mode), no comm"] = Self.ratio(rounds, "np=\(n) \(mode)", "np=\(n) \(mode), no comm")
            }
        }
        ratios["np=1 / torch peer np=1"] = Self.ratio(rounds, "np=1", "torch peer np=1")
        if gemmLimits.count == rounds.count {
            let shares = zip(rounds, gemmLimits).compactMap { round, limit in round["np=1"].map { $0.samplesPerSecond / limit } }
            ratios["np=1 / 8-GEMM limit"] = Self.median(shares)
        }
        let present = ratios.compactMapValues { $0 }
        if !present.isEmpty {
            print("")
            print("ratios within a round (median):")
            for key in present.keys.sorted() { print("  " + Self.padded(key, 45) + String(format: " %.2f", present[key]!)) }
        }
        return (rows, present)
    }

    private func write(cases: [Case], rounds: [[String: Figures]], gemmLimits: [Double], gemmCores: [String], availability: [Double],
                       layoutLimits: [Double], kept: [Int],
                       summary: (rows: [Row], ratios: [String: Double])) throws {
        struct Document: Codable {
            var command: String, date: String, cores: Int, repeats: Int, epochs: Int
            var cases: [Case], rounds: [[String: Figures]], gemmLimitSamplesPerSecond: [Double]
            /// The OpenBLAS kernel tables sgemm_peak.py's library ran the 8-GEMM limit with.
            var gemmLimitBLASCores: [String]
            /// Per round, `CoreCheck.availability` (the lower of before and after the round).
            var coreAvailability: [Double]
            /// Per round, the cross-core limit as it ended (`Layout.limit`); the last one chose
            /// the rounds kept.
            var layoutLimitAfterRound: [Double]
            /// The rounds (from 1) the summary uses.
            var keptRounds: [Int]
            var summary: [Row], ratios: [String: Double]
        }
        let document = Document(command: CommandLine.arguments.joined(separator: " "), date: ISO8601DateFormatter().string(from: Date()),
                                cores: ProcessInfo.processInfo.activeProcessorCount, repeats: repeats, epochs: epochs,
                                cases: cases, rounds: rounds, gemmLimitSamplesPerSecond: gemmLimits, gemmLimitBLASCores: gemmCores,
                                coreAvailability: availability, layoutLimitAfterRound: layoutLimits, keptRounds: kept, summary: summary.rows, ratios: summary.ratios)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try AtomicFile.write(Array(try encoder.encode(document)), to: "\(out)/bench.json")
        let kernels = Set(kept.flatMap { rounds[$0 - 1].values.compactMap(\.blasCore) }).sorted()
        try AtomicFile.write(Array(Self.markdown(summary, rounds: kept.count, of: rounds.count, blasCores: kernels, gemmCores: gemmCores).utf8), to: "\(out)/table.md")

        let counts = rankCounts
        var series: [LineChart.Series] = []
        for (index, mode) in scalings.enumerated() {
            let points = counts.compactMap { n -> (x: Double, y: Double)? in
                let row = summary.rows.first { $0.name == (n == 1 ? "np=1" : "np=\(n) \(mode)") }
                return row.flatMap { $0.speedup.isFinite ? (Double(n), $0.speedup) : nil }
            }
            series.append(.init(name: mode, label: "\(mode) scaling", color: Palette.color(index), points: points))
            let ceiling = counts.compactMap { n -> (x: Double, y: Double)? in
                let row = summary.rows.first { $0.name == (n == 1 ? "np=1" : "np=\(n) \(mode), no comm") }
                return row.flatMap { $0.speedup.isFinite ? (Double(n), $0.speedup) : nil }
            }
            if ceiling.count > 1 {
                series.append(.init(name: "\(mode)-ceiling", label: "\(mode), no communication (ceiling)",
                                    color: Palette.color(index), dashed: true, points: ceiling))
            }
        }
        if threadComparison {
            let points = counts.compactMap { n -> (x: Double, y: Double)? in
                let row = summary.rows.first { $0.name == (n == 1 ? "np=1" : "1 process × \(n) threads") }
                return row.flatMap { $0.speedup.isFinite ? (Double(n), $0.speedup) : nil }
            }
            series.append(.init(name: "threads", label: "1 process, T BLAS threads", color: Palette.color(3), points: points))
        }
        series.append(.init(name: "ideal", label: "ideal", color: RGB(hex: 0x888888), dashed: true,
                            points: counts.map { (Double($0), Double($0)) }))
        let chart = LineChart(title: "Speedup over one process", subtitle: "\(config), median of \(kept.count) rounds",
                              xTitle: "ranks (or threads)", yTitle: "speedup", series: series)
        try AtomicFile.write(chart.svg(), to: "\(out)/speedup.svg")
        print("")
        print("ddp bench: wrote \(out)/bench.json, \(out)/table.md and \(out)/speedup.svg")
    }

    /// The summary as the markdown table README's Scaling section shows (launch/docs --timing).
    /// `blasCores`: the OpenBLAS kernel tables ddp's runs used, and `gemmCores` the ones the
    /// 8-GEMM limit was measured with, named under the table.
    static func markdown(_ summary: (rows: [Row], ratios: [String: Double]), rounds kept: Int, of total: Int,
                         blasCores: [String] = [], gemmCores: [String] = []) -> String {
        func grouped(_ value: Double) -> String {
            let formatter = NumberFormatter()
            formatter.numberStyle = .decimal
            formatter.maximumFractionDigits = 0
            formatter.locale = Locale(identifier: "en_US")
            return formatter.string(from: NSNumber(value: value.rounded())) ?? String(format: "%.0f", value)
        }
        var lines = ["| case | ranks | BLAS threads | samples/s | speedup | efficiency | data | compute | comm | update |",
                     "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for row in summary.rows {
            let shares = row.shares.count == 4 ? row.shares.map { String(format: "%.1f %%", 100 * $0) } : ["", "", "", ""]
            lines.append("| \(row.name) | \(row.ranks) | \(row.threads) | \(grouped(row.samplesPerSecond)) | "
                         + String(format: "%.2f× | %.0f %%", row.speedup, 100 * row.efficiency) + " | " + shares.joined(separator: " | ") + " |")
        }
        if !blasCores.isEmpty {
            lines.append("")
            lines.append("ddp's runs used OpenBLAS's \(blasCores.joined(separator: " and ")) kernels (`blas_core` in their metrics.jsonl)"
                         + (gemmCores.isEmpty ? "." : "; the 8-GEMM limit was measured with its \(gemmCores.joined(separator: " and ")) kernels (sgemm_peak.py)."))
        }
        if kept < total {
            lines.append("")
            lines.append("Medians of \(kept) of \(total) rounds: in the \(total - kept == 1 ? "other" : "others") the host gave less than every core, or ran a case with the cores apart (`ddp bench`'s core and cross-core checks).")
        }
        if !summary.ratios.isEmpty {
            lines.append("")
            lines.append("Ratios within a round (median): "
                         + summary.ratios.keys.sorted().map { "\($0) **" + String(format: "%.2f", summary.ratios[$0]!) + "**" }.joined(separator: "; ") + ".")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
