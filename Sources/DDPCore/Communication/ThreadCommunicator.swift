import Foundation

/// N ranks as N threads of one process, for tests of everything multi-rank without mpirun:
/// the sync strategies, SyncBatchNorm, rank 0's broadcast decisions, checkpoints gathered from
/// slices. `ThreadCommunicator.run(ranks:)` starts the ranks and waits for all of them.
///
/// Every collective is two barriers around a phase in which each rank reads the others' posted
/// buffers: post → barrier → read → barrier → write its own (which no rank reads again before
/// the next collective's first barrier). Sums add the ranks' values in rank
/// order, 0 first, so the allreduce and the reduce-scatter give the same bits for an element
/// (as the node-shared sharded update does). The nonblocking reduce-scatter completes when it
/// begins: every rank begins the same buckets in the same order, so that is still a valid
/// schedule. Every rank is "on one node": `nodeSharedFloats` hands all ranks one allocation.
///
/// A rank that throws stops the others: their next collective throws instead of waiting for
/// it. Collectives allocate (a sum's scratch); the MPI communicator is the one that runs jobs.
public final class ThreadCommunicator: Communicator {
    public let rank: Int
    public var size: Int { group.size }
    public private(set) var collectiveTime = Duration.zero
    private let group: ThreadGroup

    init(rank: Int, group: ThreadGroup) {
        self.rank = rank
        self.group = group
    }

    /// Runs `body` on `ranks` threads, rank r's with its own communicator, and waits for every
    /// one. Rethrows the first error a rank threw (the others stop at their next collective).
    public static func run(ranks: Int, _ body: @escaping @Sendable (ThreadCommunicator) throws -> Void) throws {
        precondition(ranks >= 1, "ThreadCommunicator.run: ranks must be at least 1")
        let group = ThreadGroup(size: ranks)
        let done = DispatchGroup()
        for rank in 0..<ranks {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                do {
                    try body(ThreadCommunicator(rank: rank, group: group))
                } catch {
                    group.fail(rank: rank, error)
                }
            }
            thread.stackSize = 16 << 20
            thread.start()
        }
        done.wait()
        if let failure = group.firstFailure { throw failure }
    }

    // MARK: Collectives

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { try sumInPlace(buffer) }
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws { try sumInPlace(buffer) }

    private func sumInPlace<T: BinaryFloatingPoint>(_ buffer: UnsafeMutableBufferPointer<T>) throws {
        let sum = try sumOverRanks(post: UnsafeMutableRawPointer(buffer.baseAddress), offset: 0, count: buffer.count, as: T.self)
        _ = buffer.update(fromContentsOf: sum)
    }

    public func beginReduceScatterSum(_ send: UnsafePointer<Float>, counts: UnsafePointer<Int32>,
                                      into receive: UnsafeMutablePointer<Float>) throws {
        let offset = (0..<rank).reduce(0) { $0 + Int(counts[$1]) }, count = Int(counts[rank])
        let sum = try sumOverRanks(post: UnsafeMutableRawPointer(mutating: send), offset: offset, count: count, as: Float.self)
        receive.update(from: sum, count: count)
    }

    /// Elements offset ..< offset + count of every rank's posted buffer, added in rank order.
    private func sumOverRanks<T: BinaryFloatingPoint>(post pointer: UnsafeMutableRawPointer?, offset: Int, count: Int,
                                                     as: T.Type) throws -> [T] {
        var sum = [T](repeating: 0, count: count)
        try collective(post: pointer) { posted in
            for r in 0..<size {
                let theirs = posted[r]!.assumingMemoryBound(to: T.self) + offset
                for i in sum.indices { sum[i] = r == 0 ? theirs[i] : sum[i] + theirs[i] }
            }
        }
        return sum
    }

    public func progressReductions() throws {}
    public func finishReductions() throws {}

    public func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, block: Int) throws {
        let mine = buffer.baseAddress!
        try collective(post: UnsafeMutableRawPointer(mine)) { posted in
            for r in 0..<size where r != rank {
                (mine + r * block).update(from: posted[r]!.assumingMemoryBound(to: Float.self) + r * block, count: block)
            }
        }
    }

    public func gather(bytes block: UnsafeRawBufferPointer, into full: UnsafeMutableRawPointer?, root: Int) throws {
        try collective(post: UnsafeMutableRawPointer(mutating: block.baseAddress)) { posted in
            guard rank == root, let full else { return }
            for r in 0..<size where block.count > 0 {
                (full + r * block.count).copyMemory(from: posted[r]!, byteCount: block.count)
            }
        }
    }

    public func scatter(_ full: UnsafePointer<Float>?, into block: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        try collective(post: full.map { UnsafeMutableRawPointer(mutating: $0) }) { posted in
            guard block.count > 0, let source = posted[root] else { return }
            block.baseAddress!.update(from: source.assumingMemoryBound(to: Float.self) + rank * block.count, count: block.count)
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try collective(post: buffer.baseAddress) { posted in
            guard rank != root, buffer.count > 0 else { return }
            buffer.baseAddress!.copyMemory(from: posted[root]!, byteCount: buffer.count)
        }
    }

    public func barrier() throws {
        let start = ContinuousClock.now
        try group.barrier()
        collectiveTime += ContinuousClock.now - start
    }

    public func nodeSharedFloats(_ count: Int) throws -> UnsafeMutablePointer<Float>? {
        let mine = rank == 0 ? group.allocateShared(floats: count) : nil
        var shared: UnsafeMutablePointer<Float>?
        try collective(post: mine.map(UnsafeMutableRawPointer.init)) { posted in
            shared = posted[0]!.assumingMemoryBound(to: Float.self)
        }
        return shared
    }

    /// Ends the whole process: threads cannot end one another.
    public func abort(code: Int32) -> Never { exit(code) }

    /// Posts this rank's pointer, waits for every rank's, runs `read` over them, and waits
    /// again so no rank changes a posted buffer while another still reads it.
    private func collective(post pointer: UnsafeMutableRawPointer?, read: ([UnsafeMutableRawPointer?]) throws -> Void) throws {
        let start = ContinuousClock.now
        defer { collectiveTime += ContinuousClock.now - start }
        group.post(pointer, rank: rank)
        try group.barrier()
        try read(group.posted)
        try group.barrier()
    }
}

