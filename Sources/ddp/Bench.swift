import ArgumentParser
import DDPBench
import Foundation

/// `ddp bench`: its options, handed to the scaling benchmark (`ScalingBench`, in DDPBench).
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
    @Flag(help: "Also run one process and every strong-scaling rank count with distributed.deterministic=true (the same bits at any np), for the cost of that mode.")
    var deterministic = false
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

    func run() throws {
        var bench = ScalingBench(config: config, binary: Compare.executablePath())
        bench.overrides = options.overrides
        bench.rankCounts = rankCounts
        bench.scalings = scalings
        bench.threadComparison = threadComparison
        bench.allreduce = allreduce
        bench.deterministic = deterministic
        bench.repeats = repeats
        bench.epochs = epochs
        bench.hostfile = hostfile
        bench.layoutWait = layoutWait
        bench.mpirunArgs = mpirunArgs
        bench.out = out
        bench.peer = peer
        bench.peerScript = peerScript
        bench.gemmScript = gemmScript
        bench.ceiling = ceiling
        try bench.run()
    }
}
