import _CZlib
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Where a data set comes from; the config's `data` section decodes into one of these.
public enum DataSource: Sendable, Equatable {
    /// LeCun IDX image and label files, each gzipped (detected by the gzip magic 1f 8b) or raw.
    case idx(images: String, labels: String)
    /// Numeric features; the label column by name (needs header) or 0-based index (negative = from end, -1 = last).
    case csv(path: String, label: CSVLabel, header: Bool)
    /// NumPy .npy arrays: features (N,) or (N, F) of float32/float64/uint8, labels (N,) or (N, 1).
    case npy(features: String, labels: String)
    /// sklearn's make_moons: two interleaving half circles, labels 0 and 1.
    case moons(samples: Int, noise: Double, seed: UInt64)
    /// Points uniform in [-2, 2]², label 1 outside the circle x₁² + x₂² = radiusSquared.
    case circles(samples: Int, radiusSquared: Double, seed: UInt64)
}

public enum CSVLabel: Sendable, Equatable {
    case name(String)
    case index(Int)
    /// Every column is a feature (unlabeled data for `ddp predict`); every label is 0.
    case none
}

public enum DataLoader {
    public static func load(_ source: DataSource) throws -> Dataset {
        switch source {
        case let .idx(images, labels):
            return try IDXFile.load(images: images, labels: labels)
        case let .csv(path, label, header):
            return try CSVFile.load(path: path, label: label, header: header)
        case let .npy(features, labels):
            return try NPYFile.load(features: features, labels: labels)
        case let .moons(samples, noise, seed):
            return try SyntheticData.moons(samples: samples, noise: noise, seed: seed)
        case let .circles(samples, radiusSquared, seed):
            return try SyntheticData.circles(samples: samples, radiusSquared: radiusSquared, seed: seed)
        }
    }
}

/// Whole-file reads, gunzipped when the file starts with the gzip magic 1f 8b (whatever its name).
enum DataFile {
    /// The file's bytes, decompressed if gzipped. `what` names the file's role in messages.
    static func contents(of path: String, what: String) throws -> [UInt8] {
        let bytes = try readAll(path, what: what)
        guard bytes.count >= 2, bytes[0] == 0x1F, bytes[1] == 0x8B else { return bytes }
        return try gunzip(bytes, path: path)
    }

    static func readAll(_ path: String, what: String) throws -> [UInt8] {
        try FileBytes.read(path, what: what, kind: .data)
    }

    /// Inflates every gzip member in `compressed` (windowBits 15+32: zlib parses the gzip header).
    /// More than `limit` bytes of output (a quarter of the machine's memory) is an error, not a trap.
    static func gunzip(_ compressed: [UInt8], path: String, limit: Int = MemoryCheck.physicalBytes / 4) throws -> [UInt8] {
        // The trailer's ISIZE (size mod 2^32, little-endian) sizes the output; deflate never
        // exceeds ~1032:1, which bounds a corrupt trailer.
        let n = compressed.count
        let isize = n >= 4 ? Int(compressed[n - 4]) | Int(compressed[n - 3]) << 8
                             | Int(compressed[n - 2]) << 16 | Int(compressed[n - 1]) << 24 : 0
        var output = [UInt8](repeating: 0, count: max(1 << 16, min(isize, n * 1040, limit)))
        var produced = 0
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DDPError(.data, "cannot decompress \(path): zlib failed to initialize")
        }
        defer { inflateEnd(&stream) }
        try compressed.withUnsafeBufferPointer { input in
            var consumed = 0
            while true {
                if produced == output.count {
                    // Doubling would not fit: a file that inflates this far is no training data.
                    guard output.count < limit else {
                        throw DDPError(.data, "\(path) decompresses to more than \(MemoryCheck.describe(output.count)), "
                                       + "more than a quarter of this machine's \(MemoryCheck.describe(MemoryCheck.physicalBytes)) of memory")
                    }
                    output.append(contentsOf: repeatElement(0, count: output.count))
                }
                let feed = min(n - consumed, Int(UInt32.max))
                let status = output.withUnsafeMutableBufferPointer { out -> Int32 in
                    stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress! + consumed)
                    stream.avail_in = UInt32(feed)
                    let room = min(out.count - produced, Int(UInt32.max))
                    stream.next_out = out.baseAddress! + produced
                    stream.avail_out = UInt32(room)
                    let status = inflate(&stream, Z_NO_FLUSH)
                    consumed += feed - Int(stream.avail_in)
                    produced += room - Int(stream.avail_out)
                    return status
                }
                switch status {
                case Z_STREAM_END:
                    // Another member may follow (as `cat a.gz b.gz` makes); anything else is ignored, as gzip does.
                    guard n - consumed >= 2, input[consumed] == 0x1F, input[consumed + 1] == 0x8B else {
                        output.removeLast(output.count - produced)
                        return
                    }
                    inflateReset(&stream)
                case Z_OK:
                    continue
                case Z_BUF_ERROR where consumed == n && produced < output.count:
                    throw DDPError(.data, "\(path) is a corrupt gzip file: the compressed data ends early (truncated file?)")
                case Z_BUF_ERROR:
                    continue
                default:
                    let reason = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                    throw DDPError(.data, "\(path) is a corrupt gzip file: \(reason)")
                }
            }
        }
        return output
    }
}

