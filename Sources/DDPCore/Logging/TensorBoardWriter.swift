#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The Event and Summary messages TensorBoard reads (`tensorboard/compat/proto/event.proto`,
/// `summary.proto`), encoded by hand: only the fields ddp writes.
///
///     Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
///               Summary summary = 5; SessionLog session_log = 7; }
///     Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
///     SessionLog { SessionStatus status = 1; }   (START = 1)
public enum TensorBoardEvent {
    /// What every event file starts with (TensorFlow's EventsWriter writes the same).
    public static let fileVersion = "brain.Event:2"

    public static func fileVersion(wallTime: Double) -> [UInt8] {
        var event = ProtobufWriter()
        event.double(1, wallTime)
        event.string(3, fileVersion)
        return event.bytes
    }

    /// One Summary of `simple_value` scalars at `step`, in the given order.
    public static func scalars(_ values: [(tag: String, value: Float)], step: Int, wallTime: Double) -> [UInt8] {
        var event = ProtobufWriter()
        event.double(1, wallTime)
        if step != 0 { event.int64(2, Int64(step)) }
        event.bytes(5, summary(values))
        return event.bytes
    }

    /// The Summary message alone: one `Value { tag, simple_value }` per scalar.
    static func summary(_ values: [(tag: String, value: Float)]) -> [UInt8] {
        var summary = ProtobufWriter()
        for (tag, value) in values {
            summary.message(1) { entry in
                entry.string(1, tag)
                entry.float(2, value)
            }
        }
        return summary.bytes
    }

    /// SessionLog START at `step`: TensorBoard then drops what earlier files logged at `step`
    /// and later (its "purge orphaned data"), so a resumed run shows each epoch once.
    public static func sessionStart(step: Int, wallTime: Double) -> [UInt8] {
        var event = ProtobufWriter()
        event.double(1, wallTime)
        if step != 0 { event.int64(2, Int64(step)) }
        event.message(7) { log in log.enumValue(1, 1) }
        return event.bytes
    }
}

/// Rank 0's TensorBoard log: one event file in the run directory, one Summary per epoch with the
/// scalars of metrics.jsonl (same names), at step = epoch (1-based, as metrics.jsonl and the
/// console count). `tensorboard --logdir runs/` shows each run directory as one run, and
/// `--logdir compare/` each variant of `ddp compare`. Each write goes straight to the file (no
/// buffering), so TensorBoard follows a run while it trains.
public final class TensorBoardWriter {
    public let path: String
    private let descriptor: Int32

    /// The file name TensorBoard looks for: events.out.tfevents.<seconds since 1970>.<host>.
    public static func fileName(time: Date, host: String) -> String {
        String(format: "events.out.tfevents.%010lld.", Int64(time.timeIntervalSince1970)) + host
    }

    /// Whether `name` is an event file (what `ddp train --overwrite` removes).
    public static func isEventFile(_ name: String) -> Bool { name.hasPrefix("events.out.tfevents.") }

    /// Starts a new event file in `directory`. `resumingAfter`: the last step a resumed run had
    /// logged (the epochs it had completed, for the epoch file); TensorBoard forgets what older
    /// files logged after it.
    public init(directory: String, resumingAfter: Int? = nil, now: Date = Date()) throws {
        let stem = directory + "/" + Self.fileName(time: now, host: Self.hostName())
        var candidate = stem, attempt = 1, opened: Int32 = -1
        while true {
            opened = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            if opened >= 0 || errno != EEXIST { break }
            attempt += 1
            candidate = "\(stem).\(attempt)"
        }
        guard opened >= 0 else {
            throw DDPError(.io, "cannot create the TensorBoard event file \(candidate): \(String(cString: strerror(errno)))")
        }
        path = candidate
        descriptor = opened
        let wallTime = now.timeIntervalSince1970
        try write(TensorBoardEvent.fileVersion(wallTime: wallTime))
        if let step = resumingAfter { try write(TensorBoardEvent.sessionStart(step: step + 1, wallTime: wallTime)) }
    }

    deinit { close(descriptor) }

    /// The epoch's scalars: loss, accuracy, val_loss, val_accuracy (those the run has), lr,
    /// seconds, samples_per_second, sync_seconds and the step-time breakdown (data_seconds,
    /// compute_seconds, communication_seconds: all time in collectives, update_seconds).
    public func append(_ record: EpochMetrics) throws {
        try write(scalars: record.tensorBoardScalars, step: record.epoch)
    }

    public func write(scalars: [(tag: String, value: Double)], step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        try write(TensorBoardEvent.scalars(scalars.map { ($0.tag, Float($0.value)) }, step: step, wallTime: wallTime))
    }

    private func write(_ event: [UInt8]) throws {
        try TFRecord.frame(event).withUnsafeBytes { try write(framed: $0) }
    }

    /// Appends one whole TFRecord (the step writer frames its own, in a buffer it reuses).
    func write(framed record: UnsafeRawBufferPointer) throws {
        var written = 0
        while written < record.count {
            let count = writeBytes(descriptor, record.baseAddress! + written, record.count - written)
            if count < 0 {
                if errno == EINTR { continue }
                throw DDPError(.io, "cannot write the TensorBoard event file \(path): \(String(cString: strerror(errno)))")
            }
            written += count
        }
    }

    private static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
        let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return host.isEmpty || host.contains("/") ? "localhost" : host
    }
}

/// Outside the class so it is not shadowed by `TensorBoardWriter.write`.
private func writeBytes(_ descriptor: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, buffer, count)
}

extension EpochMetrics {
    /// The metrics.jsonl figures TensorBoard shows, under the same names (those present).
    var tensorBoardScalars: [(tag: String, value: Double)] {
        let figures: [(String, Double?)] = [("loss", loss), ("accuracy", accuracy), ("val_loss", valLoss), ("val_accuracy", valAccuracy),
                                            ("lr", lr), ("seconds", seconds), ("samples_per_second", samplesPerSecond),
                                            ("sync_seconds", syncSeconds), ("data_seconds", dataSeconds), ("compute_seconds", computeSeconds),
                                            ("communication_seconds", communicationSeconds), ("update_seconds", updateSeconds),
                                            ("val_precision", valPrecision), ("val_recall", valRecall), ("val_f1", valF1),
                                            ("val_top_k_accuracy", valTopKAccuracy)]
        return figures.compactMap { tag, value in value.map { (tag, $0) } }
    }
}
