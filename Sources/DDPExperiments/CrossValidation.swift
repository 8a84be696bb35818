import DDPCore
import DDPReport
import Foundation

/// `ddp cv`: k-fold cross-validation of every variant (a config × its sweeps) and seed, a loop
/// around the unchanged `Trainer`. Every rank runs it with one communicator: each fold trains
/// on all ranks, one after another; rank 0 reads the folds back (DDPReport's
/// `CrossValidationTable`) and writes cv.txt and cv.json.
public struct CrossValidation {
    public var configPath: String
    public var overrides: [String]
    /// Number of folds K.
    public var folds: Int
    public var sweeps: [String]
    /// Seeds seed, seed + 1, …: new folds and new initial weights each time.
    public var repeats: Int
    public var outputDirectory: String

    /// `outputDirectory` nil: runs/<config name>-cv.
    public init(configPath: String, overrides: [String] = [], folds: Int, sweeps: [String] = [], repeats: Int = 1,
                outputDirectory: String? = nil) {
        self.configPath = configPath
        self.overrides = overrides
        self.folds = folds
        self.sweeps = sweeps
        self.repeats = repeats
        self.outputDirectory = outputDirectory
            ?? "runs/" + URL(fileURLWithPath: configPath).deletingPathExtension().lastPathComponent + "-cv"
    }

    /// One k-fold of one variant with one seed.
    public struct Plan {
        public var variant: ComparisonVariant
        public var seed: UInt64
        public var config: TrainingConfig
        public var directory: String
    }

    /// Every variant × every seed, each config loaded and validated before anything trains.
    public func plans() throws -> [Plan] {
        let variants = try ComparisonVariant.variants(configs: [configPath], overrides: overrides, sweeps: sweeps)
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

    /// One watchdog for every fold: the most patient plan's deadline.
    public static func watchdogTimeout(_ plans: [Plan]) -> Double {
        plans.map(\.config.distributed.timeoutSeconds).max() ?? DistributedConfig().timeoutSeconds
    }

    /// The run header's lines: what trains where, and what the folds replace.
    public func header(_ plans: [Plan], ranks: Int) -> [String] {
        var lines = ["ddp cv: \(counted(plans.count / repeats, "variant")) × \(counted(repeats, "seed")) × \(folds) folds into \(outputDirectory)/ on \(counted(ranks, "rank"))"]
        if let replaced = Self.replacedValidation(plans[0].config) { lines.append("ddp cv: \(replaced) is replaced: each fold validates on its own fold; data.test is not used") }
        return lines
    }

    /// Trains every fold of every plan on every rank of `communicator`, then (rank 0) prints the
    /// table and writes cv.txt and cv.json; `start` is when the job began, for the time printed.
    public func run(_ plans: [Plan], communicator: Communicator, start: Date = Date()) throws {
        let say = { (line: String) in if communicator.isRoot { print(line) } }
        var loaded: [(data: DataConfig, runData: RunData)] = []
        var results: [FoldResult] = []
        var rule = ""
        var done = 0
        for plan in plans {
            let cvConfig = Self.withoutValidation(plan.config)
            let data: RunData
            if let cached = loaded.first(where: { $0.data == cvConfig.data }) {
                data = cached.runData
            } else {
                data = try communicator.loadData(config: cvConfig)
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
                let outcome = try Trainer.make(config: foldConfig, data: foldData, communicator: communicator, options: trainOptions).run()
                done += 1
                say("[\(plan.variant.name), seed \(plan.seed)] fold \(fold + 1)/\(folds): \(foldData.train.count) train / "
                    + "\(foldData.validation!.count) validation samples, \(counted(outcome.end.epochsRun, "epoch")), best epoch \(outcome.end.bestEpoch) "
                    + "(\(outcome.end.monitor) " + (outcome.end.bestValue.map { String(format: "%.4f", $0) } ?? "—") + ")"
                    + ComparisonTraining.remaining(done: done, of: plans.count * folds, since: start))
                if communicator.isRoot {
                    results.append(try FoldResult(variant: plan.variant.name, seed: plan.seed, fold: fold + 1,
                                                  runDirectory: trainOptions.runDirectory))
                }
            }
        }
        if communicator.isRoot { try finish(plans, results: results, rule: rule, start: start) }
    }

    /// The training data alone: no validation source or split, no test split.
    static func withoutValidation(_ config: TrainingConfig) -> TrainingConfig {
        var config = config
        config.data.validation = nil
        config.data.validationSplit = 0
        config.data.test = nil
        return config
    }

    static func replacedValidation(_ config: TrainingConfig) -> String? {
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
        print("ddp cv: \(counted(results.count, "run")) in " + String(format: "%.1f s", Date().timeIntervalSince(start))
              + "; wrote \(output)/cv.txt, \(output)/cv.json")
    }
}
