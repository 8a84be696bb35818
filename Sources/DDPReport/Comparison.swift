import DDPCore
import Foundation

/// The figures `ddp compare` prints for one variant, read back from its run directory.
public struct ComparisonRow: Sendable {
    public var variant: String
    public var runDirectory: String
    public var epochsRun: Int
    public var bestEpoch: Int?
    /// Train loss of the final epoch.
    public var finalLoss: Double?
    public var bestValLoss: Double?
    /// Final epoch's val_loss − loss.
    public var gap: Double?
    /// Final epoch's val_accuracy.
    public var valAccuracy: Double?
    public var testAccuracy: Double?
    public var testLoss: Double?
    /// Over the dense kernels of model.safetensors.
    public var l2Norm: Double?
    public var nearZeroShare: Double?
    /// The run's own training time (the end line's `seconds`).
    public var seconds: Double?
    public var ranks: Int?
    /// Where the variant came from: its config file and sweep values, for the page.
    public var source: String?
}

/// `ddp compare`'s table and page, read from the variants' finished runs (DDPExperiments trains
/// them): one table, one val_loss chart with every variant and each variant's plots, in
/// compare/index.html.
public enum Comparison {
    /// The table row of a finished run.
    public static func row(variant: String, run: LoadedRun, source: String? = nil) -> ComparisonRow {
        let m = run.metrics
        let stats = run.weightStatistics
        return ComparisonRow(variant: variant, runDirectory: run.directory, epochsRun: m.end?.epochsRun ?? m.epochs.count,
                             bestEpoch: m.bestEpoch, finalLoss: m.last?.loss, bestValLoss: m.bestValLoss, gap: m.gap,
                             valAccuracy: m.last?.valAccuracy, testAccuracy: m.end?.testAccuracy, testLoss: m.end?.testLoss,
                             l2Norm: stats?.l2Norm, nearZeroShare: stats?.nearZeroShare, seconds: m.end?.seconds,
                             ranks: m.end?.ranks, source: source)
    }

    // MARK: The table

    public static let columns = ["variant", "epochs", "best epoch", "train loss", "best val_loss", "gap",
                                 "val acc", "test acc", "L2 norm", "near-zero", "time"]

    static func cells(_ row: ComparisonRow) -> [String] {
        func f(_ value: Double?, _ format: String) -> String { value.map { String(format: format, $0) } ?? "—" }
        return [row.variant, String(row.epochsRun), row.bestEpoch.map(String.init) ?? "—", f(row.finalLoss, "%.4f"),
                f(row.bestValLoss, "%.4f"), f(row.gap, "%+.4f"), f(row.valAccuracy, "%.4f"), f(row.testAccuracy, "%.4f"),
                f(row.l2Norm, "%.2f"), f(row.nearZeroShare.map { $0 * 100 }, "%.1f%%"), f(row.seconds, "%.2f s")]
    }

    /// Aligned plain text: names left, numbers right.
    public static func table(_ rows: [ComparisonRow]) -> String {
        TextTable.aligned(header: columns, rows: rows.map(cells), footer: nil)
    }

    /// A GitHub-flavoured Markdown table.
    public static func markdownTable(_ rows: [ComparisonRow]) -> String {
        let header = "| " + columns.joined(separator: " | ") + " |"
        let rule = "|" + columns.indices.map { $0 == 0 ? "---|" : "--:|" }.joined()
        return ([header, rule] + rows.map { "| " + cells($0).joined(separator: " | ") + " |" }).joined(separator: "\n")
    }

    // MARK: The page

    /// Every variant's val_loss per epoch on one chart (loss when no variant has validation data).
    public static func validationChart(_ runs: [(name: String, metrics: RunMetrics)]) -> String {
        let useValidation = runs.contains { $0.metrics.hasValidation }
        let key = useValidation ? "val_loss" : "loss"
        let series = runs.enumerated().compactMap { index, run -> LineChart.Series? in
            let points = run.metrics.epochs.compactMap { e in (useValidation ? e.valLoss : e.loss).map { (x: Double(e.epoch), y: $0) } }
            return points.isEmpty ? nil : LineChart.Series(name: run.name, color: Palette.color(index), points: points)
        }
        var chart = LineChart(title: "\(key) per epoch, every variant", subtitle: "\(counted(runs.count, "variant"))",
                              xTitle: "epoch", yTitle: key, series: series)
        chart.width = 820
        chart.height = 460
        return chart.svg()
    }

