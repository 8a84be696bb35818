import DDPCore
import Foundation

/// `ddp compare --repeats R`: every variant trained with seeds seed, seed + 1, …, seed + R − 1
/// (DDPExperiments' `ComparisonVariant.repeated`, runs named `<variant>/seed-S`), summarized as
/// one row per variant: the comparison table's columns, each figure the mean over the seeds and
/// the headline figures (train loss, best val_loss, gap, val and test accuracy) as mean ±
/// population std (np.std).
public enum RepeatedComparison {
    /// The variant a repeated run belongs to: its name before `/seed-`.
    public static func variantName(_ run: String) -> String {
        run.range(of: "/seed-", options: .backwards).map { String(run[..<$0.lowerBound]) } ?? run
    }

    public static let columns = ["variant", "seeds", "epochs", "best epoch", "train loss", "best val_loss", "gap",
                                 "val acc", "test acc", "L2 norm", "near-zero", "time"]

    /// One row per variant (in first-seen order) over its runs' rows.
    public static func table(_ rows: [ComparisonRow]) -> String {
        var names: [String] = []
        for row in rows where !names.contains(variantName(row.variant)) { names.append(variantName(row.variant)) }
        let body = names.map { name -> [String] in
            let runs = rows.filter { variantName($0.variant) == name }
            func mean(_ values: [Double?], _ format: String, scale: Double = 1) -> String {
                MeanAndDeviation(values.map { $0.map { $0 * scale } }).map { String(format: format, $0.mean) } ?? "—"
            }
            func spread(_ values: [Double?], _ format: String) -> String { MeanAndDeviation(values)?.text(format) ?? "—" }
            return [name, String(runs.count), mean(runs.map { Double($0.epochsRun) }, "%.1f"), mean(runs.map { $0.bestEpoch.map(Double.init) }, "%.1f"),
                    spread(runs.map(\.finalLoss), "%.4f"), spread(runs.map(\.bestValLoss), "%.4f"), spread(runs.map(\.gap), "%+.4f"),
                    spread(runs.map(\.valAccuracy), "%.4f"), spread(runs.map(\.testAccuracy), "%.4f"),
                    mean(runs.map(\.l2Norm), "%.2f"), mean(runs.map(\.nearZeroShare), "%.1f%%", scale: 100), mean(runs.map(\.seconds), "%.2f s")]
        }
        return TextTable.aligned(header: columns, rows: body, footer: nil)
    }
}
