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
/// Per step it allocates nothing: the event is encoded with `ProtobufWriter` and framed with
/// `TFRecord` into buffers that keep their capacity, the Summary (tags and all) is encoded
/// once, and only the wall time, the step and the two floats change.
final class TensorBoardStepWriter {
    static let directoryName = "steps"
    static let tags = ["batch_loss", "batch_lr"]

    let file: TensorBoardWriter
    let everySteps: Int
    /// `Summary { value { tag: "batch_loss" simple_value: 0 } value { tag: "batch_lr" … } }`,
    /// its floats overwritten in place each time.
    private var summary: [UInt8]
    /// Where each tag's float sits in `summary`.
    private let valueOffsets: [Int]
    private var event: ProtobufWriter
    private var record: [UInt8] = []

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
        // Event: wall_time (1 + 8) | step (1 + at most 10) | summary (1 + its length's varint + its bytes).
        event = ProtobufWriter(capacity: 9 + 11 + 11 + summary.count)
        record.reserveCapacity(16 + 9 + 11 + 11 + summary.count)
    }

    /// Called after every optimizer step; writes on every `everySteps`-th.
    func stepEnded(_ step: Int, loss: Double, lr: Float) throws {
        guard step % everySteps == 0 else { return }
        summary.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: Float(loss).bitPattern.littleEndian, toByteOffset: valueOffsets[0], as: UInt32.self)
            bytes.storeBytes(of: lr.bitPattern.littleEndian, toByteOffset: valueOffsets[1], as: UInt32.self)
        }
        event.reset()
        event.double(1, Date().timeIntervalSince1970)   // wall_time
        event.int64(2, Int64(step))                     // step
        event.bytes(5, summary)                         // summary
        TFRecord.frame(event.bytes, into: &record)
        try record.withUnsafeBytes { try file.write(framed: $0) }
    }
}
