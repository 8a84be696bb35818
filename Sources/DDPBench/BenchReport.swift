import DDPCore
import DDPReport
import Foundation

/// The summary printed, bench.json, table.md and speedup.svg.
extension ScalingBench {
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

    func report(cases: [Case], rounds: [[String: Figures]], gemmLimits: [Double]) -> (rows: [Row], ratios: [String: Double]) {
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
            ratios["np=\(n) strong deterministic / np=\(n) strong"] = Self.ratio(rounds, "np=\(n) strong deterministic", "np=\(n) strong")
            ratios["np=\(n) weak / np=\(n) weak allreduce"] = Self.ratio(rounds, "np=\(n) weak", "np=\(n) weak allreduce")
            ratios["np=\(n) weak / torch peer np=\(n)"] = Self.ratio(rounds, "np=\(n) weak", "torch peer np=\(n)")
            ratios["np=\(n) weak, no comm / torch peer np=\(n)"] = Self.ratio(rounds, "np=\(n) weak, no comm", "torch peer np=\(n)")
            for mode in scalings {
                ratios["np=\(n) \(mode) / np=\(n) \(mode), no comm"] = Self.ratio(rounds, "np=\(n) \(mode)", "np=\(n) \(mode), no comm")
            }
        }
        ratios["np=1 / torch peer np=1"] = Self.ratio(rounds, "np=1", "torch peer np=1")
        ratios["np=1 deterministic / np=1"] = Self.ratio(rounds, "np=1 deterministic", "np=1")
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

    func write(cases: [Case], rounds: [[String: Figures]], gemmLimits: [Double], gemmCores: [String], availability: [Double],
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
