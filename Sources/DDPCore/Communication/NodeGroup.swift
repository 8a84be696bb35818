import _CMPI

/// The ranks that share this node's memory (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED,
/// ordered by world rank, so world rank 0 is rank 0 of its node) and the windows they share.
///
/// A window is one segment that the node's first rank allocates (MPI_Win_allocate_shared) and
/// every other rank of the node maps (MPI_Win_shared_query): the data set is read once per node
/// and its pages are counted once, not once per rank. Windows live until `free()`, which
/// `MPICommunicator.finalize()` calls collectively before MPI_Finalize.
public final class NodeGroup {
    public let rank: Int
    public let size: Int
    private var communicator: MPI_Comm?
    private var windows: [MPI_Win?] = []

    init(worldRank: Int) throws {
        var node: MPI_Comm?
        try Self.check(cmpi_split_node(&node), "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)", worldRank)
        var rank: Int32 = 0, size: Int32 = 0
        try Self.check(cmpi_comm_rank(node, &rank), "MPI_Comm_rank(node)", worldRank)
        try Self.check(cmpi_comm_size(node, &size), "MPI_Comm_size(node)", worldRank)
        communicator = node
        self.rank = Int(rank)
        self.size = Int(size)
    }

    /// Copies the node's first rank's bytes to the node's other ranks.
    public func broadcast(_ bytes: inout [UInt8]) throws {
        var count = [Int64(bytes.count)]
        try count.withUnsafeMutableBytes {
            try Self.check(cmpi_comm_broadcast_bytes(communicator, $0.baseAddress, Int32($0.count), 0), "MPI_Bcast(node)", rank)
        }
        if rank != 0 { bytes = [UInt8](repeating: 0, count: Int(count[0])) }
        guard count[0] > 0 else { return }
        guard count[0] <= Int64(Int32.max) else { throw DDPError(.communication, "a node broadcast of \(count[0]) bytes exceeds MPI's 32-bit count") }
        try bytes.withUnsafeMutableBytes {
            try Self.check(cmpi_comm_broadcast_bytes(communicator, $0.baseAddress, Int32($0.count), 0), "MPI_Bcast(node)", rank)
        }
    }

    public func barrier() throws {
        try Self.check(cmpi_comm_barrier(communicator), "MPI_Barrier(node)", rank)
    }

    /// Collective over the node: a segment of `bytes` owned by the node's first rank, mapped into
    /// every rank of the node. Its memory starts zeroed only on the owner's side of the contract:
    /// the owner writes it, then calls `barrier()` before anyone reads.
    public func sharedSegment(bytes: Int) throws -> UnsafeMutableRawPointer {
        var window: MPI_Win?
        var base: UnsafeMutableRawPointer?
        try Self.check(cmpi_shared_window(communicator, rank == 0 ? max(bytes, 1) : 0, 0, &base, &window),
                       "MPI_Win_allocate_shared(\(bytes) bytes)", rank)
        windows.append(window)
        guard let base else { throw DDPError(.communication, "MPI_Win_shared_query returned no address for a \(bytes)-byte node window") }
        return base
    }

    /// Collective over the node: frees the windows, then the node communicator.
    func free() {
        for index in windows.indices { _ = cmpi_window_free(&windows[index]) }
        windows.removeAll()
        if communicator != nil { _ = cmpi_comm_free(&communicator) }
        communicator = nil
    }

    private static func check(_ code: Int32, _ call: @autoclosure () -> String, _ rank: Int) throws {
        guard code != 0 else { return }
        throw DDPError(.communication, "\(call()) failed (MPI error \(code), node rank \(rank))")
    }
}
