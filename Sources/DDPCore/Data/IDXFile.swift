/// LeCun's IDX format (yann.lecun.com/exdb/mnist): a big-endian UInt32 magic 0x000008TD
/// (T = 08: unsigned bytes, D = number of dimensions), D big-endian UInt32 sizes, then the
/// values row-major. Images are 0x00000803 (N × rows × cols), labels 0x00000801 (N).
enum IDXFile {
    /// Without `labelsPath` (unlabeled images, for `ddp predict`) every label is 0.
    static func load(images imagesPath: String, labels labelsPath: String?) throws -> Dataset {
        let images = try DataFile.contents(of: imagesPath, what: "IDX images file")
        let header = try parseHeader(images, path: imagesPath, dimensions: 3)
        let (count, rows, columns) = (header[0], header[1], header[2])
        var labels: [UInt8]?
        if let labelsPath {
            let bytes = try DataFile.contents(of: labelsPath, what: "IDX labels file")
            let labelHeader = try parseHeader(bytes, path: labelsPath, dimensions: 1)
            guard count == labelHeader[0] else {
                throw DDPError(.data, "image/label count mismatch: \(imagesPath) holds \(count) images "
                    + "but \(labelsPath) holds \(labelHeader[0]) labels")
            }
            labels = bytes
        }
        guard count > 0, rows > 0, columns > 0 else {
            throw DDPError(.data, "\(imagesPath) holds no pixels: its header says \(count) images of \(rows)×\(columns)")
        }
        // Sizes are below 2^32 each, so products can overflow Int; such a header cannot fit any file.
        let (features, overflow1) = rows.multipliedReportingOverflow(by: columns)
        let (pixels, overflow2) = count.multipliedReportingOverflow(by: features)
        let promise = overflow1 || overflow2 ? "\(count) images of \(rows)×\(columns) bytes"
                                             : "\(count) images of \(rows)×\(columns) = \(pixels) bytes"
        try checkLength(images, path: imagesPath, headerBytes: 16,
                        values: overflow1 || overflow2 ? Int.max : pixels, promise: promise)
        if let labels, let labelsPath {
            try checkLength(labels, path: labelsPath, headerBytes: 8, values: count,
                            promise: "\(count) labels = \(count) bytes")
        }
        guard count <= Int(Int32.max) else {     // training addresses rows with Int32
            throw DDPError(.data, "\(imagesPath) holds \(count) images; at most \(Int32.max) are supported")
        }
        var data = Dataset(count: count, featureCount: features, storage: .bytes(Array(images[16...])),
                           labels: labels.map { $0[8...].map { Float($0) } } ?? Array(repeating: 0, count: count),
                           origin: imagesPath)
        data.imageShape = ImageShape(height: rows, width: columns)
        return data
    }

    /// (rows, columns) of the images in `path`, from its header.
    static func imageShape(_ path: String) throws -> ImageShape {
        let header = try parseHeader(DataFile.contents(of: path, what: "IDX images file"), path: path, dimensions: 3)
        let pixels = header[1].multipliedReportingOverflow(by: header[2])
        guard !pixels.overflow, pixels.partialValue <= ImageShape.maximumFeatures else {
            throw DDPError(.data, "\(path): the IDX header says \(header[1]) × \(header[2]) pixels per image; at most \(ImageShape.maximumFeatures) are supported")
        }
        return ImageShape(height: header[1], width: header[2])
    }

    /// The big-endian sizes after a checked magic.
    private static func parseHeader(_ bytes: [UInt8], path: String, dimensions: Int) throws -> [Int] {
        let kind = dimensions == 3 ? "unsigned-byte images" : "unsigned-byte labels"
        let headerBytes = 4 + 4 * dimensions
        func word(_ at: Int) -> Int {
            Int(bytes[at]) << 24 | Int(bytes[at + 1]) << 16 | Int(bytes[at + 2]) << 8 | Int(bytes[at + 3])
        }
        let magic = 0x0800 + dimensions
        if bytes.count >= 4, word(0) != magic {
            throw DDPError(.data, "expected IDX magic \(hex(magic)) (\(kind)) in \(path), found \(hex(word(0)))")
        }
        guard bytes.count >= headerBytes else {
            throw DDPError(.data, "\(path) is truncated: an IDX file of \(kind) needs a \(headerBytes)-byte header, found \(bytes.count) bytes")
        }
        return (0..<dimensions).map { word(4 + 4 * $0) }
    }

    private static func checkLength(_ bytes: [UInt8], path: String, headerBytes: Int, values: Int,
                                    promise: String) throws {
        let found = bytes.count - headerBytes
        if found < values {
            throw DDPError(.data, "\(path) is truncated: header promises \(promise), found \(found)")
        }
        if found > values {
            throw DDPError(.data, "\(path) is malformed: header promises \(promise), found \(found) (\(found - values) extra)")
        }
    }

    private static func hex(_ value: Int) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}
