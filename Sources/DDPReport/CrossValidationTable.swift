import DDPCore
import Foundation

/// A mean and a population standard deviation, σ = √(Σ(x − x̄)² / n): NumPy's `np.std` default
/// (ddof = 0), what Keras and scikit-learn users see from `cross_val_score(...).std()`.
public struct MeanAndDeviation: Sendable, Equatable, Encodable {
    public var mean: Double
    public var std: Double
    public var count: Int

    /// nil for no values; non-finite values are left out.
    public init?(_ values: [Double?]) {
        let finite = values.compactMap { $0 }.filter(\.isFinite)
        guard !finite.isEmpty else { return nil }
        mean = finite.reduce(0, +) / Double(finite.count)
        let mean = mean
        std = (finite.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(finite.count)).squareRoot()
        count = finite.count
    }

    /// "0.1234 ± 0.0056" (a `+` flag in `format` signs the mean alone).
    public func text(_ format: String = "%.4f") -> String {
        String(format: format, mean) + " ± " + String(format: format.replacingOccurrences(of: "+", with: ""), std)
    }
}

/// One fold of one variant (and seed) of `ddp cv`, read back from its run directory's metrics.jsonl.
public struct FoldResult: Sendable, Encodable {
    public var variant: String
    public var seed: UInt64
    /// 1-based, as the directory `fold-N`.
    public var fold: Int
    public var runDirectory: String
    public var epochsRun: Int
    /// The end line's best epoch (1-based): the early-stopping monitor's best, else val_loss's.
    public var bestEpoch: Int
    public var monitor: String
    /// The monitor's value at the best epoch (the end line's `best_value`).
    public var monitorValue: Double?
    /// val_loss and val_accuracy of the best epoch: the weights a model selection would keep.
    public var valLoss: Double?
    public var valAccuracy: Double?

    public init(variant: String, seed: UInt64, fold: Int, runDirectory: String) throws {
        let path = runDirectory + "/metrics.jsonl"
        let metrics = try RunMetrics.load(path: path)
        guard let end = metrics.end else { throw DDPError(.io, "\(path) has no end line: the fold's run did not finish") }
        self.variant = variant
        self.seed = seed
        self.fold = fold
        self.runDirectory = runDirectory
        epochsRun = end.epochsRun
        bestEpoch = end.bestEpoch
        monitor = end.monitor
        monitorValue = end.bestValue
        let best = metrics.epochs.first { $0.epoch == end.bestEpoch }
        valLoss = best?.valLoss
        valAccuracy = best?.valAccuracy
    }

    enum CodingKeys: String, CodingKey {
        case variant, seed, fold, monitor
        case runDirectory = "run_directory", epochsRun = "epochs_run", bestEpoch = "best_epoch", monitorValue = "monitor_value"
        case valLoss = "val_loss", valAccuracy = "val_accuracy"
    }
}

/// One variant's folds (over every repeat), summarized.
public struct CrossValidationSummary: Sendable, Encodable {
    public var variant: String
    public var runs: Int
    public var monitor: String
    public var bestEpoch: MeanAndDeviation?
    public var monitorValue: MeanAndDeviation?
    public var valLoss: MeanAndDeviation?
    public var valAccuracy: MeanAndDeviation?
    /// The best variant by the mean monitored value.
    public var best = false

    public init(variant: String, folds: [FoldResult]) {
        self.variant = variant
        runs = folds.count
        monitor = folds.first?.monitor ?? "val_loss"
        bestEpoch = MeanAndDeviation(folds.map { Double($0.bestEpoch) })
        monitorValue = MeanAndDeviation(folds.map(\.monitorValue))
        valLoss = MeanAndDeviation(folds.map(\.valLoss))
        valAccuracy = MeanAndDeviation(folds.map(\.valAccuracy))
    }

    enum CodingKeys: String, CodingKey {
        case variant, runs, monitor, best
        case bestEpoch = "best_epoch", monitorValue = "monitor_value", valLoss = "val_loss", valAccuracy = "val_accuracy"
    }
}

