import _CPrefetch

/// Samples held compactly in memory: raw features as bytes (IDX images) or Float (CSV, generated),
/// labels as Float (class index for classification, target value for regression).
///
/// Features stay raw; normalization is a `FeatureTransform` applied in `gather`, so one copy of
/// the data serves every transform and a 60000×784 image set costs 47 MB, not 188 MB.
public struct Dataset: Sendable {
    public enum Storage: Sendable {
        case bytes([UInt8])
        case floats([Float])
        /// Bytes or floats in a node-shared MPI window: one copy per node, not per rank.
        case sharedBytes(SharedFeatures)
        case sharedFloats(SharedFeatures)
    }

    public let count: Int
    public let featureCount: Int
    /// Row-major `[count, featureCount]`.
    public let storage: Storage
    /// `[count]`.
    public let labels: [Float]
    /// Where the samples came from (a file path, or a generator call), for messages.
    public let origin: String
    /// Set for images whose file records their shape (IDX); `data.image_shape` gives it otherwise.
    public var imageShape: ImageShape?

    public init(count: Int, featureCount: Int, storage: Storage, labels: [Float], origin: String) {
        let stored: Int
        switch storage {
        case .bytes(let values): stored = values.count
        case .floats(let values): stored = values.count
        case .sharedBytes(let values), .sharedFloats(let values): stored = values.count
        }
        precondition(count >= 0 && featureCount >= 0, "Dataset: negative shape")
        precondition(stored == count * featureCount, "Dataset: storage holds \(stored) values, shape needs \(count * featureCount)")
        precondition(labels.count == count, "Dataset: \(labels.count) labels for \(count) rows")
        self.count = count
        self.featureCount = featureCount
        self.storage = storage
        self.labels = labels
        self.origin = origin
    }

    /// Rows [start, end) as a new Dataset (used for Keras-style validation_split: the LAST fraction).
    public func slice(_ range: Range<Int>) -> Dataset {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "Dataset.slice: \(range) outside 0..<\(count)")
        let values = range.lowerBound * featureCount ..< range.upperBound * featureCount
        let part: Storage
        switch storage {
        case .bytes(let all): part = .bytes(Array(all[values]))
        case .floats(let all): part = .floats(Array(all[values]))
        case .sharedBytes(let all): part = .sharedBytes(all.slice(values, elementSize: 1))
        case .sharedFloats(let all): part = .sharedFloats(all.slice(values, elementSize: 4))
        }
        var sliced = Dataset(count: range.count, featureCount: featureCount, storage: part,
                             labels: Array(labels[range]), origin: origin)
        sliced.imageShape = imageShape
        return sliced
    }

    /// Raw (un-normalized) feature value as Float.
    public func feature(row: Int, column: Int) -> Float {
        precondition(row >= 0 && row < count && column >= 0 && column < featureCount,
                     "Dataset.feature: (\(row), \(column)) outside \(count)×\(featureCount)")
        let index = row * featureCount + column
        return withFeatures(bytes: { Float($0[index]) }, floats: { $0[index] })
    }

    /// Whether features are raw bytes (images), which `normalize: scale` divides by 255.
    public var holdsBytes: Bool {
        switch storage {
        case .bytes, .sharedBytes: return true
        case .floats, .sharedFloats: return false
        }
    }

    /// Runs `bytes` or `floats` on the features, wherever they are stored.
    @inline(__always)
    public func withFeatures<R>(bytes: (UnsafeBufferPointer<UInt8>) throws -> R,
                                floats: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        switch storage {
        case .bytes(let values): return try values.withUnsafeBufferPointer(bytes)
        case .floats(let values): return try values.withUnsafeBufferPointer(floats)
        case .sharedBytes(let values): return try bytes(values.buffer(of: UInt8.self))
        case .sharedFloats(let values): return try floats(values.buffer(of: Float.self))
        }
    }

    /// Number of classes if every label is a non-negative integer: max label + 1, else nil.
    /// Labels above 2^24 are not exact in Float, so they count as regression targets.
    public var classCount: Int? {
        guard count > 0 else { return nil }
        var largest: Float = 0
        for label in labels {
            guard label >= 0, label <= 0x1p24, label == label.rounded(.towardZero) else { return nil }
            largest = max(largest, label)
        }
        return Int(largest) + 1
    }
}

extension Dataset {
    /// Hot path, called every training step; must not allocate. Writes rows[i]'s transformed
    /// features (x * scale[f] + shift[f]) to inputs[i*featureCount ..< (i+1)*featureCount]
    /// and its label to labels[i].
    public func gather(rows: UnsafePointer<Int32>, count rowCount: Int, transform: FeatureTransform,
                       inputs: UnsafeMutablePointer<Float>, labels out: UnsafeMutablePointer<Float>) {
        let width = featureCount, total = count
        precondition(transform.scale.count == width && transform.shift.count == width,
                     "gather: transform has \(transform.scale.count) features, data set \(width)")
        for i in 0..<rowCount {
            let row = Int(rows[i])
            precondition(row >= 0 && row < total, "gather: row \(row) outside 0..<\(total)")
        }
        guard rowCount > 0 else { return }
        labels.withUnsafeBufferPointer { source in
            for i in 0..<rowCount { out[i] = source[Int(rows[i])] }
        }
        guard width > 0 else { return }
        transform.scale.withUnsafeBufferPointer { scaleBuffer in
            transform.shift.withUnsafeBufferPointer { shiftBuffer in
                let scale = scaleBuffer.baseAddress!, shift = shiftBuffer.baseAddress!
                withFeatures(bytes: { Self.transformRows($0.baseAddress!, rows, rowCount, scale, shift, inputs, width) },
                             floats: { Self.transformRows($0.baseAddress!, rows, rowCount, scale, shift, inputs, width) })
            }
        }
    }
}

