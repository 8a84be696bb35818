import Foundation

/// A flat JSON object with keys in insertion order, for `metrics.jsonl` lines.
/// Non-finite numbers are written as null (JSON has no NaN).
public struct JSONLine {
    private var fields: [String] = []
    public init() {}

    public mutating func add(_ key: String, _ value: Double?) {
        fields.append("\"\(key)\": " + (value.map { $0.isFinite ? "\($0)" : "null" } ?? "null"))
    }
    public mutating func add(_ key: String, _ value: Int) { fields.append("\"\(key)\": \(value)") }
    public mutating func add(_ key: String, _ value: String) {
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        fields.append("\"\(key)\": \"\(escaped)\"")
    }
    public var text: String { "{" + fields.joined(separator: ", ") + "}" }
}

/// One epoch's figures, as written to metrics.jsonl and printed in the Keras-like epoch line.
public struct EpochRecord: Sendable {
    public var epoch: Int            // 1-based, as Keras prints
    public var loss: Double
    public var accuracy: Double?
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    public var learningRate: Double
    public var seconds: Double
    public var samplesPerSecond: Double
    /// Time in the gradient sync's collectives this epoch (the fused allreduce, or the
    /// reduce-scatter, totals allreduce and allgather of the sharded update).
    public var allreduceSeconds: Double
    /// The step-time breakdown: gathering batches; forward, loss and backward; penalties,
    /// clipping and the optimizer (each without time in collectives); and every collective
    /// (SyncBatchNorm's included).
    public var dataSeconds: Double = 0
    public var computeSeconds: Double = 0
    public var communicationSeconds: Double = 0
    public var updateSeconds: Double = 0

    /// The value a monitor name refers to.
    public func value(of monitor: String) -> Double? {
        switch monitor {
        case "loss": return loss
        case "accuracy": return accuracy
        case "val_loss": return validationLoss
        case "val_accuracy": return validationAccuracy
        default: return nil
        }
    }

    public var json: String {
        var line = JSONLine()
        line.add("epoch", epoch)
        line.add("loss", loss)
        line.add("accuracy", accuracy)
        line.add("val_loss", validationLoss)
        line.add("val_accuracy", validationAccuracy)
        line.add("lr", learningRate)
        line.add("seconds", seconds)
        line.add("samples_per_second", samplesPerSecond)
        line.add("allreduce_seconds", allreduceSeconds)
        line.add("data_seconds", dataSeconds)
        line.add("compute_seconds", computeSeconds)
        line.add("communication_seconds", communicationSeconds)
        line.add("update_seconds", updateSeconds)
        return line.text
    }

    /// "Epoch 3/50 - 2.1s - loss: 0.4321 - accuracy: 0.8456 - val_loss: … - lr: 1.0e-03 - 31,200 samples/s"
    public func consoleLine(totalEpochs: Int) -> String {
        var parts = ["Epoch \(epoch)/\(totalEpochs)", String(format: "%.1fs", seconds), String(format: "loss: %.4f", loss)]
        if let accuracy { parts.append(String(format: "accuracy: %.4f", accuracy)) }
        if let validationLoss { parts.append(String(format: "val_loss: %.4f", validationLoss)) }
        if let validationAccuracy { parts.append(String(format: "val_accuracy: %.4f", validationAccuracy)) }
        parts.append(String(format: "lr: %.2e", learningRate))
        parts.append(String(format: "%.0f samples/s", samplesPerSecond))
        return parts.joined(separator: " - ")
    }
}

/// metrics.jsonl in the run directory: one line per epoch, then one "end" line. Rank 0 only.
public final class MetricsLog {
    public let path: String

    public init(path: String) { self.path = path }

    /// Keeps only the epoch lines up to `epoch` (used on resume), dropping any "end" line.
    public func truncate(toEpoch epoch: Int) throws {
        let kept = Self.readLines(path).filter { line in
            guard let object = line.object, let number = object["epoch"] as? Int, object["event"] == nil else { return false }
            return number <= epoch
        }
        try AtomicFile.write(kept.map { $0.text + "\n" }.joined(), to: path)
    }

    public func append(_ line: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        do {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: Data((line + "\n").utf8))
        } catch {
            throw DDPError(.io, "cannot append to \(path): \(error.localizedDescription)")
        }
    }

    /// Parsed lines of a metrics.jsonl file (missing file → none).
    public static func readLines(_ path: String) -> [(text: String, object: [String: Any]?)] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map { line in
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return (String(line), object)
        }
    }
}
