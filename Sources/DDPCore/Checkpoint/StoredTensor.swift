/// Element types a safetensors file may hold that the trainer reads or writes. Raw values are the
/// safetensors header spellings.
public enum TensorDType: String, Sendable, CaseIterable {
    case float32 = "F32", float64 = "F64", int64 = "I64"

    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .float32: 4
        case .float64, .int64: 8
        }
    }
}

/// One named tensor as it sits in a file: raw little-endian bytes, so reading and writing never
/// converts values and a round trip is bit-exact (NaN payloads included).
public struct StoredTensor: Sendable, Equatable {
    public var name: String
    public var dtype: TensorDType
    public var shape: [Int]
    /// Little-endian raw data, `elementCount × dtype.byteWidth` bytes.
    public var bytes: [UInt8]

    /// For the decoder, which has already checked that `bytes` fits `shape`.
    init(name: String, dtype: TensorDType, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    public init(name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        Self.checkShape(shape, count: floats.count, name: name)
        self.init(name: name, dtype: .float32, shape: shape,
                  bytes: Self.littleEndianBytes(floats) { Float(bitPattern: $0.bitPattern.byteSwapped) })
    }

    public init(name: String, shape: [Int], floats: [Float]) {
        self = floats.withUnsafeBufferPointer { StoredTensor(name: name, shape: shape, floats: $0) }
    }

    public init(name: String, shape: [Int], doubles: [Double]) {
        Self.checkShape(shape, count: doubles.count, name: name)
        let bytes = doubles.withUnsafeBufferPointer {
            Self.littleEndianBytes($0) { Double(bitPattern: $0.bitPattern.byteSwapped) }
        }
        self.init(name: name, dtype: .float64, shape: shape, bytes: bytes)
    }

    public init(name: String, shape: [Int], int64s: [Int64]) {
        Self.checkShape(shape, count: int64s.count, name: name)
        let bytes = int64s.withUnsafeBufferPointer { Self.littleEndianBytes($0) { $0.byteSwapped } }
        self.init(name: name, dtype: .int64, shape: shape, bytes: bytes)
    }

    /// Derived from the byte count rather than `shape`, so it cannot overflow on a hand-edited shape.
    public var elementCount: Int { bytes.count / dtype.byteWidth }

    public func floats() -> [Float]? {
        dtype == .float32 ? values { Float(bitPattern: $0.bitPattern.byteSwapped) } : nil
    }

    public func doubles() -> [Double]? {
        dtype == .float64 ? values { Double(bitPattern: $0.bitPattern.byteSwapped) } : nil
    }

    public func int64s() -> [Int64]? {
        dtype == .int64 ? values { (v: Int64) in v.byteSwapped } : nil
    }

    /// Copies F32 data straight into a model's parameter storage, without an intermediate array.
    /// `file` only names the source in the error message.
    public func copyFloats(into destination: UnsafeMutableBufferPointer<Float>, file: String) throws {
        guard dtype == .float32 else {
            throw DDPError(.weights, "\(file): tensor '\(name)' is \(dtype.rawValue), expected F32")
        }
        guard destination.count == elementCount else {
            throw DDPError(.weights, "\(file): tensor '\(name)' has \(elementCount) elements (shape \(shape)), "
                + "expected \(destination.count)")
        }
        guard !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(destination).copyMemory(from: $0) }
        #if _endian(big)
        for i in destination.indices {
            destination[i] = Float(bitPattern: destination[i].bitPattern.byteSwapped)
        }
        #endif
    }

    /// Construction from mismatched data is a programming error, not bad input, so it traps.
    private static func checkShape(_ shape: [Int], count: Int, name: String) {
        var product = 1
        for dimension in shape {
            precondition(dimension >= 0, "tensor '\(name)': negative dimension in shape \(shape)")
            let (next, overflow) = product.multipliedReportingOverflow(by: dimension)
            precondition(!overflow, "tensor '\(name)': shape \(shape) overflows")
            product = next
        }
        precondition(product == count, "tensor '\(name)': shape \(shape) needs \(product) values, got \(count)")
    }

    /// The file is little-endian; on the (little-endian) hosts we run on this is a plain copy.
    private static func littleEndianBytes<T>(_ values: UnsafeBufferPointer<T>,
                                             byteSwapped: (T) -> T) -> [UInt8] {
        #if _endian(big)
        return values.map(byteSwapped).withUnsafeBytes { Array($0) }
        #else
        return Array(UnsafeRawBufferPointer(values))
        #endif
    }

    private func values<T>(byteSwapped: (T) -> T) -> [T] {
        let count = elementCount
        let result = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 {
                bytes.withUnsafeBytes { source in
                    UnsafeMutableRawBufferPointer(buffer)
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: source.prefix(count * MemoryLayout<T>.size)))
                }
            }
            initialized = count
        }
        #if _endian(big)
        return result.map(byteSwapped)
        #else
        return result
        #endif
    }
}
