import ArgumentParser
import DDPCore
import _CPreemption
import Foundation

@main
struct DDP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddp",
        abstract: "Data-parallel neural-network training over MPI and OpenBLAS, driven by YAML configs.",
        discussion: "Run on N processes with `mpirun -np N ddp train CONFIG` (or launch/train). See README.md.",
        subcommands: [Train.self, Summary.self, Evaluate.self, Predict.self, Plot.self, Compare.self, CrossValidate.self, Report.self, Bench.self,
                      ConfigReferenceCommand.self]
    )

    @Flag(help: "Print ddp's version and commit, and the Swift, MPI and OpenBLAS (with its kernel table) it runs with.")
    var version = false

    func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print(VersionReport.text)
    }
}

/// Options shared by commands that read a config.
struct ConfigOptions: ParsableArguments {
    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key, e.g. --set training.epochs=3 (repeatable).", valueName: "dotted.key=value"))
    var overrides: [String] = []

    func load(_ path: String) throws -> TrainingConfig {
        try TrainingConfig.load(path: path, overrides: overrides)
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a model from a YAML config (one process, or every rank under mpirun).")

    @Argument(help: "The YAML config.") var config: String
    @OptionGroup var options: ConfigOptions
    @Option(help: "Run directory (default runs/<config name>-<time>).") var runDir: String?
    @Flag(help: "Continue from the newest valid checkpoint in --run-dir.") var resume = false
    @Flag(help: "No per-epoch lines or progress display.") var quiet = false
    @Flag(help: "Replace an earlier run in --run-dir (a fresh run otherwise refuses a directory that holds one).") var overwrite = false
    @Flag(help: "At the end, write SVG plots into the run directory's plots/ (rank 0 only; see ddp plot).") var plot = false
    @Flag(help: "Write RUN_DIR/trace.json: every rank's step timeline as Chrome trace events (open in Perfetto or chrome://tracing).") var trace = false

    func validate() throws {
        if resume && runDir == nil { throw ValidationError("--resume needs --run-dir: the run directory to continue") }
        if resume && overwrite { throw ValidationError("--resume continues the run in --run-dir and --overwrite replaces it: choose one") }
    }

    func run() throws {
        BLASKernels.selectForThisHost()
        let session = JobSession()
        var preempted = false
        session.execute {
            // SIGTERM, SIGUSR1, SIGINT: finish the step, checkpoint it, exit 75 (see Trainer.preempt).
            let installed = ddp_preemption_install()
            guard installed == 0 else { throw DDPError(.training, "cannot install the preemption signal handlers (errno \(installed))") }
            let config = try options.load(self.config)
            // A single process reads its data here; under MPI each node reads it once, into
            // memory its ranks share, once MPI runs (below).
            let localData = MPICommunicator.launchedByMPI ? nil : try RunData(config: config)
            // Errors every rank would hit alike, before any rank starts MPI: shapes, the initial
            // weights file (read once: rank 0 trains from these tensors), a directory that
            // already holds a run.
            let layout = try ParameterLayout(config: config.model)
            let initialWeights = try config.model.initWeights.map { path in
                let tensors = try SafeTensors.read(path: path).tensors
                try layout.checkImport(tensors, file: path)
                return tensors
            }
            let directory = runDir ?? Self.defaultRunDirectory(config: self.config)
            if !resume { try RunDirectory.prepareFresh(directory, overwrite: overwrite, remove: false) }
            try session.startCommunicator(watchdogTimeout: config.distributed.timeoutSeconds) { communicator in
                let data = try localData ?? communicator.loadData(config: config)
                var trainOptions = TrainOptions(runDirectory: directory)
                trainOptions.resume = resume
                trainOptions.quiet = quiet
                trainOptions.overwrite = overwrite
                trainOptions.trace = trace
                if communicator.isRoot { trainOptions.initialWeights = initialWeights }
                let trainer = try Trainer.make(config: config, data: data, communicator: communicator, options: trainOptions)
                Console(enabled: communicator.isRoot && !quiet).line("ddp: \(counted(communicator.size, "rank")), global batch \(trainer.plan.globalBatch)\(trainer.plan.globalBatch == trainer.plan.microBatch ? "" : " (\(trainer.plan.globalBatch / trainer.plan.microBatch) accumulated micro-batches of \(trainer.plan.microBatch))"), \(trainer.plan.stepsPerEpoch) steps/epoch, \(counted(data.train.count, "training sample")); run directory \(directory)")
                if config.distributed.deterministic {
                    Console(enabled: communicator.isRoot && !quiet).line("ddp: deterministic: \(config.distributed.virtualShards) virtual shards (the same bits at np = any divisor), 1 BLAS thread per rank, OpenBLAS \(BLASKernels.current ?? "unknown") kernels")
                }
                if let scaling = config.optimizer.scalingDescription(globalBatch: trainer.plan.globalBatch) {
                    Console(enabled: communicator.isRoot && !quiet).line(scaling)
                }
                BLASKernels.announce(isRoot: communicator.isRoot, quiet: quiet)
                preempted = try trainer.run().reason == .preempted
                if plot && communicator.isRoot && !preempted {
                    try PlotWriter.write(runDirectory: directory, console: Console(enabled: !quiet))
                }
            }
        }
        if preempted { Foundation.exit(DDP_PREEMPTED_EXIT_CODE) }
    }

    static func defaultRunDirectory(config: String) -> String {
        let stem = URL(fileURLWithPath: config).deletingPathExtension().lastPathComponent
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return "runs/\(stem)-\(formatter.string(from: Date()))"
    }
}

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a Keras-like table of the model's layers and parameter counts.")

