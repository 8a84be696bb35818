#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Numeric CSV: comma separated, an optional header line, fields trimmed of spaces and tabs,
/// blank lines skipped, CRLF and a UTF-8 byte-order mark tolerated, gzip detected by magic.
/// The label column must be numeric too: mapping class names to indices per file would give a
/// test file that lacks a class different indices from the training file.
enum CSVFile {
    /// `allowNonFiniteFeatures`: NaN and infinite features load (`ddp predict --allow-nan`);
    /// otherwise they are an error naming the line and column. Labels must always be finite.
    static func load(path: String, label: CSVLabel, header: Bool, allowNonFiniteFeatures: Bool = false) throws -> Dataset {
        let bytes = try DataFile.contents(of: path, what: "CSV file")
        return try parse(bytes, path: path, label: label, header: header, allowNonFiniteFeatures: allowNonFiniteFeatures)
    }

    static func parse(_ bytes: [UInt8], path: String, label: CSVLabel, header: Bool, allowNonFiniteFeatures: Bool = false) throws -> Dataset {
        try bytes.withUnsafeBufferPointer { text in
            var parser = Parser(text: text, path: path, allowNonFiniteFeatures: allowNonFiniteFeatures)
            return try parser.run(label: label, header: header)
        }
    }

    /// One pass over the bytes, parsing each field in place: no per-line or per-field allocation.
    private struct Parser {
        let text: UnsafeBufferPointer<UInt8>
        let path: String
        let allowNonFiniteFeatures: Bool
        var lineNumber = 0
        var names: [String]?
        var columnCount = 0
        var firstLine = 0
        var labelColumn = 0
        var features: [Float] = []
        var labels: [Float] = []
        /// 10^0 … 10^22, each exact in Double.
        let powersOfTen: [Double] = (0...22).map { k in (0..<k).reduce(1.0) { acc, _ in acc * 10 } }

        init(text: UnsafeBufferPointer<UInt8>, path: String, allowNonFiniteFeatures: Bool) {
            self.text = text
            self.path = path
            self.allowNonFiniteFeatures = allowNonFiniteFeatures
        }

        mutating func run(label: CSVLabel, header: Bool) throws -> Dataset {
            var position = text.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
            while position < text.count {
                lineNumber += 1
                var start = position
                var stop = start
                while stop < text.count && text[stop] != UInt8(ascii: "\n") { stop += 1 }
                position = stop + 1
                (start, stop) = trimmed(start, stop)
                if start == stop { continue }
                if columnCount == 0 {
                    let fields = split(start, stop)
                    columnCount = fields.count
                    firstLine = lineNumber
                    if header { names = fields.map { headerName($0) } }
                    labelColumn = try resolve(label)
                    reserve(from: position)
                    if header { continue }
                }
                try parseRow(start, stop)
            }
            guard !labels.isEmpty else { throw DDPError(.data, "\(path) holds no data rows") }
            guard labels.count <= Int(Int32.max) else {
                throw DDPError(.data, "\(path) holds \(labels.count) rows; at most \(Int32.max) are supported")
            }
            return Dataset(count: labels.count, featureCount: labelColumn < 0 ? columnCount : columnCount - 1, storage: .floats(features),
                           labels: labels, origin: path)
        }

        private mutating func parseRow(_ start: Int, _ stop: Int) throws {
            var column = 0
            var fieldStart = start
            while true {
                var fieldEnd = fieldStart
                while fieldEnd < stop && text[fieldEnd] != UInt8(ascii: ",") { fieldEnd += 1 }
                if column < columnCount {
                    let (a, b) = trimmed(fieldStart, fieldEnd)
                    guard let value = number(a, b), value.isFinite || (allowNonFiniteFeatures && column != labelColumn) else {
                        throw badNumber(a, b, column: column)
                    }
                    if column == labelColumn { labels.append(value) } else { features.append(value) }
                }
                column += 1
                if fieldEnd == stop { break }
                fieldStart = fieldEnd + 1
            }
            guard column == columnCount else {
                throw DDPError(.data, "\(path) line \(lineNumber) has \(column) fields, expected \(columnCount) as on line \(firstLine)")
            }
            if labelColumn < 0 { labels.append(0) }
        }

        /// The label's column, or −1 for `.none`.
        private func resolve(_ label: CSVLabel) throws -> Int {
            guard columnCount >= 2 || label == .none else {
                throw DDPError(.data, "\(path) line \(firstLine) has \(columnCount) column; a CSV needs a label and at least one feature column")
            }
            switch label {
            case .name(let name):
                guard let names else {
                    throw DDPError(.config, "the CSV label column '\(name)' is given by name, but \(path) is read without a header; set header: true or give the column index")
                }
                guard let index = names.firstIndex(of: name) else {
                    throw DDPError(.config, "label column '\(name)' is not in the header of \(path); available columns: \(names.joined(separator: ", "))")
                }
                return index
            case .none:
                return -1
            case .index(let index):
                let resolved = index < 0 ? columnCount + index : index
                guard resolved >= 0 && resolved < columnCount else {
                    throw DDPError(.config, "label column index \(index) is out of range for \(path), which has \(columnCount) columns (use 0…\(columnCount - 1), or -1…-\(columnCount) from the end)")
                }
                return resolved
            }
        }

