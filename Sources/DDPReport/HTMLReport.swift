import DDPCore
import Foundation

/// A small HTML page builder with one shared stylesheet.
struct HTMLPage {
    private var body = ""
    let title: String

    init(title: String) {
        self.title = title
        body += "<h1>\(Self.escape(title))</h1>\n"
    }

    static let style = """
        body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; color: #222;
               margin: 24px auto; max-width: 1180px; padding: 0 16px; line-height: 1.4; }
        h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
        table { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
        th, td { border: 1px solid #ddd; padding: 4px 9px; } th { background: #f4f4f4; text-align: left; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
        tr:nth-child(even) td { background: #fafafa; }
        .muted { color: #666; } pre { background: #f6f6f6; padding: 10px 12px; overflow-x: auto; font-size: 12.5px; }
        .plots { display: flex; flex-wrap: wrap; gap: 14px; }
        figure { margin: 8px 0; } figcaption { font-size: 12.5px; color: #555; }
        figure img, figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
        .scroll { max-height: 420px; overflow-y: auto; display: inline-block; }
        .headline td { font-size: 15px; }
        """

    static func escape(_ text: String) -> String { SVGWriter.escape(text) }

    mutating func raw(_ html: String) { body += html }
    mutating func heading(_ text: String, level: Int = 2) { body += "<h\(level)>\(Self.escape(text))</h\(level)>\n" }
    mutating func paragraph(_ text: String, classes: String? = nil) {
        body += "<p\(classes.map { " class=\"\($0)\"" } ?? "")>\(Self.escape(text))</p>\n"
    }

    /// A table; cells are escaped unless `rawCells`. Columns from `numericFrom` on are right-aligned.
    mutating func table(header: [String], rows: [[String]], rawCells: Bool = false, numericFrom: Int = Int.max, classes: String? = nil) {
        body += "<table\(classes.map { " class=\"\($0)\"" } ?? "")>\n<thead><tr>"
        for (index, name) in header.enumerated() {
            body += "<th\(index >= numericFrom ? " class=\"num\"" : "")>\(Self.escape(name))</th>"
        }
        body += "</tr></thead>\n<tbody>\n"
        for row in rows {
            body += "<tr>"
            for (index, cell) in row.enumerated() {
                body += "<td\(index >= numericFrom ? " class=\"num\"" : "")>\(rawCells ? cell : Self.escape(cell))</td>"
            }
            body += "</tr>\n"
        }
        body += "</tbody></table>\n"
    }

    /// A two-column key/value table.
    mutating func facts(_ pairs: [(String, String)], classes: String? = nil) {
        body += "<table\(classes.map { " class=\"\($0)\"" } ?? "")><tbody>\n"
        for (key, value) in pairs {
            body += "<tr><th>\(Self.escape(key))</th><td class=\"num\">\(Self.escape(value))</td></tr>\n"
        }
        body += "</tbody></table>\n"
    }

    /// An image by reference (an SVG file next to the page).
    mutating func figure(source: String, caption: String) {
        body += "<figure><img src=\"\(Self.escape(source))\" alt=\"\(Self.escape(caption))\"><figcaption>\(Self.escape(caption))</figcaption></figure>\n"
    }

    /// An SVG document inlined, so the page stands alone.
    mutating func inlineFigure(svg: String, caption: String) {
        var text = svg
        if text.hasPrefix("<?xml"), let end = text.range(of: "?>") { text = String(text[end.upperBound...]) }
        body += "<figure>\(text.trimmingCharacters(in: .whitespacesAndNewlines))<figcaption>\(Self.escape(caption))</figcaption></figure>\n"
    }

    func finish() -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(Self.escape(title))</title>
        <style>
        \(Self.style)
        </style>
        </head>
        <body>
        \(body)</body>
        </html>

        """
    }
}

/// `ddp report RUN_DIR`: RUN_DIR/report.html, one self-contained page (plots inlined) with the
/// config, a summary, the final test metrics, timing and rank count, the plots and every epoch.
public enum HTMLReport {
    public static let fileName = "report.html"

    /// Writes (or rewrites) the run's plots, then the report; returns the report's path.
    @discardableResult
    public static func write(runDirectory: String, options: RunPlots.Options = RunPlots.Options()) throws -> String {
        let run = try LoadedRun(directory: runDirectory, weights: options.weights)
        let plots = try RunPlots.write(run: run, options: options)
        return try write(run: run, plots: plots)
    }

    @discardableResult
    public static func write(run: LoadedRun, plots: [RunPlots.Plot]) throws -> String {
        var page = HTMLPage(title: "Run report — \(run.name)")
        page.paragraph("\(URL(fileURLWithPath: run.directory).standardizedFileURL.path) · \(RunPlots.subtitle(run))", classes: "muted")
        addTestMetrics(run.metrics, to: &page)
        page.heading("Summary")
        page.facts(summary(run))
        page.heading("Timing and ranks")
        page.facts(timing(run.metrics))
        addPlots(plots, of: run, to: &page)
        addEpochTable(run.metrics, to: &page)
        page.heading("Config")
        let configText = (try? String(contentsOfFile: run.directory + "/config.yaml", encoding: .utf8)) ?? run.config.resolvedYAML
        page.raw("<pre>\(HTMLPage.escape(configText))</pre>\n")

        let path = run.directory + "/" + fileName
        try AtomicFile.write(page.finish(), to: path)
        return path
    }

    /// A value as the report prints it, "—" when there is none.
    private static func formatted(_ value: Double?, _ format: String = "%.4f") -> String {
        value.map { String(format: format, $0) } ?? "—"
    }

    /// The test loss and accuracy, or why there are none.
    private static func addTestMetrics(_ m: RunMetrics, to page: inout HTMLPage) {
        page.heading("Final test metrics")
        if let end = m.end, end.testLoss != nil || end.testAccuracy != nil {
            page.facts([("test loss", formatted(end.testLoss)), ("test accuracy", formatted(end.testAccuracy))], classes: "headline")
        } else {
            page.paragraph(m.end == nil ? "The run has not finished (metrics.jsonl has no end line)." : "The config has no test data (data.test).",
                           classes: "muted")
        }
    }

    /// How the run ended, its best and final figures, and the size and sparsity of its weights.
    private static func summary(_ run: LoadedRun) -> [(String, String)] {
        let m = run.metrics
        var summary: [(String, String)] = [
            ("end", m.end.map { $0.reason == EndReason.earlyStopping.rawValue ? "early stopping at epoch \($0.epochsRun)" : $0.reason } ?? "unfinished"),
            ("epochs run", String(m.end?.epochsRun ?? m.epochs.count)),
            ("monitor", m.monitor),
            ("best epoch", m.bestEpoch.map(String.init) ?? "—"),
            ("best \(m.monitor)", formatted(m.end?.bestValue)),
            ("final loss", formatted(m.last?.loss)),
        ]
        if m.hasValidation {
            summary += [("final val_loss", formatted(m.last?.valLoss)), ("best val_loss", formatted(m.bestValLoss)),
                        ("generalization gap (val_loss − loss)", formatted(m.gap, "%+.4f"))]
        }
        if m.hasAccuracy {
            summary.append(("final accuracy", formatted(m.last?.accuracy)))
            if m.hasValidation { summary.append(("final val_accuracy", formatted(m.last?.valAccuracy))) }
        }
        if let network = run.network {
            summary.append(("parameters", network.parameterCount.grouped))
        }
        if let stats = run.weightStatistics {
            summary += [("dense kernel L2 norm", String(format: "%.3f", stats.l2Norm)),
                        ("near-zero kernel weights (|w| < 1e-3)", String(format: "%.1f%%", stats.nearZeroShare * 100) + " (\(stats.nearZero.grouped) of \(stats.count.grouped))")]
        }
        summary.append(("weights", run.weightsFile.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "none found"))
        return summary
    }

    /// Ranks, batch, times and throughput, and the share of epoch time spent in gradient sync.
    private static func timing(_ m: RunMetrics) -> [(String, String)] {
        let epochSeconds = m.epochs.compactMap(\.seconds)
        let rates = m.epochs.compactMap(\.samplesPerSecond)
        let sync = m.epochs.compactMap(\.syncSeconds).reduce(0, +)
        var timing: [(String, String)] = [
            ("ranks", m.end.map { String($0.ranks) } ?? "—"),
            ("global batch", m.end.map { String($0.globalBatch) } ?? "—"),
            ("training time", formatted(m.end?.seconds, "%.2f s")),
            ("mean epoch time", epochSeconds.isEmpty ? "—" : String(format: "%.3f s", epochSeconds.reduce(0, +) / Double(epochSeconds.count))),
            ("mean throughput", rates.isEmpty ? "—" : String(format: "%.0f samples/s", rates.reduce(0, +) / Double(rates.count))),
        ]
        if !epochSeconds.isEmpty, epochSeconds.reduce(0, +) > 0 {
            timing.append(("time in gradient sync", String(format: "%.3f s (%.1f%% of epoch time)", sync,
                                                               100 * sync / epochSeconds.reduce(0, +))))
        }
        return timing
    }

    /// The run's plots inlined from plots/, so the page stands alone; a plot that cannot be read is left out.
    private static func addPlots(_ plots: [RunPlots.Plot], of run: LoadedRun, to page: inout HTMLPage) {
        page.heading("Plots")
        page.raw("<div class=\"plots\">\n")
        for plot in plots {
            let path = run.directory + "/" + RunPlots.directoryName + "/" + plot.file
            if let svg = try? String(contentsOfFile: path, encoding: .utf8) {
                page.inlineFigure(svg: svg, caption: plot.caption + " (\(RunPlots.directoryName)/\(plot.file))")
            }
        }
        page.raw("</div>\n")
    }

    /// Every epoch's metrics in a scrolling table, the best epoch starred.
    private static func addEpochTable(_ m: RunMetrics, to page: inout HTMLPage) {
        page.heading("Metrics per epoch")
        var header = ["epoch", "loss"]
        if m.hasAccuracy { header.append("accuracy") }
        if m.hasValidation { header.append("val_loss") }
        if m.hasValidation && m.hasAccuracy { header.append("val_accuracy") }
        header += ["lr", "seconds", "samples/s", "sync s"]
        let best = m.bestEpoch
        let rows = m.epochs.map { epochRow($0, of: m, best: best) }
        page.raw("<div class=\"scroll\">\n")
        page.table(header: header, rows: rows, numericFrom: 0)
        page.raw("</div>\n")
        if best != nil { page.paragraph("★ best epoch by \(m.monitor).", classes: "muted") }
    }

    /// One epoch's cells, in the columns `addEpochTable` heads.
    private static func epochRow(_ e: RunMetrics.Epoch, of m: RunMetrics, best: Int?) -> [String] {
        var cells = [e.epoch == best ? "\(e.epoch) ★" : String(e.epoch), formatted(e.loss)]
        if m.hasAccuracy { cells.append(formatted(e.accuracy)) }
        if m.hasValidation { cells.append(formatted(e.valLoss)) }
        if m.hasValidation && m.hasAccuracy { cells.append(formatted(e.valAccuracy)) }
        cells += [formatted(e.lr, "%.3g"), formatted(e.seconds, "%.3f"), formatted(e.samplesPerSecond, "%.0f"), formatted(e.syncSeconds, "%.4f")]
        return cells
    }
}
