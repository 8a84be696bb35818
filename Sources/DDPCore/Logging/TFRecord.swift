/// TFRecord framing, the container of TensorBoard event files
/// (`tensorflow/core/lib/io/record_writer.cc`). Each record is
///
///     uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes
///     | data[length] | uint32 masked CRC-32C of data
public enum TFRecord {
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var record: [UInt8] = []
        record.reserveCapacity(data.count + 16)
        frame(data, into: &record)
        return record
    }

    /// Frames `data` into `record`, replacing what it held: with the capacity reserved once,
    /// nothing is allocated (the per-step writer frames every event this way).
    public static func frame(_ data: [UInt8], into record: inout [UInt8]) {
        record.removeAll(keepingCapacity: true)
        withUnsafeBytes(of: UInt64(data.count).littleEndian) { length in
            record.append(contentsOf: length)
            withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { record.append(contentsOf: $0) }
        }
        record.append(contentsOf: data)
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { record.append(contentsOf: $0) }
    }

    /// The records of a whole file, every length and checksum verified. A record cut short at
    /// the end (a writer still running) is an error too: `file` names the file in the message.
    public static func records(_ bytes: [UInt8], file: String) throws -> [[UInt8]] {
        var records: [[UInt8]] = []
        var offset = 0
        func uint32(at position: Int) -> UInt32 {
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[position + $1]) << (8 * UInt32($1)) }
        }
        while offset < bytes.count {
            guard bytes.count - offset >= 12 else {
                throw DDPError(.data, "\(file): record \(records.count + 1) at byte \(offset) is cut short in its header")
            }
            let lengthBytes = bytes[offset..<offset + 8]
            guard uint32(at: offset + 8) == CRC32C.masked(lengthBytes) else {
                throw DDPError(.data, "\(file): record \(records.count + 1) at byte \(offset): the length's checksum does not match")
            }
            let length = lengthBytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let start = offset + 12
            guard length <= UInt64(bytes.count - start), bytes.count - start - Int(length) >= 4 else {
                throw DDPError(.data, "\(file): record \(records.count + 1) at byte \(offset) claims \(length) bytes; \(bytes.count - start) remain")
            }
            let end = start + Int(length)
            let data = Array(bytes[start..<end])
            guard uint32(at: end) == CRC32C.masked(data) else {
                throw DDPError(.data, "\(file): record \(records.count + 1) at byte \(offset): the data's checksum does not match")
            }
            records.append(data)
            offset = end + 4
        }
        return records
    }
}
