/// The collectives a data-parallel step needs, over whatever transport runs the job.
///
/// Invariant: every rank enters every collective, in the same order, with the same counts.
/// A rank with no sample in a step still calls `allreduceSum` (with zero contributions).
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place element-wise sum over all ranks.
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// In-place element-wise sum over all ranks.
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Starts summing Σ counts floats at `send` over all ranks without waiting; rank r receives
    /// its `counts[r]` floats of the sum (those after counts[0] + … + counts[r − 1]) at `receive`:
    /// MPI_Ireduce_scatter. `send`, `receive` and `counts` must stay as they are until
    /// `finishReductions`. At most `maxPendingReductions` at once.
    func beginReduceScatterSum(_ send: UnsafePointer<Float>, counts: UnsafePointer<Int32>, into receive: UnsafeMutablePointer<Float>) throws
    /// Lets started reductions progress (MPI_Testall): called between layers of backward.
    func progressReductions() throws
    /// Waits until every started reduction is done.
    func finishReductions() throws
    /// In place: rank r's `block` floats sit at `buffer[r·block]`; afterwards every rank has all
    /// of them. `buffer` holds size × block floats: MPI_Allgather.
    func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, block: Int) throws
    /// Rank r's bytes land at `full[r·block.count]` on `root` (`full` is ignored elsewhere).
    func gather(bytes block: UnsafeRawBufferPointer, into full: UnsafeMutableRawPointer?, root: Int) throws
    /// `full[r·block]` on `root` lands in rank r's `block` (`full` is ignored elsewhere).
    func scatter(_ full: UnsafePointer<Float>?, into block: UnsafeMutableBufferPointer<Float>, root: Int) throws
    /// Copies `root`'s bytes into every other rank's buffer.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    func barrier() throws
    /// Ends the whole job (every rank) with `code`. Used when one rank fails alone.
    func abort(code: Int32) -> Never
    /// Wall time spent inside collectives since the start, for the step-time breakdown.
    var collectiveTime: Duration { get }
    /// Collective: when every rank runs on this node, `count` zeroed floats that every rank maps
    /// (one MPI shared window); nil otherwise. Lives until MPI is finalized.
    func nodeSharedFloats(_ count: Int) throws -> UnsafeMutablePointer<Float>?
    /// Collective: the run's data. Under MPI each node reads it once into memory its ranks
    /// share (`NodeSharedData`); by default each rank reads its own.
    func loadData(config: TrainingConfig) throws -> RunData
    /// Where `--trace` records each collective with its bytes; nil records nothing.
    var trace: TraceRecorder? { get set }
    /// Starts what ends the job when one collective waits longer than `timeoutSeconds`
    /// (`CollectiveWatchdog`); nothing to watch by default.
    func startWatchdog(timeoutSeconds: Double) throws
    /// Ends the transport; safe to call more than once, and on every exit path.
    func finalize()
}

/// Most reductions `beginReduceScatterSum` may have started and not finished.
public let maxPendingReductions = 16

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    public func loadData(config: TrainingConfig) throws -> RunData { try RunData(config: config) }
    public var trace: TraceRecorder? {
        get { nil }
        set {}
    }
    public func startWatchdog(timeoutSeconds: Double) throws {}
    public func finalize() {}

    /// One rank: the sum is the rank's own floats, at once.
    public func beginReduceScatterSum(_ send: UnsafePointer<Float>, counts: UnsafePointer<Int32>, into receive: UnsafeMutablePointer<Float>) throws {
        precondition(size == 1, "beginReduceScatterSum: this communicator has no nonblocking reduction for \(size) ranks")
        if UnsafePointer(receive) != send { receive.update(from: send, count: Int(counts[0])) }
    }
    public func progressReductions() throws {}
    public func finishReductions() throws {}

    /// Broadcasts an array of trivially-copyable values in place from `root`.
    public func broadcast<T: BitwiseCopyable>(_ values: inout [T], root: Int = 0) throws {
        if size == 1 { return }
        try values.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }

    /// Copies `root`'s bytes, whatever their count, into every other rank's array (the count
    /// first, then the bytes): records that serialize themselves, such as a checkpoint's state.
    public func broadcast(bytes: inout [UInt8], root: Int = 0) throws {
        if size == 1 { return }
        var count = [Int64(bytes.count)]
        try broadcast(&count, root: root)
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(count[0])) }
        try broadcast(&bytes, root: root)
    }

    /// Rank r's `block` lands at `full[r·block]` on `root` (`full` is ignored elsewhere).
    public func gather(_ block: UnsafeBufferPointer<Float>, into full: UnsafeMutablePointer<Float>?, root: Int) throws {
        try gather(bytes: UnsafeRawBufferPointer(block), into: full.map(UnsafeMutableRawPointer.init), root: root)
    }

    /// Broadcasts a float buffer in place from `root`.
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int = 0) throws {
        if size == 1 { return }
        try broadcast(UnsafeMutableRawBufferPointer(buffer), root: root)
    }
}

/// One process, no transport: every collective is the identity. Used by unit tests and
/// whenever `ddp` is started outside a launcher.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, block: Int) throws {}
    public func gather(bytes block: UnsafeRawBufferPointer, into full: UnsafeMutableRawPointer?, root: Int) throws {
        guard let full, let base = block.baseAddress, UnsafeRawPointer(full) != base else { return }
        full.copyMemory(from: base, byteCount: block.count)
    }
    public func scatter(_ full: UnsafePointer<Float>?, into block: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        guard let full, let base = block.baseAddress, UnsafePointer(base) != full else { return }
        base.update(from: full, count: block.count)
    }
    public var collectiveTime: Duration { .zero }
    public func nodeSharedFloats(_ count: Int) throws -> UnsafeMutablePointer<Float>? { nil }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func barrier() throws {}
    public func abort(code: Int32) -> Never { exit(code) }
}

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