    /// Writes `<directory>/index.html` (and val_loss.svg, table.md, results.json); returns the page's path.
    @discardableResult
    public static func writeIndex(directory: String, rows: [ComparisonRow], runs: [LoadedRun], plots: [String: [RunPlots.Plot]],
                                  command: String? = nil, wallSeconds: Double? = nil) throws -> String {
        try RunDirectory.create(directory)
        let chart = validationChart(zip(rows, runs).map { ($0.variant, $1.metrics) })
        try AtomicFile.write(chart, to: directory + "/val_loss.svg")
        try AtomicFile.write(markdownTable(rows) + "\n", to: directory + "/table.md")
        try AtomicFile.write(resultsJSON(rows), to: directory + "/results.json")

        var html = HTMLPage(title: "ddp compare — \(counted(rows.count, "variant"))")
        var intro = "\(counted(rows.count, "variant"))"
        if let wallSeconds { intro += String(format: ", %.1f s wall time in all", wallSeconds) }
        intro += ". Gap = final epoch's val_loss − loss; L2 norm and near-zero share (|w| < 1e-3) over the dense kernels of model.safetensors."
        html.paragraph(intro)
        if let command { html.raw("<pre class=\"command\">\(HTMLPage.escape(command))</pre>\n") }
        // The largest gap and the largest near-zero share in bold: what the comparison is about.
        let gapColumn = columns.firstIndex(of: "gap")!, sparseColumn = columns.firstIndex(of: "near-zero")!
        let widestGap = rows.indices.filter { rows[$0].gap != nil }.max { rows[$0].gap! < rows[$1].gap! }
        let sparsest = rows.indices.filter { rows[$0].nearZeroShare != nil }.max { rows[$0].nearZeroShare! < rows[$1].nearZeroShare! }
        html.table(header: columns, rows: rows.enumerated().map { index, row in
            var values = cells(row).map(HTMLPage.escape)
            values[0] = "<a href=\"#\(HTMLPage.escape(row.variant))\">\(HTMLPage.escape(row.variant))</a>"
            if rows.count > 1, index == widestGap { values[gapColumn] = "<strong>\(values[gapColumn])</strong>" }
            if rows.count > 1, index == sparsest { values[sparseColumn] = "<strong>\(values[sparseColumn])</strong>" }
            return values
        }, rawCells: true, numericFrom: 1)
        html.paragraph("Bold: the largest generalization gap and the largest share of near-zero weights.", classes: "muted")
        html.heading("Validation loss", level: 2)
        html.figure(source: "val_loss.svg", caption: "val_loss per epoch of every variant")
        for (row, run) in zip(rows, runs) {
            let relative = relativePath(row.runDirectory, from: directory)
            html.raw("<h2 id=\"\(HTMLPage.escape(row.variant))\">\(HTMLPage.escape(row.variant))</h2>\n")
            html.raw("<p class=\"muted\">\(HTMLPage.escape(row.source ?? run.name)) · run directory <a href=\"\(HTMLPage.escape(relative))/report.html\">\(HTMLPage.escape(relative))</a> (report)</p>\n")
            html.raw("<div class=\"plots\">\n")
            for plot in plots[row.variant] ?? [] {
                html.figure(source: "\(relative)/\(RunPlots.directoryName)/\(plot.file)", caption: plot.caption)
            }
            html.raw("</div>\n")
        }
        let path = directory + "/index.html"
        try AtomicFile.write(html.finish(), to: path)
        return path
    }

    static func relativePath(_ path: String, from directory: String) -> String {
        let base = URL(fileURLWithPath: directory).standardizedFileURL.path
        let full = URL(fileURLWithPath: path).standardizedFileURL.path
        return full.hasPrefix(base + "/") ? String(full.dropFirst(base.count + 1)) : full
    }

    /// results.json: one object per variant, one per line.
    static func resultsJSON(_ rows: [ComparisonRow]) -> String {
        "[\n" + rows.map { "  " + MetricsLog.encode($0) }.joined(separator: ",\n") + "\n]\n"
    }
}

extension ComparisonRow: Encodable {
    enum CodingKeys: String, CodingKey {
        case variant, gap, seconds
        case runDirectory = "run_directory", epochsRun = "epochs_run", bestEpoch = "best_epoch", finalLoss = "final_loss"
        case bestValLoss = "best_val_loss", valAccuracy = "val_accuracy", testAccuracy = "test_accuracy", testLoss = "test_loss"
        case l2Norm = "weight_l2_norm", nearZeroShare = "near_zero_share"
    }

    /// Every key present; a missing or non-finite figure is null.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(variant, forKey: .variant)
        try container.encode(runDirectory, forKey: .runDirectory)
        try container.encode(epochsRun, forKey: .epochsRun)
        try container.encode(bestEpoch, forKey: .bestEpoch)
        let figures: [(CodingKeys, Double?)] = [(.finalLoss, finalLoss), (.bestValLoss, bestValLoss), (.gap, gap),
                                                (.valAccuracy, valAccuracy), (.testAccuracy, testAccuracy), (.testLoss, testLoss),
                                                (.l2Norm, l2Norm), (.nearZeroShare, nearZeroShare), (.seconds, seconds)]
        for (key, value) in figures { try container.encode(value.flatMap { $0.isFinite ? $0 : nil }, forKey: key) }
    }
}
