import Foundation

/// A run's data held once per node under MPI: the node's first rank reads and decodes every
/// data file into one MPI shared-memory window; the node's other ranks map that window instead
/// of reading the files. Features stay in the window (a `validation_split` is a view into it);
/// each rank copies only the labels (4 bytes a sample). Fashion-MNIST's 55 MB of pixels then
/// cost one copy per node, not one per rank.
///
/// Window layout, per source in `RunData.sources` order: features (bytes or floats), then the
/// labels as Float, each starting on a 64-byte boundary.
public enum NodeSharedData {
    /// Collective over the world. A data error on any node ends every rank the same way: the
    /// ranks agree through one allreduce, the failing node's first rank prints (rank 0 when it
    /// failed too), and all exit through `AgreedFailure` without MPI_Abort.
    public static func load(config: TrainingConfig, communicator: MPICommunicator) throws -> RunData {
        let node = try communicator.nodeGroup()
        var loaded: [Dataset] = []
        var layout = Layout(sets: [], totalBytes: 0)
        if node.rank == 0 {
            do {
                loaded = try RunData.loadSources(config)
                layout = Layout(datasets: loaded)
            } catch let error as DDPError {
                layout.failure = error.message
                layout.failureKind = error.kind.rawValue
            }
        }
        var encoded = node.rank == 0 ? try JSONEncoder().encode(layout).map { $0 } : []
        try node.broadcast(&encoded)
        layout = try JSONDecoder().decode(Layout.self, from: Data(encoded))
        try agree(failed: layout.failure != nil, communicator: communicator, node: node) {
            DDPError(DDPError.Kind(rawValue: layout.failureKind ?? "") ?? .data, layout.failure ?? "a data file could not be loaded")
        }

        let base = try node.sharedSegment(bytes: layout.totalBytes)
        if node.rank == 0 {
            for (dataset, entry) in zip(loaded, layout.sets) {
                dataset.withFeatures(bytes: { UnsafeMutableRawBufferPointer(start: base + entry.featureOffset, count: $0.count).copyMemory(from: UnsafeRawBufferPointer($0)) },
                                     floats: { UnsafeMutableRawBufferPointer(start: base + entry.featureOffset, count: 4 * $0.count).copyMemory(from: UnsafeRawBufferPointer($0)) })
                dataset.labels.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: base + entry.labelOffset, count: $0.count).copyMemory(from: $0) }
            }
            loaded = []
        }
        try node.barrier()
        let datasets = layout.sets.map { entry -> Dataset in
            let features = SharedFeatures(owner: node, base: UnsafeRawPointer(base + entry.featureOffset), count: entry.count * entry.featureCount)
            let labels = Array(UnsafeBufferPointer(start: (base + entry.labelOffset).assumingMemoryBound(to: Float.self), count: entry.count))
            var dataset = Dataset(count: entry.count, featureCount: entry.featureCount,
                                  storage: entry.bytes ? .sharedBytes(features) : .sharedFloats(features), labels: labels, origin: entry.origin)
            dataset.imageShape = entry.imageShape
            return dataset
        }
        // The checks below see the same bytes on every rank, so they fail alike everywhere.
        do {
            return try RunData(config: config, loaded: datasets)
        } catch let error as DDPError {
            throw AgreedFailure(error: error, printHere: communicator.rank == 0)
        }
    }

    /// One allreduce: did any node fail, and did rank 0's? The printing rank is the failing
    /// node's first rank, unless rank 0 failed too (then rank 0 alone speaks).
    private static func agree(failed: Bool, communicator: MPICommunicator, node: NodeGroup,
                              error: () -> DDPError) throws {
        var flags: [Double] = [failed ? 1 : 0, failed && communicator.rank == 0 ? 1 : 0]
        try flags.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
        guard flags[0] > 0 else { return }
        let speaks = failed && node.rank == 0 && (communicator.rank == 0 || flags[1] == 0)
        throw AgreedFailure(error: failed ? error() : DDPError(.data, "another node could not load the data"), printHere: speaks)
    }

    struct Entry: Codable {
        var count: Int, featureCount: Int, bytes: Bool, origin: String, featureOffset: Int, labelOffset: Int
        var imageShape: ImageShape?
    }

    struct Layout: Codable {
        var sets: [Entry]
        var totalBytes: Int
        var failure: String?
        var failureKind: String?

        init(sets: [Entry], totalBytes: Int) {
            self.sets = sets
            self.totalBytes = totalBytes
        }

        init(datasets: [Dataset]) {
            var offset = 0
            func take(_ bytes: Int) -> Int {
                let start = (offset + 63) / 64 * 64
                offset = start + bytes
                return start
            }
            sets = datasets.map { dataset in
                let elements = dataset.count * dataset.featureCount
                let featureOffset = take(dataset.holdsBytes ? elements : 4 * elements)
                return Entry(count: dataset.count, featureCount: dataset.featureCount, bytes: dataset.holdsBytes,
                             origin: dataset.origin, featureOffset: featureOffset, labelOffset: take(4 * dataset.count),
                             imageShape: dataset.imageShape)
            }
            totalBytes = offset
        }
    }
}

extension MPICommunicator {
    /// Each node reads the run's data once, into memory its ranks share.
    public func loadData(config: TrainingConfig) throws -> RunData {
        try NodeSharedData.load(config: config, communicator: self)
    }
}