extension Dataset {
    /// Starts loading the rows `order[p]` for each p in `positions` into the caches without
    /// waiting for them: the trainer asks for the next step's rows while this step computes, so
    /// the next gather finds them in cache instead of memory: np = 2 1.011×, where both ranks'
    /// gathers compete for memory; one process 1.003× (docs/PERFORMANCE.md, 'The batch gather's
    /// prefetch (Dataset)').
    public func prefetch(rows order: UnsafePointer<Int32>, positions: StrideTo<Int>) {
        let width = featureCount
        guard width > 0 else { return }
        withFeatures(bytes: { Self.prefetchRows($0.baseAddress!, order, positions, width) },
                     floats: { Self.prefetchRows($0.baseAddress!, order, positions, width) })
    }

    private static func prefetchRows<Feature>(_ base: UnsafePointer<Feature>, _ order: UnsafePointer<Int32>,
                                              _ positions: StrideTo<Int>, _ width: Int) {
        for position in positions { prefetch(base + Int(order[position]) * width, width) }
    }
}

/// What a data set stores a feature as: bytes (images) or floats. `transformRow` reads either.
protocol StoredFeature {
    static func load8(_ p: UnsafePointer<Self>) -> SIMD8<Float>
    var floatValue: Float { get }
}

extension UInt8: StoredFeature {
    @inline(__always) static func load8(_ p: UnsafePointer<UInt8>) -> SIMD8<Float> {
        SIMD8<Float>(UnsafeRawPointer(p).loadUnaligned(as: SIMD8<UInt8>.self))
    }
    @inline(__always) var floatValue: Float { Float(self) }
}

extension Float: StoredFeature {
    @inline(__always) static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) var floatValue: Float { self }
}

extension Dataset {
    /// Every line of the row four ahead is prefetched while a row is transformed: the rows are
    /// random places in a data set far larger than the caches, and the hardware prefetcher
    /// only follows a row after missing on it: one process 1.012–1.031× faster, with 2, 4 and 8
    /// rows ahead alike (docs/PERFORMANCE.md, 'The batch gather's prefetch (Dataset)').
    @inline(__always)
    fileprivate static func transformRows<Feature: StoredFeature>(_ base: UnsafePointer<Feature>, _ rows: UnsafePointer<Int32>, _ count: Int,
                                                                  _ scale: UnsafePointer<Float>, _ shift: UnsafePointer<Float>,
                                                                  _ inputs: UnsafeMutablePointer<Float>, _ width: Int) {
        let ahead = 4
        for i in 0..<min(count, ahead) { prefetch(base + Int(rows[i]) * width, width) }
        for i in 0..<count {
            if i + ahead < count { prefetch(base + Int(rows[i + ahead]) * width, width) }
            transformRow(base + Int(rows[i]) * width, scale, shift, inputs + i * width, width)
        }
    }

    /// Every cache line of one row: one prefetch per 64 bytes (x86-64's and most ARM cores'
    /// line; where lines are longer some prefetches repeat, which costs nothing), and one for
    /// the last byte, which a row that does not start on a line boundary may leave out.
    @inline(__always)
    fileprivate static func prefetch<Feature>(_ row: UnsafePointer<Feature>, _ width: Int) {
        let cacheLine = 64
        let start = UnsafeRawPointer(row), bytes = width * MemoryLayout<Feature>.stride
        var offset = 0
        while offset < bytes { ddp_prefetch(start + offset); offset += cacheLine }
        ddp_prefetch(start + bytes - 1)
    }

    /// to = from·scale + shift, eight features at a time. Swift cannot prove that `to` aliases
    /// none of the three sources, so the scalar loop stayed scalar: the gather was 3.2 % of a
    /// one-process step in perf before this (3.5 % after, with the rest of the step faster).
    /// Each lane does the scalar's multiply, then its add (Swift contracts nothing into an
    /// FMA), so the batch is bit-identical.
    @inline(__always)
    fileprivate static func transformRow<Feature: StoredFeature>(_ from: UnsafePointer<Feature>, _ scale: UnsafePointer<Float>,
                                                                 _ shift: UnsafePointer<Float>, _ to: UnsafeMutablePointer<Float>, _ width: Int) {
        let end = width - width % 8
        var f = 0
        while f < end {
            let value = Feature.load8(from + f)
            let a = UnsafeRawPointer(scale + f).loadUnaligned(as: SIMD8<Float>.self)
            let b = UnsafeRawPointer(shift + f).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(to + f).storeBytes(of: value * a + b, as: SIMD8<Float>.self)
            f += 8
        }
        while f < width { to[f] = from[f].floatValue * scale[f] + shift[f]; f += 1 }
    }
}

/// A dataset's features inside memory that outlives it (a node-shared MPI window): the view and
/// the object that keeps the memory mapped. Read-only once built, so safe to share.
public struct SharedFeatures: @unchecked Sendable {
    public let owner: AnyObject
    public let base: UnsafeRawPointer
    /// Elements (bytes or floats), not bytes.
    public let count: Int

    public init(owner: AnyObject, base: UnsafeRawPointer, count: Int) {
        self.owner = owner
        self.base = base
        self.count = count
    }

    func buffer<T>(of type: T.Type) -> UnsafeBufferPointer<T> {
        UnsafeBufferPointer(start: base.assumingMemoryBound(to: T.self), count: count)
    }

    /// Elements `range` as a view into the same memory (validation_split copies nothing).
    func slice(_ range: Range<Int>, elementSize: Int) -> SharedFeatures {
        SharedFeatures(owner: owner, base: base + range.lowerBound * elementSize, count: range.count)
    }
}
