/// Just enough protocol-buffer encoding for TensorBoard's Event and Summary messages
/// (https://protobuf.dev/programming-guides/encoding/): varints, 64-bit and 32-bit fixed
/// little-endian values, and length-delimited fields, each behind a (field << 3 | wire type) key.
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    /// Empties the message, keeping its capacity: a writer reused for every event allocates
    /// nothing once it has grown to the largest.
    mutating func reset() { bytes.removeAll(keepingCapacity: true) }

    private enum WireType: UInt64 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
    }

    private mutating func key(_ field: Int, _ type: WireType) { varint(UInt64(field) << 3 | type.rawValue) }

    private mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    /// int64 fields: negative numbers are their two's complement, ten bytes long.
    mutating func int64(_ field: Int, _ value: Int64) {
        key(field, .varint)
        varint(UInt64(bitPattern: value))
    }

    /// An enum or int32 field (non-negative values only are needed here).
    mutating func enumValue(_ field: Int, _ value: Int) { int64(field, Int64(value)) }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, .fixed64)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, .fixed32)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func bytes(_ field: Int, _ value: [UInt8]) {
        key(field, .lengthDelimited)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    mutating func string(_ field: Int, _ value: String) { bytes(field, Array(value.utf8)) }

    /// An embedded message is a length-delimited field holding the message's own encoding.
    mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        build(&inner)
        bytes(field, inner.bytes)
    }

    /// A `repeated double` field, packed as proto3 packs it by default: one length-delimited
    /// field holding the values' 8-byte little-endian encodings back to back.
    mutating func packedDoubles(_ field: Int, _ values: [Double]) {
        key(field, .lengthDelimited)
        varint(UInt64(values.count * 8))
        for value in values {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
        }
    }
}
