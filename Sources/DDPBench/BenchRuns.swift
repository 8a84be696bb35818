import DDPCore
import DDPReport
import Foundation

/// How each case runs: `ddp train` plainly, under mpirun, as independent processes, or the PyTorch peer.
extension ScalingBench {
    func runDirectory(_ item: Case, round: Int) -> String {
        let name = item.name.replacingOccurrences(of: ", ", with: "_").replacingOccurrences(of: " ", with: "_").replacingOccurrences(of: "×", with: "x")
        return "\(out)/runs/\(name)-r\(round)"
    }

    func trainArguments(_ item: Case, directory: String) -> [String] {
        ["train", config, "--quiet", "--overwrite", "--run-dir", directory,
         "--set", "training.epochs=\(epochs)", "--set", "early_stopping=null", "--set", "data.test=null",
         "--set", "checkpoint.every_epochs=0", "--set", "distributed.sharded_update=\(item.sharded)",
         "--set", "distributed.shared_memory=\(item.sharedMemory)", "--set", "distributed.deterministic=\(item.deterministic)"]
            + overrides.flatMap { ["--set", $0] }
    }

    func runOurs(_ item: Case, binary: String, batch: Int, round: Int) throws -> Figures {
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
    func runIndependent(_ item: Case, binary: String, batch: Int, round: Int) throws -> Figures {
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
    static func timedEpochs(_ directory: String, _ item: Case, output: String) throws -> (epochs: [EpochMetrics], blasCore: String?) {
        let metrics = try? RunMetrics.load(path: directory + "/metrics.jsonl")
        let records = metrics?.epochs ?? []
        let timed = records.count > 1 ? Array(records.dropFirst()) : records
        guard !timed.isEmpty else { throw DDPError(.training, "bench case \(item.name) wrote no epochs; its output:\n\(output)") }
        return (timed, metrics?.end?.blasCore)
    }

    /// Mean shares of epoch time: data, compute, communication, update.
    static func shares(_ timed: [EpochMetrics]) -> [Double] {
        func share(_ part: KeyPath<EpochMetrics, Double?>) -> Double {
            let values = timed.compactMap { epoch -> Double? in
                guard let part = epoch[keyPath: part], let total = epoch.seconds, total > 0 else { return nil }
                return part / total
            }
            return values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
        }
        return [\EpochMetrics.dataSeconds, \.computeSeconds, \.communicationSeconds, \.updateSeconds].map(share)
    }

    func mpirunFlags(_ item: Case) -> [String] {
        var flags = ["-np", "\(item.ranks)"]
        if let hostfile { flags += ["--hostfile", hostfile] }
        else if item.ranks * item.threads > ProcessInfo.processInfo.activeProcessorCount { flags.append("--oversubscribe") }
        else { flags += ["--bind-to", "core"] }
        return flags + mpirunArgs.split(separator: " ").map(String.init)
    }

    /// The PyTorch peer's `model` ("mlp", or "cnn" for a config whose layers take images), 300
    /// steps of the MLP or 120 of the slower CNN.
    func runPeer(_ item: Case, model: String) throws -> Figures {
        guard let peer, let peerScript else { throw DDPError(.config, "--peer needs --peer-script") }
        let arguments = [peerScript, "--model", model, "--threads", "1", "--max-steps", model == "cnn" ? "120" : "300"]
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
    func gemmLimit(batch: Int) throws -> (samplesPerSecond: Double, blasCore: String?)? {
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
}