/// `ddp cv`'s tables: every fold with its mean ± std (one variant), or one row per variant with
/// the best marked (a sweep). Standard deviations are population ones (np.std).
public enum CrossValidationTable {
    /// Marks the best summary by its mean monitored value: lowest when `minimizes`, else highest.
    public static func markBest(_ summaries: inout [CrossValidationSummary], minimizes: Bool) {
        let ranked = summaries.indices.filter { summaries[$0].monitorValue != nil }
        guard let best = ranked.min(by: { a, b in
            let x = summaries[a].monitorValue!.mean, y = summaries[b].monitorValue!.mean
            return minimizes ? x < y : x > y
        }) else { return }
        summaries[best].best = true
    }

    /// The figures after the run's name: the monitor first, then val_loss and val_accuracy
    /// unless one of them is the monitor.
    static func figureColumns(monitor: String, accuracy: Bool) -> [String] {
        [monitor] + ["val_loss", "val_accuracy"].filter { $0 != monitor && ($0 != "val_accuracy" || accuracy) }
    }

    static func value(_ column: String, monitor: String, of fold: FoldResult) -> Double? {
        column == monitor ? fold.monitorValue : column == "val_loss" ? fold.valLoss : fold.valAccuracy
    }

    static func value(_ column: String, monitor: String, of summary: CrossValidationSummary) -> MeanAndDeviation? {
        column == monitor ? summary.monitorValue : column == "val_loss" ? summary.valLoss : summary.valAccuracy
    }

    /// Every fold (named by `name`), then one mean ± std row.
    public static func folds(_ folds: [FoldResult], name: (FoldResult) -> String) -> String {
        let summary = CrossValidationSummary(variant: "", folds: folds)
        let accuracy = folds.contains { $0.valAccuracy != nil }
        let figures = figureColumns(monitor: summary.monitor, accuracy: accuracy)
        let header = ["fold", "epochs", "best epoch"] + figures.map { $0 == summary.monitor ? "\($0) (monitored)" : $0 }
        let body = folds.map { fold in
            [name(fold), String(fold.epochsRun), String(fold.bestEpoch)]
                + figures.map { column in value(column, monitor: summary.monitor, of: fold).map { String(format: "%.4f", $0) } ?? "—" }
        }
        let mean = ["mean ± std", MeanAndDeviation(folds.map { Double($0.epochsRun) })?.text("%.1f") ?? "—",
                    summary.bestEpoch?.text("%.1f") ?? "—"]
            + figures.map { value($0, monitor: summary.monitor, of: summary)?.text() ?? "—" }
        return TextTable.aligned(header: header, rows: body, footer: mean)
    }

    /// One row per variant; the best (see `markBest`) carries a `*`.
    public static func variants(_ summaries: [CrossValidationSummary]) -> String {
        let monitor = summaries.first?.monitor ?? "val_loss"
        let accuracy = summaries.contains { $0.valAccuracy != nil }
        let figures = figureColumns(monitor: monitor, accuracy: accuracy)
        let header = ["variant", "runs", "best epoch"] + figures.map { $0 == monitor ? "\($0) (monitored)" : $0 }
        let body = summaries.map { summary in
            [(summary.best ? "* " : "  ") + summary.variant, String(summary.runs), summary.bestEpoch?.text("%.1f") ?? "—"]
                + figures.map { value($0, monitor: monitor, of: summary)?.text() ?? "—" }
        }
        return TextTable.aligned(header: header, rows: body, footer: nil)
    }

    /// cv.json: how the folds were made, every fold, every variant's summary.
    public static func json(rule: String, folds: Int, repeats: Int, runs: [FoldResult], summaries: [CrossValidationSummary]) -> String {
        struct Document: Encodable {
            var rule: String, folds: Int, repeats: Int
            var std = "population (ddof 0, as np.std)"
            var runs: [FoldResult]
            var variants: [CrossValidationSummary]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let document = Document(rule: rule, folds: folds, repeats: repeats, runs: runs, variants: summaries)
        return String(decoding: (try? encoder.encode(document)) ?? Data("{}".utf8), as: UTF8.self) + "\n"
    }
}
