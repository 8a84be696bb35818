#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The safetensors format (what PyTorch and Keras exchange weights in): an 8-byte little-endian
/// header length N, N bytes of JSON naming each tensor's dtype, shape and byte range, then the
/// tensors' data packed back to back. Files we write load with `safetensors.torch.load_file`.
public enum SafeTensors {
    public typealias Contents = (tensors: [String: StoredTensor], order: [String], metadata: [String: String])

    /// Serialized file bytes, tensors in the given order. The header is padded with spaces to a
    /// multiple of 8 bytes, as the reference writer does, so the data section stays aligned.
    /// Duplicate names or a shape that does not match a tensor's bytes are programming errors and trap.
    public static func encode(_ tensors: [StoredTensor], metadata: [String: String] = [:]) -> [UInt8] {
        var header: [UInt8] = [UInt8(ascii: "{")]
        var separator = false
        func appendKey(_ key: String) {
            if separator { header.append(UInt8(ascii: ",")) }
            separator = true
            HeaderJSON.appendString(key, to: &header)
            header.append(UInt8(ascii: ":"))
        }
        if !metadata.isEmpty {
            appendKey(metadataKey)
            header.append(UInt8(ascii: "{"))
            for (index, key) in metadata.keys.sorted().enumerated() {
                if index > 0 { header.append(UInt8(ascii: ",")) }
                HeaderJSON.appendString(key, to: &header)
                header.append(UInt8(ascii: ":"))
                HeaderJSON.appendString(metadata[key]!, to: &header)
            }
            header.append(UInt8(ascii: "}"))
        }
        var names = Set<String>()
        var offset = 0
        for tensor in tensors {
            precondition(tensor.name != metadataKey, "a tensor cannot be named \(metadataKey)")
            precondition(names.insert(tensor.name).inserted, "duplicate tensor name '\(tensor.name)'")
            precondition(byteCount(shape: tensor.shape, dtype: tensor.dtype) == tensor.bytes.count,
                         "tensor '\(tensor.name)': shape \(tensor.shape) does not match its \(tensor.bytes.count) bytes")
            appendKey(tensor.name)
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            let entry = #"{"dtype":"\#(tensor.dtype.rawValue)","shape":[\#(shape)],"#
                + #""data_offsets":[\#(offset),\#(offset + tensor.bytes.count)]}"#
            header += Array(entry.utf8)
            offset += tensor.bytes.count
        }
        header.append(UInt8(ascii: "}"))
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }

        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out += $0 }
        out += header
        for tensor in tensors { out += tensor.bytes }
        return out
    }

    /// Parses and validates a whole file: header length within the file, JSON well formed, every
    /// dtype known, each tensor's byte range exactly its shape × dtype size, and the ranges tiling
    /// the data section with no gap or overlap (what the reference reader also demands).
    /// `order` lists tensors by position in the data section, i.e. the order they were written.
    /// Every failure is a `DDPError(.weights)` naming `file`.
    public static func decode(_ bytes: [UInt8], file: String) throws -> Contents {
        func fail(_ message: String) -> DDPError { DDPError(.weights, message) }

        guard bytes.count >= 8 else {
            throw fail("\(file) is truncated: a safetensors file starts with an 8-byte header length, "
                + "file has \(bytes.count) bytes")
        }
        let headerLength = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let afterLength = bytes.count - 8
        guard headerLength <= UInt64(afterLength) else {
            throw fail("\(file) is truncated or not a safetensors file: header length says \(headerLength) bytes, "
                + "only \(afterLength) bytes follow")
        }
        let dataStart = 8 + Int(headerLength)
        let headerBytes = bytes[8..<dataStart]
        guard String(decoding: headerBytes, as: UTF8.self).utf8.elementsEqual(headerBytes) else {
            throw fail("\(file) has a malformed safetensors header: it is not valid UTF-8")
        }
        let json: HeaderJSON
        do {
            json = try HeaderJSON.parse(headerBytes)
        } catch {
            throw fail("\(file) has a malformed safetensors header: \(error.message)")
        }
        guard case let .object(members) = json else {
            throw fail("\(file) has a malformed safetensors header: expected a JSON object, found \(json.kindName)")
        }

        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (index, (name, value)) in members.enumerated() {
            if name == metadataKey {
                metadata = try parseMetadata(value, file: file)
            } else {
                let (dtype, shape, begin, end) = try parseTensorInfo(name: name, value, file: file)
                entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end, headerIndex: index))
            }
        }

        let dataCount = bytes.count - dataStart
        try checkTiling(&entries, dataCount: dataCount, file: file)

        var tensors: [String: StoredTensor] = [:]
        tensors.reserveCapacity(entries.count)
        for entry in entries {
            tensors[entry.name] = StoredTensor(
                name: entry.name, dtype: entry.dtype, shape: entry.shape,
                bytes: Array(bytes[(dataStart + entry.begin)..<(dataStart + entry.end)]))
        }
        return (tensors, entries.map(\.name), metadata)
    }

    /// One tensor's header entry: its byte range in the data section, and its place in the header.
    private struct Entry {
        var name: String, dtype: TensorDType, shape: [Int], begin: Int, end: Int, headerIndex: Int
    }

    /// The entries' byte ranges must tile the data section exactly: each within it, no gap, no
    /// overlap. Sorts `entries` by position.
    private static func checkTiling(_ entries: inout [Entry], dataCount: Int, file: String) throws {
        let dataNeeded = entries.map(\.end).max() ?? 0
        guard dataNeeded <= dataCount else {
            throw DDPError(.weights, "\(file) is truncated: header says \(dataNeeded) bytes of tensor data, file has \(dataCount)")
        }
        entries.sort { ($0.begin, $0.end, $0.headerIndex) < ($1.begin, $1.end, $1.headerIndex) }
        var covered = 0
        var previous: Entry?
        for entry in entries {
            if entry.begin < covered, let previous {
                throw DDPError(.weights, "\(file) is corrupt: tensors '\(previous.name)' [\(previous.begin), \(previous.end)] "
                    + "and '\(entry.name)' [\(entry.begin), \(entry.end)] overlap")
            }
            guard entry.begin == covered else {
                throw DDPError(.weights, "\(file) is corrupt: no tensor covers data bytes \(covered)..<\(entry.begin)")
            }
            covered = entry.end
            previous = entry
        }
        guard covered == dataCount else {
            throw DDPError(.weights, "\(file) is corrupt: header accounts for \(covered) bytes of tensor data, "
                + "file has \(dataCount)")
        }
    }

    /// Reads and decodes the file at `path`; a missing or unreadable file is a `DDPError(.weights)`.
    public static func read(path: String) throws -> Contents {
        try decode(FileBytes.read(path, what: "weights file", kind: .weights), file: path)
    }

    /// Encodes and writes atomically, so an interrupted save never leaves a half-written checkpoint.
    public static func write(_ tensors: [StoredTensor], metadata: [String: String] = [:], to path: String) throws {
        try AtomicFile.write(encode(tensors, metadata: metadata), to: path)
    }

    private static let metadataKey = "__metadata__"

    /// shape × dtype size, or nil for a negative dimension or an overflowing product.
    private static func byteCount(shape: [Int], dtype: TensorDType) -> Int? {
        var product = dtype.byteWidth
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (next, overflow) = product.multipliedReportingOverflow(by: dimension)
            guard !overflow else { return nil }
            product = next
        }
        return product
    }

    private static func parseMetadata(_ value: HeaderJSON, file: String) throws -> [String: String] {
        guard case let .object(members) = value else {
            throw DDPError(.weights, "\(file): \(metadataKey) must be an object of strings, found \(value.kindName)")
        }
        var metadata: [String: String] = [:]
        for (key, item) in members {
            guard case let .string(text) = item else {
                throw DDPError(.weights, "\(file): \(metadataKey) entry '\(key)' must be a string, found \(item.kindName)")
            }
            metadata[key] = text
        }
        return metadata
    }

    private static func parseTensorInfo(name: String, _ value: HeaderJSON, file: String) throws
        -> (TensorDType, [Int], Int, Int) {
        func fail(_ message: String) -> DDPError { DDPError(.weights, "\(file): tensor '\(name)' \(message)") }
        guard case let .object(fields) = value else {
            throw fail("must be described by an object, found \(value.kindName)")
        }
        func field(_ key: String) throws -> HeaderJSON {
            guard let found = fields.first(where: { $0.key == key }) else { throw fail("has no \"\(key)\"") }
            return found.value
        }
        func integers(_ key: String) throws -> [Int] {
            guard case let .array(items) = try field(key) else { throw fail("\"\(key)\" must be an array") }
            return try items.map {
                guard let number = $0.nonNegativeInt else {
                    let found = if case let .number(text) = $0 { text } else { $0.kindName }
                    throw fail("\"\(key)\" must hold non-negative integers, found \(found)")
                }
                return number
            }
        }

        guard case let .string(dtypeName) = try field("dtype") else { throw fail("\"dtype\" must be a string") }
        guard let dtype = TensorDType(rawValue: dtypeName) else {
            let supported = TensorDType.allCases.map(\.rawValue).joined(separator: ", ")
            throw fail("has dtype \(dtypeName); expected one of \(supported)")
        }
        let shape = try integers("shape")
        let offsets = try integers("data_offsets")
        guard offsets.count == 2 else { throw fail("\"data_offsets\" must be [begin, end], found \(offsets)") }
        let (begin, end) = (offsets[0], offsets[1])
        guard let size = byteCount(shape: shape, dtype: dtype) else { throw fail("has shape \(shape), which is too large") }
        guard begin <= end, end - begin == size else {
            throw fail("has shape \(shape) of \(dtype.rawValue) (\(size) bytes) but data_offsets [\(begin), \(end)]")
        }
        return (dtype, shape, begin, end)
    }
}