/// What the threads of one `ThreadCommunicator.run` share: a reusable barrier, each rank's
/// posted pointer, node-shared allocations and the first failure.
final class ThreadGroup: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var failure: (rank: Int, error: Error)?
    /// Each rank's pointer for the current collective; read only between its two barriers.
    private(set) var posted: [UnsafeMutableRawPointer?]
    private var allocations: [UnsafeMutableBufferPointer<Float>] = []

    init(size: Int) {
        self.size = size
        posted = Array(repeating: nil, count: size)
    }

    deinit { allocations.forEach { $0.deallocate() } }

    func post(_ pointer: UnsafeMutableRawPointer?, rank: Int) {
        condition.lock()
        posted[rank] = pointer
        condition.unlock()
    }

    /// Waits until every rank has arrived; throws at once if a rank has failed.
    func barrier() throws {
        condition.lock()
        defer { condition.unlock() }
        let mine = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
        }
        while generation == mine && failure == nil { condition.wait() }
        if let failure, generation == mine {
            throw DDPError(.communication, "rank \(failure.rank) of \(size) failed: \(failure.error)")
        }
    }

    func fail(rank: Int, _ error: Error) {
        condition.lock()
        if failure == nil { failure = (rank, error) }
        condition.broadcast()
        condition.unlock()
    }

    var firstFailure: Error? {
        condition.lock()
        defer { condition.unlock() }
        return failure?.error
    }

    func allocateShared(floats count: Int) -> UnsafeMutablePointer<Float> {
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 1))
        buffer.initialize(repeating: 0)
        condition.lock()
        allocations.append(buffer)
        condition.unlock()
        return buffer.baseAddress!
    }
}
