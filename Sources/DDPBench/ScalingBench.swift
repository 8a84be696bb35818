import DDPCore
import Foundation

/// `ddp bench`: the scaling benchmark users run on their own machines and clusters.
///
/// Every configuration is a real `ddp train` (under `mpirun` for more than one rank), run once
/// per round, round after round, so that a machine whose speed drifts over minutes affects all
/// of them alike; figures are medians over rounds, and every ratio is taken within a round.
/// The CLI's `ddp bench` parses its options into these settings and calls `run()`.
public struct ScalingBench {
    /// The YAML config every case trains, and the `--set` overrides each run gets.
    public var config: String
    public var overrides: [String] = []
    /// The `ddp` executable each case runs (`ddp train`, under `mpirun` for several ranks).
    public var binary: String
    /// Rank counts, 1 among them.
    public var rankCounts: [Int] = [1, 2, 4]
    /// "strong", "weak" or both: weak keeps training.batch_size per rank.
    public var scalings: [String] = ["strong", "weak"]
    /// Also one process with T BLAS threads for every rank count T > 1.
    public var threadComparison = true
    /// Also every multi-rank case with the other gradient syncs (over MPI collectives, one allreduce).
    public var allreduce = false
    /// Also one process and every strong-scaling rank count in the deterministic mode.
    public var deterministic = false
    /// Rounds; every case runs once per round.
    public var repeats = 4
    /// Epochs per run; figures are the median of epochs 2… (epoch 1 warms up).
    public var epochs = 3
    public var hostfile: String?
    /// Seconds a multi-core case waits for the host to bring its cores back together.
    public var layoutWait = 60.0
    /// Extra mpirun arguments, one string.
    public var mpirunArgs = ""
    /// Output directory for bench.json, table.md, speedup.svg and the run directories.
    public var out = "bench"
    /// A Python with torch, numpy and mpi4py, the PyTorch peer script, and sgemm_peak.py.
    public var peer: String?
    public var peerScript: String?
    public var gemmScript: String?
    /// Also each multi-rank case as N independent processes without MPI: the machine's ceiling.
    public var ceiling = true

