import Foundation

/// metrics.jsonl in the run directory: one line per epoch, then one "end" line. Rank 0 only.
public final class MetricsLog {
    public let path: String

    public init(path: String) { self.path = path }

    /// Keeps only the epoch lines up to `epoch` (used on resume), dropping any "end" line and
    /// any line that does not parse (a write cut short by a crash).
    public func truncate(toEpoch epoch: Int) throws {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let kept = text.split(separator: "\n").filter { line in
            guard case let .epoch(record)? = try? Self.decode(line) else { return false }
            return record.epoch <= epoch
        }
        try AtomicFile.write(kept.map { $0 + "\n" }.joined(), to: path)
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

    /// The lines of a metrics.jsonl file, blank lines skipped. A line that is not one of the two
    /// records is an error naming the file and line.
    public static func read(_ path: String) throws -> [MetricsLine] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw DDPError(.io, "cannot read \(path): \(error.localizedDescription)")
        }
        var lines: [MetricsLine] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            do {
                lines.append(try decode(line))
            } catch {
                throw DDPError(.data, "\(path):\(index + 1): not a metrics record: \(error)")
            }
        }
        return lines
    }

    static func decode(_ line: Substring) throws -> MetricsLine {
        let data = Data(line.utf8)
        let decoder = JSONDecoder()
        if (try? decoder.decode(EventProbe.self, from: data))?.event == "end" {
            return .end(try decoder.decode(EndMetrics.self, from: data))
        }
        return .epoch(try decoder.decode(EpochMetrics.self, from: data))
    }

    private struct EventProbe: Decodable { var event: String? }

    /// One line of JSON: keys sorted, so the same record always gives the same bytes.
    public static func encode<Record: Encodable>(_ record: Record) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // The records write non-finite numbers as null themselves, so this cannot fail.
        return String(decoding: (try? encoder.encode(record)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

/// A line of metrics.jsonl: an epoch, or the "end" line.
public enum MetricsLine: Sendable, Equatable {
    case epoch(EpochMetrics)
    case end(EndMetrics)
}

/// One epoch's figures, in one type from the step that measures them to the report that reads
/// them back: the trainer's record, metrics.jsonl's line, TensorBoard's scalars and the
/// Keras-like epoch line. Keys are snake_case as Keras logs name them; a missing or non-finite
/// number is null (JSON has no NaN), and a figure an older file lacks reads as nil.
public struct EpochMetrics: Codable, Sendable, Equatable {
    public var epoch: Int            // 1-based, as Keras prints
    public var loss: Double?
    public var accuracy: Double?
    public var valLoss: Double?
    public var valAccuracy: Double?
    public var lr: Double?
    public var seconds: Double?
    public var samplesPerSecond: Double?
    /// Time in the gradient sync's collectives this epoch (the allreduce, or the sharded
    /// update's reduce-scatter, totals allreduce and allgather, or its barriers on one node).
    /// Files written before it was named for what it measures call it allreduce_seconds.
    public var syncSeconds: Double?
    /// The step-time breakdown: gathering batches; forward, loss and backward; penalties,
    /// clipping and the optimizer (each without time in collectives); and every collective
    /// (SyncBatchNorm's included). Written when present, which the trainer's lines always are.
    public var dataSeconds: Double?
    public var computeSeconds: Double?
    public var communicationSeconds: Double?
    public var updateSeconds: Double?
    /// The config's `metrics` over the validation set (macro precision, recall, F1; top-k
    /// accuracy): written when asked for.
    public var valPrecision: Double?
    public var valRecall: Double?
    public var valF1: Double?
    public var valTopKAccuracy: Double?

    public init(epoch: Int, loss: Double? = nil, accuracy: Double? = nil, valLoss: Double? = nil, valAccuracy: Double? = nil,
                lr: Double? = nil, seconds: Double? = nil, samplesPerSecond: Double? = nil, syncSeconds: Double? = nil,
                dataSeconds: Double? = nil, computeSeconds: Double? = nil, communicationSeconds: Double? = nil,
                updateSeconds: Double? = nil) {
        self.epoch = epoch
        self.loss = loss
        self.accuracy = accuracy
        self.valLoss = valLoss
        self.valAccuracy = valAccuracy
        self.lr = lr
        self.seconds = seconds
        self.samplesPerSecond = samplesPerSecond
        self.syncSeconds = syncSeconds
        self.dataSeconds = dataSeconds
        self.computeSeconds = computeSeconds
        self.communicationSeconds = communicationSeconds
        self.updateSeconds = updateSeconds
    }

    /// The value a monitor name refers to.
    public func value(of monitor: String) -> Double? {
        switch monitor {
        case "loss": return loss
        case "accuracy": return accuracy
        case "val_loss": return valLoss
        case "val_accuracy": return valAccuracy
        case "val_precision": return valPrecision
        case "val_recall": return valRecall
        case "val_f1": return valF1
        case "val_top_k_accuracy": return valTopKAccuracy
        default: return nil
        }
    }

    /// The metrics.jsonl line.
    public var json: String { MetricsLog.encode(self) }

    /// "Epoch 3/50 - 2.1s - loss: 0.4321 - accuracy: 0.8456 - val_loss: … - lr: 1.0e-03 - 31,200 samples/s"
    public func consoleLine(totalEpochs: Int) -> String {
        var parts = ["Epoch \(epoch)/\(totalEpochs)", String(format: "%.1fs", seconds ?? 0), String(format: "loss: %.4f", loss ?? .nan)]
        if let accuracy { parts.append(String(format: "accuracy: %.4f", accuracy)) }
        if let valLoss { parts.append(String(format: "val_loss: %.4f", valLoss)) }
        if let valAccuracy { parts.append(String(format: "val_accuracy: %.4f", valAccuracy)) }
        for (name, value) in [("val_precision", valPrecision), ("val_recall", valRecall), ("val_f1", valF1),
                              ("val_top_k_accuracy", valTopKAccuracy)] {
            if let value { parts.append(String(format: "\(name): %.4f", value)) }
        }
        if let lr { parts.append(String(format: "lr: %.2e", lr)) }
        if let samplesPerSecond { parts.append(String(format: "%.0f samples/s", samplesPerSecond)) }
        return parts.joined(separator: " - ")
    }

    enum CodingKeys: String, CodingKey {
        case epoch, loss, accuracy, lr, seconds
        case valLoss = "val_loss", valAccuracy = "val_accuracy", samplesPerSecond = "samples_per_second"
        case syncSeconds = "sync_seconds", dataSeconds = "data_seconds", computeSeconds = "compute_seconds"
        case communicationSeconds = "communication_seconds", updateSeconds = "update_seconds"
        case allreduceSeconds = "allreduce_seconds"
        case valPrecision = "val_precision", valRecall = "val_recall", valF1 = "val_f1", valTopKAccuracy = "val_top_k_accuracy"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func figure(_ key: CodingKeys) throws -> Double? { try container.decodeIfPresent(Double.self, forKey: key) }
        self.init(epoch: try container.decode(Int.self, forKey: .epoch), loss: try figure(.loss), accuracy: try figure(.accuracy),
                  valLoss: try figure(.valLoss), valAccuracy: try figure(.valAccuracy), lr: try figure(.lr), seconds: try figure(.seconds),
                  samplesPerSecond: try figure(.samplesPerSecond), syncSeconds: try figure(.syncSeconds) ?? figure(.allreduceSeconds),
                  dataSeconds: try figure(.dataSeconds), computeSeconds: try figure(.computeSeconds),
                  communicationSeconds: try figure(.communicationSeconds), updateSeconds: try figure(.updateSeconds))
        valPrecision = try figure(.valPrecision)
        valRecall = try figure(.valRecall)
        valF1 = try figure(.valF1)
        valTopKAccuracy = try figure(.valTopKAccuracy)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(epoch, forKey: .epoch)
        let always: [(CodingKeys, Double?)] = [(.loss, loss), (.accuracy, accuracy), (.valLoss, valLoss), (.valAccuracy, valAccuracy),
                                               (.lr, lr), (.seconds, seconds), (.samplesPerSecond, samplesPerSecond),
                                               (.syncSeconds, syncSeconds)]
        for (key, value) in always { try container.encode(value.flatMap(finite), forKey: key) }
        let measured: [(CodingKeys, Double?)] = [(.dataSeconds, dataSeconds), (.computeSeconds, computeSeconds),
                                                 (.communicationSeconds, communicationSeconds), (.updateSeconds, updateSeconds),
                                                 (.valPrecision, valPrecision), (.valRecall, valRecall), (.valF1, valF1),
                                                 (.valTopKAccuracy, valTopKAccuracy)]
        for (key, value) in measured where value != nil { try container.encode(value.flatMap(finite), forKey: key) }
    }
}

/// The last line of metrics.jsonl: how the run ended, and what `Trainer.run` returns (a
/// preempted run returns one without writing it). Keys missing from an older file read as the
/// defaults below.
public struct EndMetrics: Codable, Sendable, Equatable {
    public var event = "end"
    /// An `EndReason`'s raw value (a string, so a reason written by a later version still reads).
    public var reason: String
    public var epochsRun: Int
    /// 1-based; 0 when unknown.
    public var bestEpoch: Int
    public var monitor: String
    public var bestValue: Double?
    public var testLoss: Double?
    public var testAccuracy: Double?
    /// The test split's confusion matrix (rows the true class) for a classifier; nil otherwise.
    public var testConfusionMatrix: [[Int]]?
    public var ranks: Int
    public var globalBatch: Int
    public var seconds: Double?
    /// OpenBLAS's kernel table the run's GEMMs used (`BLASKernels.current`): it sets their rounding.
    public var blasCore: String?
    /// Who chose that table: ddp (from the CPU's features), the user, or OpenBLAS (`BLASKernels.ChosenBy`).
    public var blasCoreChosenBy: String?
    /// `distributed.virtual_shards` of a run in the deterministic mode (its bits are the same at
    /// any np dividing it); nil otherwise.
    public var virtualShards: Int?

    public init(reason: String, epochsRun: Int, bestEpoch: Int, monitor: String, bestValue: Double?, testLoss: Double?,
                testAccuracy: Double?, ranks: Int, globalBatch: Int, seconds: Double?, blasCore: String? = nil, blasCoreChosenBy: String? = nil) {
        self.reason = reason
        self.epochsRun = epochsRun
        self.bestEpoch = bestEpoch
        self.monitor = monitor
        self.bestValue = bestValue
        self.testLoss = testLoss
        self.testAccuracy = testAccuracy
        self.ranks = ranks
        self.globalBatch = globalBatch
        self.seconds = seconds
        self.blasCore = blasCore
        self.blasCoreChosenBy = blasCoreChosenBy
    }

    enum CodingKeys: String, CodingKey {
        case event, reason, monitor, ranks, seconds
        case epochsRun = "epochs_run", bestEpoch = "best_epoch", bestValue = "best_value", testLoss = "test_loss"
        case testAccuracy = "test_accuracy", globalBatch = "global_batch", blasCore = "blas_core"
        case blasCoreChosenBy = "blas_core_chosen_by", testConfusionMatrix = "test_confusion_matrix"
        case virtualShards = "virtual_shards"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        reason = try container.decodeIfPresent(String.self, forKey: .reason) ?? "completed"
        epochsRun = try container.decodeIfPresent(Int.self, forKey: .epochsRun) ?? 0
        bestEpoch = try container.decodeIfPresent(Int.self, forKey: .bestEpoch) ?? 0
        monitor = try container.decodeIfPresent(String.self, forKey: .monitor) ?? "val_loss"
        bestValue = try container.decodeIfPresent(Double.self, forKey: .bestValue)
        testLoss = try container.decodeIfPresent(Double.self, forKey: .testLoss)
        testAccuracy = try container.decodeIfPresent(Double.self, forKey: .testAccuracy)
        ranks = try container.decodeIfPresent(Int.self, forKey: .ranks) ?? 1
        globalBatch = try container.decodeIfPresent(Int.self, forKey: .globalBatch) ?? 0
        seconds = try container.decodeIfPresent(Double.self, forKey: .seconds)
        blasCore = try container.decodeIfPresent(String.self, forKey: .blasCore)
        blasCoreChosenBy = try container.decodeIfPresent(String.self, forKey: .blasCoreChosenBy)
        testConfusionMatrix = try container.decodeIfPresent([[Int]].self, forKey: .testConfusionMatrix)
        virtualShards = try container.decodeIfPresent(Int.self, forKey: .virtualShards)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(event, forKey: .event)
        try container.encode(reason, forKey: .reason)
        try container.encode(epochsRun, forKey: .epochsRun)
        try container.encode(bestEpoch, forKey: .bestEpoch)
        try container.encode(monitor, forKey: .monitor)
        try container.encode(bestValue.flatMap(finite), forKey: .bestValue)
        try container.encode(testLoss.flatMap(finite), forKey: .testLoss)
        try container.encode(testAccuracy.flatMap(finite), forKey: .testAccuracy)
        try container.encode(ranks, forKey: .ranks)
        try container.encode(globalBatch, forKey: .globalBatch)
        try container.encode(seconds.flatMap(finite), forKey: .seconds)
        try container.encodeIfPresent(blasCore, forKey: .blasCore)
        try container.encodeIfPresent(blasCoreChosenBy, forKey: .blasCoreChosenBy)
        try container.encodeIfPresent(testConfusionMatrix, forKey: .testConfusionMatrix)
        try container.encodeIfPresent(virtualShards, forKey: .virtualShards)
    }
}

/// The value if finite, else nil (written as null).
private func finite(_ value: Double) -> Double? { value.isFinite ? value : nil }
