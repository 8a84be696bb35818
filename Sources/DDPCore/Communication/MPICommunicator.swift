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

    /// Ends MPI. Safe to call more than once; every exit path of `ddp` goes through it.
    public func finalize() {
        if cmpi_is_finalized() == 0 { _ = watched("MPI_Finalize", 0, "") { cmpi_finalize() } }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        let count = try Self.count(buffer.count)
        try Self.check(watched("MPI_Allreduce", buffer.count, "floats") { cmpi_allreduce_sum_float(base, count) },
                       "MPI_Allreduce(\(buffer.count) floats)", rank: rank)
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        let count = try Self.count(buffer.count)
        try Self.check(watched("MPI_Allreduce", buffer.count, "doubles") { cmpi_allreduce_sum_double(base, count) },
                       "MPI_Allreduce(\(buffer.count) doubles)", rank: rank)
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        let count = try Self.count(buffer.count)
        try Self.check(watched("MPI_Bcast", buffer.count, "bytes") { cmpi_broadcast_bytes(base, count, Int32(root)) },
                       "MPI_Bcast(\(buffer.count) bytes)", rank: rank)
    }

    public func barrier() throws {
        guard size > 1 else { return }
        try Self.check(watched("MPI_Barrier", 0, "") { cmpi_barrier() }, "MPI_Barrier", rank: rank)
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