    public init(config: String, binary: String) {
        self.config = config
        self.binary = binary
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
        /// `distributed.deterministic: true` (`--deterministic`).
        var deterministic = false
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

    public func run() throws {
        let config = try TrainingConfig.load(path: self.config, overrides: overrides)
        let batch = config.training.batchSizePerRank ?? config.training.batchSize
        let cases = benchCases()
        // A CNN runs the peer's CNN; sgemm_peak.py knows the MLP's GEMMs only, so no 8-GEMM limit.
        let convolutional = ModelConfig.takesImage(config.model.layers)
        if convolutional && gemmScript != nil { print("ddp bench: the 8-GEMM limit is the MLP's; not measured for this CNN") }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        print("ddp bench: \(cases.count) cases × \(repeats) rounds (up to \(2 * repeats) if some are left out), \(epochs) epochs each, batch \(batch)"
              + (config.training.batchSizePerRank == nil ? " (global)" : " per rank") + "; \(ProcessInfo.processInfo.activeProcessorCount) cores")
        var log = RoundLog()
        let layout = Layout()
        let checkedCores = min(cases.map { $0.ranks * $0.threads }.max() ?? 1, ProcessInfo.processInfo.activeProcessorCount)
        // Rounds left out are made again, at most `repeats` more, so that the medians come
        // from `repeats` rounds where the machine allows.
        while log.rounds.count < repeats || (log.counted(layout: layout).count < repeats && log.rounds.count < 2 * repeats) {
            try runRound(log.rounds.count + 1, cases: cases, batch: batch, convolutional: convolutional, checkedCores: checkedCores,
                         layout: layout, log: &log)
        }
        log.printCasesApart(layout: layout)
        let kept = log.kept(layout: layout)
        let keptGemm = log.gemmLimits.count == log.rounds.count ? kept.map { log.gemmLimits[$0] } : log.gemmLimits
        let summary = report(cases: cases, rounds: kept.map { log.rounds[$0] }, gemmLimits: keptGemm)
        try write(cases: cases, rounds: log.rounds, gemmLimits: log.gemmLimits, gemmCores: log.gemmCores.sorted(), availability: log.availability,
                  layoutLimits: log.layoutLimits, kept: kept.map { $0 + 1 }, summary: summary)
    }

    /// One process, then for each rank count above 1: that many BLAS threads (`threadComparison`),
    /// and per scaling the ranks, their no-comm ceiling and the other gradient syncs as asked;
    /// last the PyTorch peer at each rank count (`peer`).
    private func benchCases() -> [Case] {
        var cases = [Case(name: "np=1", ranks: 1, threads: 1, scaling: "-", sharded: false)]
        if deterministic { cases.append(Case(name: "np=1 deterministic", ranks: 1, threads: 1, scaling: "-", sharded: true, deterministic: true)) }
        for n in rankCounts where n > 1 {
            if threadComparison { cases.append(Case(name: "1 process × \(n) threads", ranks: 1, threads: n, scaling: "-", sharded: false)) }
            for mode in scalings {
                cases.append(Case(name: "np=\(n) \(mode)", ranks: n, threads: 1, scaling: mode, sharded: true))
                if ceiling && hostfile == nil {
                    cases.append(Case(name: "np=\(n) \(mode), no comm", ranks: n, threads: 1, scaling: mode, sharded: true, independent: true))
                }
                if deterministic && mode == "strong" {
                    cases.append(Case(name: "np=\(n) strong deterministic", ranks: n, threads: 1, scaling: mode, sharded: true, deterministic: true))
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
        return cases
    }

    /// Round `round`: every case once, the 8-GEMM limit when `gemmScript` is set, and the share of
    /// `checkedCores` the host gave (the lower of before and after), all added to `log`.
    private func runRound(_ round: Int, cases: [Case], batch: Int, convolutional: Bool, checkedCores: Int, layout: Layout,
                          log: inout RoundLog) throws {
        var figures: [String: Figures] = [:]
        let before = CoreCheck.availability(threads: checkedCores)
        for item in cases {
            figures[item.name] = try measure(item, round: round, layout: layout) {
                try item.peer ? runPeer(item, model: convolutional ? "cnn" : "mlp")
                    : item.independent ? runIndependent(item, binary: binary, batch: batch, round: round)
                    : runOurs(item, binary: binary, batch: batch, round: round)
            }
        }
        if !convolutional, let limit = try gemmLimit(batch: batch) {
            log.gemmLimits.append(limit.samplesPerSecond)
            if let core = limit.blasCore { log.gemmCores.insert(core) }
            print("  round \(round)  " + Self.padded("8-GEMM limit (1 thread)", 28) + String(format: " %9.0f samples/s", limit.samplesPerSecond)
                  + (limit.blasCore.map { " (OpenBLAS \($0))" } ?? ""))
        }
        let cores = min(before, CoreCheck.availability(threads: checkedCores))
        log.availability.append(cores)
        print("  round \(round)  " + Self.padded("\(checkedCores) cores available", 28) + String(format: " %9.2f", cores)
              + (cores < Self.minimumAvailability ? "  (left out: the host took part of a core)" : ""))
        log.rounds.append(figures)
        log.layoutLimits.append(layout.limit)
    }

    /// What the rounds measured: one entry per round in each array (in `gemmLimits` only with
    /// `gemmScript`), and the OpenBLAS kernel tables the GEMM limits ran on.
    private struct RoundLog {
        var rounds: [[String: Figures]] = []
        var gemmLimits: [Double] = []
        var gemmCores: Set<String> = []
        /// The layout limit as each round ended: what decided whether another round was needed.
        var layoutLimits: [Double] = []
        var availability: [Double] = []

        /// A round counts when the host gave every core (`CoreCheck.availability`) and every
        /// checked multi-core case ran within `layoutTolerance` of the closest layout the bench
        /// has seen (`layout.limit`): its ratios then compare like with like. A run the check
        /// passed before the bench had seen the cores together (a bench that started apart kept
        /// np=2 at 84.8k and two threads at 53.5k samples/s, against 126k and 105k), or one kept
        /// after `maximumAttempts` runs apart, leaves its round out.
        func counts(_ index: Int, layout: Layout) -> Bool {
            availability[index] >= ScalingBench.minimumAvailability && rounds[index].values.allSatisfy(layout.together)
        }

        /// The indices of the rounds that count, by the layout limit now.
        func counted(layout: Layout) -> [Int] { rounds.indices.filter { counts($0, layout: layout) } }

        /// For each round the host gave every core, the cases that ran with the cores apart.
        func printCasesApart(layout: Layout) {
            for (index, figures) in rounds.enumerated() where availability[index] >= ScalingBench.minimumAvailability {
                let apart = figures.filter { !layout.together($0.value) }.map(\.key).sorted()
                if !apart.isEmpty {
                    print("  round \(index + 1)  left out: " + apart.joined(separator: ", ")
                          + String(format: " ran with the cores apart (cross-core reads above %.2f× own)", layout.limit))
                }
            }
        }

        /// The rounds the figures come from: those that count, else (with a warning) all of them.
        func kept(layout: Layout) -> [Int] {
            let kept = counted(layout: layout)
            guard kept.isEmpty else { return kept }
            print("ddp bench: warning: no round ran with every core and the cores together; figures use all rounds")
            return Array(rounds.indices)
        }
    }

    /// Below this `CoreCheck.availability`, a round is left out of the figures.
    static let minimumAvailability = 0.9
    /// A multi-core run counts as made with the cores together when `CoreCheck.crossCoreSlowdown`
    /// before and after it is at most this many times the closest layout the bench has read
    /// (`Layout.closest`): on the AMD development VM it read 1.00–1.01 or 1.41–1.90, np = 2
    /// training at 117–124k or 79–84k samples/s (docs/PERFORMANCE.md, 'The bench's core-layout
    /// check (CoreCheck, ScalingBench)'). Relative, so that a machine whose cores never share a
    /// cache runs every case once.
    static let layoutTolerance = 1.25
    /// Runs of one case per round before its figures are taken whatever the check says.
    static let maximumAttempts = 4

    /// The closest layout the host has shown: the lower quartile of the checks made before and
    /// after each run (not those made while waiting for the layout, which would fill it with
    /// one layout). Not the lowest: on the Intel (Emerald Rapids) development VM, whose cores
    /// share no L2, checks in one layout read 1.60–2.77 (docs/PERFORMANCE.md, 'The bench's
    /// core-layout check (CoreCheck, ScalingBench)'). The few low ones made a minimum-based
    /// limit reject nearly every run there, each after waiting `--layout-wait` for a layout
    /// that never came. The lower quartile stays at 1.00 on the AMD VM as long as a quarter of
    /// the checks find the cores together. It can rise as well as fall, so bench.json records
    /// the limit after each round.
    private final class Layout {
        private var readings: [Double] = []
        var closest: Double { readings.isEmpty ? .infinity : readings.sorted()[readings.count / 4] }
        /// A check; `recorded` ones count toward `closest`.
        func check(recorded: Bool = true) -> Double {
            let slowdown = CoreCheck.crossCoreSlowdown()
            if recorded { readings.append(slowdown) }
            return slowdown
        }
        var limit: Double { ScalingBench.layoutTolerance * closest }
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
}
