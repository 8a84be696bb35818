import Foundation

/// NumPy's .npy format (numpy.lib.format, versions 1.0, 2.0, 3.0): the magic "\x93NUMPY", a major
/// and minor version byte, the header length (UInt16 little-endian in 1.0, UInt32 in 2.0 and
/// 3.0), then an ASCII Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }`, then the values.
///
/// Features may be float32, float64 or uint8, 1-D (one feature per sample) or 2-D
/// (samples × features) in C order; uint8 features stay bytes, as IDX images do. Labels are
/// any integer or float type, shape (N,) or (N, 1). Either byte order is accepted. Fortran
/// order, object arrays (which hold pickles), bare pickles and .npz archives are refused with
/// a message that says how to save the array instead.
public enum NPYFile {
    /// Without `labelsPath` (unlabeled features, for `ddp predict`) every label is 0.
    /// `allowNonFiniteFeatures`: NaN and infinite features load (`ddp predict --allow-nan`).
    static func load(features featuresPath: String, labels labelsPath: String?, allowNonFiniteFeatures: Bool = false) throws -> Dataset {
        let features = try parse(DataFile.contents(of: featuresPath, what: ".npy features file"), path: featuresPath)
        guard features.shape.count == 1 || features.shape.count == 2 else {
            throw DDPError(.data, "\(featuresPath) holds an array of shape \(features.shapeText); features must be 1-D (samples) or 2-D (samples, features): reshape to (N, -1) and set data.image_shape for images")
        }
        let count = features.shape[0], width = features.shape.count == 2 ? features.shape[1] : 1
        var labelValues = [Float](repeating: 0, count: count)
        if let labelsPath {
            let labels = try parse(DataFile.contents(of: labelsPath, what: ".npy labels file"), path: labelsPath)
            guard labels.shape.count == 1 || (labels.shape.count == 2 && labels.shape[1] == 1) else {
                throw DDPError(.data, "\(labelsPath) holds an array of shape \(labels.shapeText); labels must have shape (N,) or (N, 1)")
            }
            guard labels.shape[0] == count else {
                throw DDPError(.data, "sample count mismatch: \(featuresPath) holds \(count) samples (shape \(features.shapeText)) but \(labelsPath) holds \(labels.shape[0]) labels")
            }
            labelValues = labels.floats()
            if let bad = labelValues.firstIndex(where: { !$0.isFinite }) {
                throw DDPError(.data, "\(labelsPath): the label of sample \(bad) is \(labelValues[bad]) as float32 (\(labels.typeText) in the file); labels must be finite numbers")
            }
        }
        guard count > 0, width > 0 else {
            throw DDPError(.data, "\(featuresPath) holds no values: its shape is \(features.shapeText)")
        }
        guard count <= Int(Int32.max) else {     // training addresses rows with Int32
            throw DDPError(.data, "\(featuresPath) holds \(count) samples; at most \(Int32.max) are supported")
        }
        let storage: Dataset.Storage
        switch features.type {
        case .unsigned(1): storage = .bytes(Array(features.bytes[features.dataStart...]))
        case .float(4), .float(8):
            let values = features.floats()
            // A NaN or infinity reaches the loss as "the loss became non-finite": name it here.
            if !allowNonFiniteFeatures, let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw DDPError(.data, "\(featuresPath): sample \(bad / width), feature \(bad % width) is \(values[bad]) as float32 "
                               + "(\(features.typeText) in the file); features must be finite numbers")
            }
            storage = .floats(values)
        default:
            throw DDPError(.data, "\(featuresPath) holds \(features.typeText) values; features must be float32, float64 or uint8")
        }
        return Dataset(count: count, featureCount: width, storage: storage, labels: labelValues, origin: featuresPath)
    }

    /// An .npy file (version 1.0) as numpy.save writes it: the header dict padded with spaces and
    /// a newline so the values start at a multiple of 64 bytes. `values` are the raw element
    /// bytes in C order; `descr` their NumPy type ('<f4', '|u1', '<i8', …).
    public static func encode(descr: String, shape: [Int], fortranOrder: Bool = false, values: [UInt8]) -> [UInt8] {
        let shapeText = "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
        var header = "{'descr': '\(descr)', 'fortran_order': \(fortranOrder ? "True" : "False"), 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let length = header.utf8.count
        return [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(length & 255), UInt8(length >> 8)] + Array(header.utf8) + values
    }

    /// The element type as the descr's kind letter and size: '<f4' → .float(4).
    enum ElementType: Equatable {
        case float(Int), signed(Int), unsigned(Int), boolean
    }

    /// A parsed file: its element type, byte order, shape, and where the values start in `bytes`.
    struct ParsedArray {
        let path: String
        let bytes: [UInt8]
        let type: ElementType
        let descr: String
        let bigEndian: Bool
        let shape: [Int]
        let dataStart: Int
        var count: Int { shape.reduce(1, *) }
        var shapeText: String { "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")") }
        var typeText: String { "'\(descr)'" }

        /// Every value as Float (integers above 2^24 round, as any float32 conversion does).
        func floats() -> [Float] {
            var result = [Float](repeating: 0, count: count)
            bytes.withUnsafeBytes { raw in
                let base = raw.baseAddress! + dataStart
                result.withUnsafeMutableBufferPointer { out in
                    for i in 0..<out.count { out[i] = value(base, i) }
                }
            }
            return result
        }

        @inline(__always)
        private func value(_ base: UnsafeRawPointer, _ i: Int) -> Float {
            func load<T: FixedWidthInteger>(_: T.Type) -> T {
                let raw = base.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self)
                return bigEndian ? T(bigEndian: raw) : T(littleEndian: raw)
            }
            switch type {
            case .float(4): return Float(bitPattern: load(UInt32.self))
            case .float(8): return Float(Double(bitPattern: load(UInt64.self)))
            case .float(2): return Float(Float16(bitPattern: load(UInt16.self)))
            case .signed(1): return Float(load(Int8.self))
            case .signed(2): return Float(load(Int16.self))
            case .signed(4): return Float(load(Int32.self))
            case .signed(8): return Float(load(Int64.self))
            case .unsigned(1), .boolean: return Float(load(UInt8.self))
            case .unsigned(2): return Float(load(UInt16.self))
            case .unsigned(4): return Float(load(UInt32.self))
            case .unsigned(8): return Float(load(UInt64.self))
            default: preconditionFailure("NPYFile: unchecked element type \(type)")
            }
        }
    }

    static func parse(_ bytes: [UInt8], path: String) throws -> ParsedArray {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]     // \x93NUMPY
        guard bytes.starts(with: magic) else {
            if bytes.first == 0x80 {
                throw DDPError(.data, "\(path) is a Python pickle, not an .npy file; save the array with numpy.save(path, array)")
            }
            if bytes.starts(with: [0x50, 0x4B]) {
                throw DDPError(.data, "\(path) is a zip archive (.npz?), not an .npy file; save each array with numpy.save(path, array)")
            }
            throw DDPError(.data, "\(path) is not an .npy file: it does not start with the magic \\x93NUMPY")
        }
        guard bytes.count >= 10 else {
            throw DDPError(.data, "\(path) is truncated: an .npy file needs at least a 10-byte preamble, found \(bytes.count) bytes")
        }
        let major = bytes[6]
        let lengthBytes: Int
        switch major {
        case 1: lengthBytes = 2
        case 2, 3: lengthBytes = 4
        default: throw DDPError(.data, "\(path) is .npy format version \(major).\(bytes[7]); versions 1.0, 2.0 and 3.0 are supported")
        }
        var headerLength = 0
        for k in 0..<lengthBytes where 8 + k < bytes.count { headerLength |= Int(bytes[8 + k]) << (8 * k) }
        let dataStart = 8 + lengthBytes + headerLength
        guard bytes.count >= dataStart else {
            throw DDPError(.data, "\(path) is truncated: its .npy header is \(headerLength) bytes, the file holds \(bytes.count) bytes in all")
        }
        let header = String(decoding: bytes[(8 + lengthBytes)..<dataStart], as: UTF8.self)
        let dict = try HeaderDict(header, path: path)

        guard let fortran = dict.entries["fortran_order"] else { throw dict.missing("fortran_order") }
        guard fortran == "False" else {
            if fortran == "True" {
                throw DDPError(.data, "\(path) is stored in Fortran (column-major) order; save a C-order copy: numpy.save(path, numpy.ascontiguousarray(array))")
            }
            throw dict.bad("fortran_order", fortran)
        }
        guard let descrText = dict.entries["descr"] else { throw dict.missing("descr") }
        guard let descr = HeaderDict.quoted(descrText) else {
            throw DDPError(.data, "\(path) holds a structured array (descr \(descrText)); save a plain numeric array")
        }
        let (type, bigEndian) = try elementType(descr, path: path)
        guard let shapeText = dict.entries["shape"] else { throw dict.missing("shape") }
        let shape = try HeaderDict.tuple(shapeText) ?? { throw dict.bad("shape", shapeText) }()
        guard shape.allSatisfy({ $0 >= 0 }) else { throw dict.bad("shape", shapeText) }

        let size: Int
        switch type {
        case .float(let n), .signed(let n), .unsigned(let n): size = n
        case .boolean: size = 1
        }
        var values = 1, overflow = false
        for dimension in shape {
            let (product, overflowed) = values.multipliedReportingOverflow(by: dimension)
            values = product
            overflow = overflow || overflowed
        }
        let (expected, overflowed) = values.multipliedReportingOverflow(by: size)
        let found = bytes.count - dataStart
        let shapeDescription = "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
        if overflow || overflowed || found < expected {
            throw DDPError(.data, "\(path) is truncated: its header promises shape \(shapeDescription) of '\(descr)' = \(overflow || overflowed ? "more than \(Int.max)" : String(expected)) bytes, found \(found)")
        }
        if found > expected {
            throw DDPError(.data, "\(path) is malformed: its header promises shape \(shapeDescription) of '\(descr)' = \(expected) bytes, found \(found) (\(found - expected) extra)")
        }
        return ParsedArray(path: path, bytes: bytes, type: type, descr: descr, bigEndian: bigEndian, shape: shape, dataStart: dataStart)
    }

    /// '<f4' → (.float(4), little-endian). '|' and '=' mean no byte order / native (little here).
    static func elementType(_ descr: String, path: String) throws -> (ElementType, Bool) {
        let characters = Array(descr)
        if characters.count >= 2, characters[1] == "O" {
            throw DDPError(.data, "\(path) holds an object array (descr '\(descr)'), whose values are pickled Python objects; save a numeric array (e.g. array.astype(numpy.float32))")
        }
        guard characters.count >= 3, "<>|=".contains(characters[0]), let size = Int(String(characters[2...])) else {
            throw DDPError(.data, "\(path) holds values of type '\(descr)', which is not a NumPy numeric type")
        }
        let bigEndian = characters[0] == ">"
        let type: ElementType
        switch (characters[1], size) {
        case ("f", 2), ("f", 4), ("f", 8): type = .float(size)
        case ("i", 1), ("i", 2), ("i", 4), ("i", 8): type = .signed(size)
        case ("u", 1), ("u", 2), ("u", 4), ("u", 8): type = .unsigned(size)
        case ("b", 1): type = .boolean
        default:
            throw DDPError(.data, "\(path) holds values of type '\(descr)'; expected a float, integer or bool type")
        }
        return (type, bigEndian)
    }

    /// The header's Python dict literal, split into its top-level 'key': value entries.
    struct HeaderDict {
        let path: String
        let entries: [String: String]

        init(_ text: String, path: String) throws {
            self.path = path
            var body = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
            guard body.hasPrefix("{"), body.hasSuffix("}") else {
                throw DDPError(.data, "\(path) has a malformed .npy header: expected a Python dict literal, found \(text.prefix(80))")
            }
            body = body.dropFirst().dropLast()
            var entries: [String: String] = [:]
            var depth = 0, quote: Character?
            var current = ""
            func flush() throws {
                let entry = current.trimmingCharacters(in: .whitespacesAndNewlines)
                current = ""
                guard !entry.isEmpty else { return }
                guard let colon = entry.firstIndex(of: ":"), let key = HeaderDict.quoted(String(entry[..<colon]).trimmingCharacters(in: .whitespaces)) else {
                    throw DDPError(.data, "\(path) has a malformed .npy header entry: \(entry)")
                }
                entries[key] = String(entry[entry.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            }
            for character in body {
                if let open = quote {
                    if character == open { quote = nil }
                } else if character == "'" || character == "\"" {
                    quote = character
                } else if "([{".contains(character) {
                    depth += 1
                } else if ")]}".contains(character) {
                    depth -= 1
                } else if character == ",", depth == 0 {
                    try flush()
                    continue
                }
                current.append(character)
            }
            try flush()
            self.entries = entries
        }

        func missing(_ key: String) -> DDPError {
            DDPError(.data, "\(path) has a malformed .npy header: no '\(key)' entry")
        }

        func bad(_ key: String, _ value: String) -> DDPError {
            DDPError(.data, "\(path) has a malformed .npy header: '\(key)' is \(value)")
        }

        /// 'text' or "text" → text; anything else → nil.
        static func quoted(_ text: String) -> String? {
            guard text.count >= 2, let first = text.first, first == "'" || first == "\"", text.last == first else { return nil }
            return String(text.dropFirst().dropLast())
        }

        /// "(3, 4)", "(3,)", "()" → the integers.
        static func tuple(_ text: String) -> [Int]? {
            guard text.hasPrefix("("), text.hasSuffix(")") else { return nil }
            var values: [Int] = []
            for part in text.dropFirst().dropLast().split(separator: ",") {
                let trimmed = part.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "L", with: "")
                if trimmed.isEmpty { continue }
                guard let value = Int(trimmed) else { return nil }
                values.append(value)
            }
            return values
        }
    }
}
