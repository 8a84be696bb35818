import Foundation

/// Rank 0's per-step TensorBoard scalars (`logging: {tensorboard_every_steps: N}`): every N
/// optimizer steps, `batch_loss` (that step's mean loss over the global batch, penalties
/// included, as the epoch's `loss` counts them) and `batch_lr` (the learning rate the step
/// used), at step = optimizer steps taken (N, 2N, …). The tags are Keras's (its TensorBoard
/// callback with `update_freq=N` writes `batch_loss`); the value is the step's own loss, as
/// Lightning's `self.log(..., on_step=True)` logs it, not Keras's running mean over the epoch.
///
/// The events go to their own file in `RUN_DIR/steps/`, which TensorBoard shows as the run
/// `RUN/steps`: a resumed run's SessionLog START makes TensorBoard drop every tag's events from
/// its step on, and the epoch file's START (at an epoch number) would drop nearly all of the
/// step events, which count optimizer steps. Here the START is at the checkpoint's step + 1.
///
/// Per step it allocates nothing: the event is encoded into one buffer allocated here, the
/// Summary (tags and all) once, and only the wall time, the step and the two floats change.
final class TensorBoardStepWriter {
    static let directoryName = "steps"
    static let tags = ["batch_loss", "batch_lr"]

    let file: TensorBoardWriter
    let everySteps: Int
    /// `Summary { value { tag: "batch_loss" simple_value: 0 } value { tag: "batch_lr" … } }`.
    private let summary: [UInt8]
    /// Where each tag's float sits in `summary`.
    private let valueOffsets: [Int]
    /// One framed record: length (8) | its CRC (4) | event | the event's CRC (4).
    private let record: UnsafeMutableRawBufferPointer

    /// `resumingAfterStep`: the optimizer steps a resumed run had taken.
    init(runDirectory: String, everySteps: Int, resumingAfterStep: Int?) throws {
        precondition(everySteps > 0)
        let directory = runDirectory + "/" + Self.directoryName
        try RunDirectory.create(directory)
        file = try TensorBoardWriter(directory: directory, resumingAfter: resumingAfterStep)
        self.everySteps = everySteps
        // A Summary's values are consecutive fields, so the first k values' encoding is a prefix
        // of the whole, and value k's float is the last 4 bytes of the first k + 1.
        let zeros = Self.tags.map { (tag: $0, value: Float(0)) }
        summary = TensorBoardEvent.summary(zeros)
        valueOffsets = (1...zeros.count).map { TensorBoardEvent.summary(Array(zeros.prefix($0))).count - 4 }
        precondition(summary.count < 128, "the Summary's length must be a one-byte varint")
        // Event: wall_time (1 + 8) | step (1 + at most 10) | summary (1 + 1 + its bytes).
        record = .allocate(byteCount: 12 + 9 + 11 + 2 + summary.count + 4, alignment: 8)
    }

    deinit { record.deallocate() }

    /// Called after every optimizer step; writes on every `everySteps`-th.
    func stepEnded(_ step: Int, loss: Double, lr: Float) throws {
        guard step % everySteps == 0 else { return }
        let event = record.baseAddress! + 12
        var at = 0
        event.storeBytes(of: 0x09, toByteOffset: at, as: UInt8.self)     // field 1, fixed64: wall_time
        event.storeBytes(of: Date().timeIntervalSince1970.bitPattern.littleEndian, toByteOffset: at + 1, as: UInt64.self)
        at += 9
        event.storeBytes(of: 0x10, toByteOffset: at, as: UInt8.self)     // field 2, varint: step
        at += 1
        var varint = UInt64(step)
        while varint >= 0x80 {
            event.storeBytes(of: UInt8(varint & 0x7F) | 0x80, toByteOffset: at, as: UInt8.self)
            varint >>= 7
            at += 1
        }
        event.storeBytes(of: UInt8(varint), toByteOffset: at, as: UInt8.self)
        event.storeBytes(of: 0x2A, toByteOffset: at + 1, as: UInt8.self) // field 5, length-delimited: summary
        event.storeBytes(of: UInt8(summary.count), toByteOffset: at + 2, as: UInt8.self)
        at += 3
        summary.withUnsafeBytes { (event + at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        event.storeBytes(of: Float(loss).bitPattern.littleEndian, toByteOffset: at + valueOffsets[0], as: UInt32.self)
        event.storeBytes(of: lr.bitPattern.littleEndian, toByteOffset: at + valueOffsets[1], as: UInt32.self)
        at += summary.count
        let base = record.baseAddress!
        base.storeBytes(of: UInt64(at).littleEndian, as: UInt64.self)
        base.storeBytes(of: CRC32C.masked(UnsafeRawBufferPointer(start: base, count: 8)).littleEndian, toByteOffset: 8, as: UInt32.self)
        event.storeBytes(of: CRC32C.masked(UnsafeRawBufferPointer(start: event, count: at)).littleEndian, toByteOffset: at, as: UInt32.self)
        try file.write(framed: UnsafeRawBufferPointer(start: base, count: 12 + at + 4))
    }
}