    @Argument(help: "The YAML config.") var config: String
    @OptionGroup var options: ConfigOptions

    func run() throws {
        JobSession().execute {
            let config = try options.load(config)
            let network = try Network(config: config.model)
            // Under mpirun every rank parses alike; the launcher's rank 0 prints.
            guard JobSession.launcherRank == 0 else { return }
            print(ModelSummary(network: network, batch: config.training.batchSizePerRank ?? config.training.batchSize).text)
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Evaluate saved weights on a data split; prints JSON.")

    @Option(help: "The YAML config the weights were trained with.") var config: String
    @Option(help: "A safetensors file: model.safetensors, best.safetensors or a checkpoint's.") var weights: String
    @Option(help: "test, validation or train.") var split = "test"
    @OptionGroup var options: ConfigOptions

    func run() throws {
        BLASKernels.selectForThisHost()
        // Standard output carries the results: only a warning about the kernels, on stderr.
        BLASKernels.announce(isRoot: JobSession.launcherRank == 0, quiet: true)
        let session = JobSession()
        session.execute {
            let config = try options.load(self.config)
            // The weights carry the input normalization: test and a separate validation source
            // need no training data (older files refit it, with a notice).
            let model = try TrainedModel(config: config, weights: weights)
            let (dataset, transform) = try model.evaluationData(split: split) {
                guard JobSession.launcherRank == 0 else { return }
                FileHandle.standardError.write(Data((TrainedModel.refitNotice(weights: weights, normalize: config.data.normalize) + "\n").utf8))
            }
            // Under mpirun the ranks share the rows (rank r scores rows r, r + N, …) and rank 0
            // prints the one result.
            // The loss weighs classes as training did; `balanced` would need the training set's
            // counts, which eval does not read, so there the loss is unweighted, and it says so.
            var classWeights: [Float] = []
            if let given = config.classWeight, given != .balanced {
                classWeights = try given.resolve(classes: config.loss.weightedClasses(width: model.network.outputWidth) ?? 0,
                                                 labels: [], origin: "")
            } else if config.classWeight == .balanced, JobSession.launcherRank == 0 {
                FileHandle.standardError.write(Data("notice: loss.class_weight: balanced is not applied by ddp eval (it reads no training labels); the loss is unweighted\n".utf8))
            }
            try session.startCommunicator(watchdogTimeout: config.distributed.timeoutSeconds) { communicator in
                let context = StepContext(communicator: communicator, maxBatch: Evaluator.chunk(for: config.model))
                let result = try Evaluator(network: model.network, loss: config.loss, context: context, classWeights: classWeights)
                    .evaluate(dataset, transform: transform, countConfusion: true)
                guard communicator.isRoot else { return }
                let report = result.confusion.map(ClassificationReport.init(confusion:))
                print(MetricsLog.encode(EvaluationLine(split: split, samples: dataset.count, loss: result.loss, accuracy: result.accuracy,
                                                       report: report)))
            }
        }
    }
}

/// What `ddp eval` prints, one JSON object: the loss and accuracy (null for mse), and for a
/// classifier the confusion matrix (rows the true class), macro precision, recall and F1, and
/// each class's (`per_class`).
struct EvaluationLine: Encodable {
    var split: String
    var samples: Int
    var loss: Double
    var accuracy: Double?
    var report: ClassificationReport?

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(split, forKey: .split)
        try container.encode(samples, forKey: .samples)
        try container.encode(loss.isFinite ? loss : nil, forKey: .loss)
        try container.encode(accuracy, forKey: .accuracy)
        if let report {
            try container.encode(report.macroPrecision, forKey: .precision)
            try container.encode(report.macroRecall, forKey: .recall)
            try container.encode(report.macroF1, forKey: .f1)
            try container.encode(report.classes, forKey: .perClass)
            try container.encode(report.confusion, forKey: .confusion)
        }
    }

    enum CodingKeys: String, CodingKey {
        case split, samples, loss, accuracy, precision, recall, f1
        case perClass = "per_class", confusion = "confusion_matrix"
    }
}