        /// Reserves storage for the rows still to come, estimated by counting newlines.
        private mutating func reserve(from position: Int) {
            var lines = 1
            var i = position
            while i < text.count {
                if text[i] == UInt8(ascii: "\n") { lines += 1 }
                i += 1
            }
            labels.reserveCapacity(lines)
            // A guess, bounded by the bytes left: each value takes at least a digit and a separator.
            features.reserveCapacity(min(saturatingProduct(lines, columnCount - 1), (text.count - position) / 2 + 1))
        }

        /// The field as a Float (NaN or ±infinity included), or nil. Plain decimals of at most 15 digits take Clinger's fast path
        /// (an exact integer divided by an exact power of ten ≤ 1e22 is correctly rounded);
        /// everything else goes to strtod.
        private func number(_ start: Int, _ stop: Int) -> Float? {
            guard start < stop else { return nil }
            var i = start
            let negative = text[i] == UInt8(ascii: "-")
            if negative || text[i] == UInt8(ascii: "+") { i += 1 }
            var mantissa: UInt64 = 0, digits = 0, fractionDigits = 0, seenPoint = false
            while i < stop {
                let c = text[i]
                if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                    if digits < 19 { mantissa = mantissa * 10 + UInt64(c - UInt8(ascii: "0")) }
                    digits += 1
                    if seenPoint { fractionDigits += 1 }
                } else if c == UInt8(ascii: "."), !seenPoint {
                    seenPoint = true
                } else {
                    break
                }
                i += 1
            }
            let value: Double
            if i == stop && digits > 0 && digits <= 15 && fractionDigits <= 22 {
                let magnitude = fractionDigits == 0 ? Double(mantissa) : Double(mantissa) / powersOfTen[fractionDigits]
                value = negative ? -magnitude : magnitude
            } else {
                guard let parsed = strtod(start, stop) else { return nil }
                value = parsed
            }
            return Float(value)
        }

        private func strtod(_ start: Int, _ stop: Int) -> Double? {
            let length = stop - start
            return withUnsafeTemporaryAllocation(of: CChar.self, capacity: length + 1) { buffer in
                for k in 0..<length { buffer[k] = CChar(bitPattern: text[start + k]) }
                buffer[length] = 0
                var end: UnsafeMutablePointer<CChar>?
                let value = CSVFile.cStrtod(buffer.baseAddress!, &end)
                return end == buffer.baseAddress! + length ? value : nil
            }
        }

        private func badNumber(_ start: Int, _ stop: Int, column: Int) -> DDPError {
            var field = String(decoding: text[start..<stop], as: UTF8.self)
            if field.count > 40 { field = field.prefix(40) + "…" }
            let name = names.map { " ('\($0[column])')" } ?? ""
            let role = column == labelColumn ? "label" : "feature"
            return DDPError(.data, "\(path) line \(lineNumber), column \(column + 1)\(name): \(role) '\(field)' is not a finite number")
        }

        private func trimmed(_ start: Int, _ stop: Int) -> (Int, Int) {
            func blank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D }
            var (a, b) = (start, stop)
            while a < b && blank(text[a]) { a += 1 }
            while b > a && blank(text[b - 1]) { b -= 1 }
            return (a, b)
        }

        private func split(_ start: Int, _ stop: Int) -> [Range<Int>] {
            var fields: [Range<Int>] = []
            var fieldStart = start
            for i in start...stop where i == stop || text[i] == UInt8(ascii: ",") {
                let (a, b) = trimmed(fieldStart, i)
                fields.append(a..<b)
                fieldStart = i + 1
            }
            return fields
        }

        /// A header field without surrounding double quotes, as spreadsheets write them.
        private func headerName(_ range: Range<Int>) -> String {
            var (a, b) = (range.lowerBound, range.upperBound)
            if b - a >= 2 && text[a] == UInt8(ascii: "\"") && text[b - 1] == UInt8(ascii: "\"") {
                (a, b) = (a + 1, b - 1)
            }
            return String(decoding: text[a..<b], as: UTF8.self)
        }
    }

    private static func cStrtod(_ text: UnsafePointer<CChar>, _ end: inout UnsafeMutablePointer<CChar>?) -> Double {
        strtod(text, &end)
    }
}
