import ArgumentParser
import DDPCore
import DDPReport
import Foundation

struct CrossValidate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cv",
        abstract: "k-fold cross-validation on the training data: a run directory per fold, the folds' mean ± std.",
        discussion: """
            The training data (data.train) is split into K folds from a permutation seeded by the config's seed: \
            stratified for cross_entropy and binary_crossentropy (scikit-learn's StratifiedKFold with shuffle), \
            plain KFold for mse. Fold i validates on fold i and trains on the others; data.validation and \
            data.validation_split are replaced and data.test is not used. Each fold trains into OUT/fold-<i> \
            (OUT/<variant>/fold-<i> with --sweep, …/seed-<s>/fold-<i> with --repeats), so tensorboard --logdir OUT \
            shows each as a run. Prints every fold (best epoch, monitored metric, val_accuracy) and their mean ± std \
            (population std, as np.std); with --sweep, one row per variant, the best by the early-stopping monitor \
            (else val_loss) marked *. Under mpirun every fold trains on all ranks, one after another. \
            Example: ddp cv configs/moons.yaml --folds 5 --sweep optimizer.lr=0.1,0.01
            """)

    @Argument(help: "The YAML config.") var config: String
    @OptionGroup var options: ConfigOptions
    @Option(help: "Number of folds K (at least 2, at most the training samples, or the smallest class's samples when stratified).")
    var folds: Int
    @Option(name: .customLong("sweep"),
            help: ArgumentHelp("One variant per value, as ddp compare --sweep (repeatable: every combination).",
                               valueName: "dotted.key=v1,v2,..."))
    var sweeps: [String] = []
    @Option(help: "Repeat the k-fold with seeds seed, seed+1, …: new folds and new initial weights each time.") var repeats = 1
    @Option(help: "Output directory (default runs/<config name>-cv): a run directory per fold, cv.txt, cv.json.") var out: String?

    func validate() throws {
        if folds < 2 { throw ValidationError("--folds must be at least 2 (one fold validates, the others train), got \(folds)") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
    }

    /// One k-fold of one variant with one seed.
    struct Plan {
        var variant: ComparisonVariant
        var seed: UInt64
        var config: TrainingConfig
        var directory: String
    }

    func run() throws {
        BLASKernels.selectForThisHost()
        let session = JobSession()
        session.execute {
            let plans = try makePlans()
            let output = outputDirectory
            let timeout = plans.map(\.config.distributed.timeoutSeconds).max() ?? DistributedConfig().timeoutSeconds
            try session.startCommunicator(watchdogTimeout: timeout) { communicator in
                let say = { (line: String) in if communicator.isRoot { print(line) } }
                let start = Date()
                say("ddp cv: \(plans.count / repeats) variant\(plans.count / repeats == 1 ? "" : "s") × \(repeats) seed\(repeats == 1 ? "" : "s") × \(folds) folds into \(output)/ on \(communicator.size) rank\(communicator.size == 1 ? "" : "s")")
                if let replaced = replacedValidation(plans[0].config) { say("ddp cv: \(replaced) is replaced: each fold validates on its own fold; data.test is not used") }
                BLASKernels.announce(isRoot: communicator.isRoot, quiet: false, say: say)
                var loaded: [(data: DataConfig, runData: RunData)] = []
                var results: [FoldResult] = []
                var rule = ""
                for plan in plans {
                    let cvConfig = Self.withoutValidation(plan.config)
                    let data: RunData
                    if let cached = loaded.first(where: { $0.data == cvConfig.data }) {
                        data = cached.runData
                    } else {
                        data = try (communicator as? MPICommunicator).map { try NodeSharedData.load(config: cvConfig, communicator: $0) }
                            ?? RunData(config: cvConfig)
                        loaded.append((cvConfig.data, data))
                    }
                    let split: CrossValidationFolds
                    do {
                        split = try CrossValidationFolds.make(labels: data.train.labels, loss: cvConfig.loss, folds: folds, seed: plan.seed,
                                                              source: "data.train (\(data.train.origin))")
                    } catch let error as DDPError where communicator.size > 1 {
                        // Every rank computes the same folds, so every rank fails here alike: one message.
                        throw AgreedFailure(error: error, printHere: communicator.isRoot)
                    }
                    rule = split.rule.rawValue
                    for fold in 0..<folds {
                        var foldConfig = cvConfig
                        let foldData = try data.fold(fold, of: split, config: cvConfig)
                        foldConfig.resolvedYAML = "# ddp cv: fold \(fold + 1) of \(folds) (\(split.rule.rawValue), seed \(plan.seed)): trains on "
                            + "\(foldData.train.count) samples of data.train, validates on \(foldData.validation!.count); "
                            + "the data.validation, data.validation_split and data.test below were not used\n" + plan.config.resolvedYAML
                        var trainOptions = TrainOptions(runDirectory: plan.directory + "/fold-\(fold + 1)")
                        trainOptions.quiet = true
                        trainOptions.overwrite = true          // cross-validation retrains its folds from scratch
                        let outcome = try Trainer(config: foldConfig, data: foldData, communicator: communicator, options: trainOptions).run()
                        say("[\(plan.variant.name), seed \(plan.seed)] fold \(fold + 1)/\(folds): \(foldData.train.count) train / "
                            + "\(foldData.validation!.count) validation samples, \(outcome.epochsRun) epochs, best epoch \(outcome.bestEpoch) "
                            + "(\(outcome.monitor) " + String(format: "%.4f", outcome.bestValue) + ")")
                        if communicator.isRoot {
                            results.append(try FoldResult(variant: plan.variant.name, seed: plan.seed, fold: fold + 1,
                                                          runDirectory: trainOptions.runDirectory))
                        }
                    }
                }
                if communicator.isRoot { try finish(plans, results: results, rule: rule, start: start) }
            }
        }
    }

    var outputDirectory: String {
        out ?? "runs/" + URL(fileURLWithPath: config).deletingPathExtension().lastPathComponent + "-cv"
    }

    /// Every variant × every seed, each config loaded and validated before anything trains.
    func makePlans() throws -> [Plan] {
        let variants = try Comparison.variants(configs: [config], overrides: options.overrides, sweeps: sweeps)
        let monitors = Set(variants.map { $0.config.earlyStopping?.monitor ?? "val_loss" })
        if monitors.count > 1 {
            throw DDPError(.config, "the variants monitor different metrics (\(monitors.sorted().joined(separator: ", "))): cv ranks variants by one early_stopping.monitor")
        }
        var plans: [Plan] = []
        for variant in variants {
            for repeatIndex in 0..<repeats {
                let seed = variant.config.seed &+ UInt64(repeatIndex)
                let config = repeatIndex == 0 ? variant.config
                    : try TrainingConfig.load(path: variant.configPath, overrides: variant.overrides + ["seed=\(seed)"])
                var directory = outputDirectory
                if !sweeps.isEmpty { directory += "/" + variant.name }
                if repeats > 1 { directory += "/seed-\(seed)" }
                plans.append(Plan(variant: variant, seed: seed, config: config, directory: directory))
            }
        }
        return plans
    }

    /// The training data alone: no validation source or split, no test split.
    static func withoutValidation(_ config: TrainingConfig) -> TrainingConfig {
        var config = config
        config.data.validation = nil
        config.data.validationSplit = 0
        config.data.test = nil
        return config
    }

    func replacedValidation(_ config: TrainingConfig) -> String? {
        if config.data.validation != nil { return "data.validation" }
        if config.data.validationSplit > 0 { return "data.validation_split \(config.data.validationSplit)" }
        return nil
    }

    /// The table (every fold, or one row per variant with a sweep), cv.txt and cv.json (rank 0).
    func finish(_ plans: [Plan], results: [FoldResult], rule: String, start: Date) throws {
        var summaries: [CrossValidationSummary] = []
        for name in plans.map(\.variant.name) where !summaries.contains(where: { $0.variant == name }) {
            summaries.append(CrossValidationSummary(variant: name, folds: results.filter { $0.variant == name }))
        }
        let minimizes = try plans[0].config.earlyStopping?.minimizes() ?? true
        CrossValidationTable.markBest(&summaries, minimizes: minimizes)
        var text: String
        if sweeps.isEmpty {
            text = CrossValidationTable.folds(results) { repeats > 1 ? "seed-\($0.seed)/fold-\($0.fold)" : "fold-\($0.fold)" }
        } else {
            text = CrossValidationTable.variants(summaries)
            let monitor = summaries.first?.monitor ?? "val_loss"
            text += "\n* best by mean \(monitor) (\(minimizes ? "lowest" : "highest")) over \(folds) folds"
                + (repeats > 1 ? " × \(repeats) seeds" : "")
        }
        text += "\nmean ± std over \(repeats > 1 ? "\(folds) folds × \(repeats) seeds" : "\(folds) folds") (\(rule)); std is the population std (np.std)"
        let output = outputDirectory
        try RunDirectory.create(output)
        try AtomicFile.write(text + "\n", to: output + "/cv.txt")
        try AtomicFile.write(CrossValidationTable.json(rule: rule, folds: folds, repeats: repeats, runs: results, summaries: summaries),
                             to: output + "/cv.json")
        print("")
        print(text)
        print("")
        print("ddp cv: \(results.count) run\(results.count == 1 ? "" : "s") in " + String(format: "%.1f s", Date().timeIntervalSince(start))
              + "; wrote \(output)/cv.txt, \(output)/cv.json")
    }
}
