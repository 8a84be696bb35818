import _CMPI
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// The communicator over MPI_COMM_WORLD (OpenMPI). Initialized once per process; every call's
/// return code is checked and a failure becomes a `DDPError` naming the rank and the call.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public private(set) var collectiveTime = Duration.zero
    /// Records every collective as a span while `ddp train --trace` runs.
    public var trace: TraceRecorder?

    /// True when a launcher (mpirun, srun) started this process, so MPI_Init joins a job rather
    /// than becoming a singleton (which, as root, OpenMPI refuses without extra variables).
    public static var launchedByMPI: Bool {
        let markers = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        return markers.contains { getenv($0) != nil }
    }

    public init() throws {
        try Self.check(cmpi_init(), "MPI_Init", rank: -1)
        var rank: Int32 = 0
        var size: Int32 = 0
        try Self.check(cmpi_rank(&rank), "MPI_Comm_rank", rank: -1)
        try Self.check(cmpi_size(&size), "MPI_Comm_size", rank: Int(rank))
        self.rank = Int(rank)
        self.size = Int(size)
    }

    private var node: NodeGroup?

    /// The ranks of this node, split on first use (a collective: every rank calls it together).
    public func nodeGroup() throws -> NodeGroup {
        if let node { return node }
        let group = try NodeGroup(worldRank: rank)
        node = group
        return group
    }

    public func nodeSharedFloats(_ count: Int) throws -> UnsafeMutablePointer<Float>? {
        let node = try nodeGroup()
        guard node.size == size, size > 1 else { return nil }
        let base = try node.sharedSegment(bytes: count * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: count)
        if node.rank == 0 { base.initialize(repeating: 0, count: count) }
        try node.barrier()
        return base
    }

    /// Ends MPI. Safe to call more than once; every exit path of `ddp` goes through it. Every
    /// rank reaches it together on a normal exit, so the node's shared windows are freed here
    /// (collectively) first.
    public func finalize() {
        guard cmpi_is_finalized() == 0 else { return }
        node?.free()
        node = nil
        _ = watched("MPI_Finalize", 0, "") { cmpi_finalize() }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        let count = try Self.count(buffer.count)
        try timed(.allreduce, buffer.count, "floats", bytes: 4 * buffer.count) { cmpi_allreduce_sum_float(base, count) }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        let count = try Self.count(buffer.count)
        try timed(.allreduce, buffer.count, "doubles", bytes: 8 * buffer.count) { cmpi_allreduce_sum_double(base, count) }
    }

    /// Requests of the reductions begun and not yet finished (`maxPendingReductions` slots).
    private let requests = UnsafeMutablePointer<MPI_Request?>.allocate(capacity: maxPendingReductions)
    private var pending = 0

    public func beginReduceScatterSum(_ send: UnsafePointer<Float>, counts: UnsafePointer<Int32>, into receive: UnsafeMutablePointer<Float>) throws {
        precondition(pending < maxPendingReductions, "beginReduceScatterSum: \(pending) reductions already pending")
        let slot = requests + pending
        let total = (0..<size).reduce(0) { $0 + Int(counts[$1]) }
        try timed(.reduceScatterStart, total, "floats", bytes: 4 * total) { cmpi_ireduce_scatter_sum_float(send, receive, counts, slot) }
        pending += 1
    }

    public func progressReductions() throws {
        guard pending > 0 else { return }
        var done: Int32 = 0
        try Self.check(cmpi_testall(Int32(pending), requests, &done), "MPI_Testall(\(pending) reductions)", rank: rank)
    }

    public func finishReductions() throws {
        guard pending > 0 else { return }
        let count = Int32(pending)
        try timed(.reductionsWait, pending, "reductions", bytes: 0) { cmpi_waitall(count, requests) }
        pending = 0
    }

    public func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, block: Int) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        precondition(buffer.count >= block * size, "allgather: \(buffer.count) floats cannot hold \(size) blocks of \(block)")
        let count = try Self.count(block)
        try timed(.allgather, block, "floats per rank", bytes: 4 * block * size) { cmpi_allgather_in_place_float(base, count) }
    }

    public func gather(bytes block: UnsafeRawBufferPointer, into full: UnsafeMutableRawPointer?, root: Int) throws {
        guard size > 1 else { return try LocalCommunicator().gather(bytes: block, into: full, root: root) }
        let count = try Self.count(block.count)
        try timed(.gather, block.count, "bytes", bytes: block.count) { cmpi_gather_bytes(block.baseAddress, full, count, Int32(root)) }
    }

    public func scatter(_ full: UnsafePointer<Float>?, into block: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        guard size > 1 else { return try LocalCommunicator().scatter(full, into: block, root: root) }
        let count = try Self.count(block.count)
        try timed(.scatter, block.count, "floats per rank", bytes: 4 * block.count) { cmpi_scatter_float(full, block.baseAddress, count, Int32(root)) }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        let count = try Self.count(buffer.count)
        try timed(.broadcast, buffer.count, "bytes", bytes: buffer.count) { cmpi_broadcast_bytes(base, count, Int32(root)) }
    }

    public func barrier() throws {
        guard size > 1 else { return }
        try timed(.barrier, 0, "", bytes: 0) { cmpi_barrier() }
    }

    /// Runs one blocking MPI call under the watchdog, adds its wall time to `collectiveTime`,
    /// records it in the trace when one is on, and checks its code (the error names the call,
    /// the count and the unit).
    @inline(__always)
    private func timed(_ span: TraceRecorder.Span, _ count: Int, _ unit: StaticString,
                       bytes: Int, _ body: () -> Int32) throws {
        let start = ContinuousClock.now
        let traceStart = trace?.now() ?? 0
        let code = watched(span.name, count, unit, body)
        collectiveTime += ContinuousClock.now - start
        trace?.record(span, since: traceStart, bytes: bytes)
        try Self.check(code, count == 0 ? "\(span.name)" : "\(span.name)(\(count) \(unit))", rank: rank)
    }

    public func abort(code: Int32) -> Never {
        _ = cmpi_abort(code)
        exit(code)
    }

    private static func count(_ n: Int) throws -> Int32 {
        guard n <= Int(Int32.max) else {
            throw DDPError(.communication, "a collective of \(n) elements exceeds MPI's 32-bit count")
        }
        return Int32(n)
    }

    /// `call` is an autoclosure so the per-step collectives build no message string unless they fail.
    private static func check(_ code: Int32, _ call: @autoclosure () -> String, rank: Int) throws {
        guard code != 0 else { return }
        var text = [CChar](repeating: 0, count: Int(cmpi_max_error_string()))
        cmpi_error_string(code, &text, Int32(text.count))
        let description = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let who = rank >= 0 ? "rank \(rank)" : "this process"
        throw DDPError(.communication, "\(call()) failed on \(who): \(description) (MPI error \(code))")
    }
}
