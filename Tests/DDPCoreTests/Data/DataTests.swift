import Foundation
import XCTest
@testable import DDPCore

final class DataTests: XCTestCase {
    static let fashion = "/usr/share/datasets/fashion-mnist"
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("DataTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Writes bytes (or text) to a file in the test's directory and returns its path.
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    func write(_ name: String, _ text: String) throws -> String { try write(name, Array(text.utf8)) }

    /// An IDX file: magic 0x000008TD, big-endian sizes, then the values.
    func idx(_ dimensions: [Int], _ values: [UInt8]) -> [UInt8] {
        func word(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        return word(0x0800 + dimensions.count) + dimensions.flatMap(word) + values
    }

    func assertClose(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-6, "\(a) vs \(b)", file: file, line: line) }
    }

    // MARK: IDX

    func testFashionMNISTLoads() throws {
        let train = try DataLoader.load(.idx(images: "\(Self.fashion)/train-images-idx3-ubyte.gz",
                                             labels: "\(Self.fashion)/train-labels-idx1-ubyte.gz"))
        XCTAssertEqual(train.count, 60000)
        XCTAssertEqual(train.featureCount, 784)
        XCTAssertEqual(train.labels[0], 9)
        XCTAssertEqual(train.classCount, 10)
        guard case .bytes(let pixels) = train.storage else { return XCTFail("IDX images should be bytes") }
        let firstThousand = pixels[0..<784 * 1000]      // the whole set is slow to scan in a debug build
        XCTAssertEqual(firstThousand.min(), 0)
        XCTAssertEqual(firstThousand.max(), 255)
        XCTAssertEqual(train.feature(row: 0, column: 0), 0)

        let test = try DataLoader.load(.idx(images: "\(Self.fashion)/t10k-images-idx3-ubyte.gz",
                                            labels: "\(Self.fashion)/t10k-labels-idx1-ubyte.gz"))
        XCTAssertEqual(test.count, 10000)
        XCTAssertEqual(test.featureCount, 784)
        XCTAssertEqual(test.classCount, 10)
    }

    func testGzippedAndRawIDXAgree() throws {
        let images = "\(Self.fashion)/t10k-images-idx3-ubyte.gz", labels = "\(Self.fashion)/t10k-labels-idx1-ubyte.gz"
        // Raw copies named .gz: the format is told by the magic, not the name.
        let rawImages = try write("images.gz", DataFile.contents(of: images, what: "images"))
        let rawLabels = try write("labels", DataFile.contents(of: labels, what: "labels"))
        let zipped = try DataLoader.load(.idx(images: images, labels: labels))
        let raw = try DataLoader.load(.idx(images: rawImages, labels: rawLabels))
        guard case .bytes(let a) = zipped.storage, case .bytes(let b) = raw.storage else { return XCTFail() }
        XCTAssertEqual(a, b)
        XCTAssertEqual(zipped.labels, raw.labels)
        XCTAssertEqual(raw.origin, rawImages)
    }

    func testSmallIDXRoundTrip() throws {
        let images = try write("i", idx([2, 2, 3], Array(0..<12)))
        let labels = try write("l", idx([2], [4, 1]))
        let data = try DataLoader.load(.idx(images: images, labels: labels))
        XCTAssertEqual(data.count, 2)
        XCTAssertEqual(data.featureCount, 6)
        XCTAssertEqual(data.feature(row: 1, column: 2), 8)
        XCTAssertEqual(data.labels, [4, 1])
        XCTAssertEqual(data.classCount, 5)
        // The images keep their shape, (rows, columns, 1), also in a slice (validation_split).
        XCTAssertEqual(data.imageShape, ImageShape(height: 2, width: 3, channels: 1))
        XCTAssertEqual(data.slice(1..<2).imageShape, ImageShape(height: 2, width: 3, channels: 1))
        XCTAssertEqual(try IDXFile.imageShape(images), ImageShape(height: 2, width: 3))
        // data.image_shape must agree with the file's own.
        let yaml = "data: {train: {format: idx, images: \(images), labels: \(labels)}, image_shape: SHAPE}\n"
            + "model: {inputs: 6, layers: [{type: dense, units: 5}]}\noptimizer: {type: sgd}"
        XCTAssertEqual(try RunData(config: TrainingConfig.parse(yaml: yaml.replacingOccurrences(of: "SHAPE", with: "[2, 3, 1]"))).imageShape,
                       ImageShape(height: 2, width: 3))
        assertDDPError(.config, containing: ["data.image_shape is (3, 2, 1)", "data.train", "(2, 3, 1)"]) {
            try RunData(config: TrainingConfig.parse(yaml: yaml.replacingOccurrences(of: "SHAPE", with: "[3, 2, 1]")))
        }
    }

    func testIDXErrors() throws {
        let labels = try write("labels", idx([2], [0, 1]))
        let truncated = try write("short-images", Array(idx([2, 28, 28], [UInt8](repeating: 7, count: 784 + 100))))
        assertDDPError(.data, containing: [truncated, "truncated", "2 images of 28×28 = 1568 bytes, found 884"]) {
            try DataLoader.load(.idx(images: truncated, labels: labels))
        }
        assertDDPError(.data, containing: ["expected IDX magic 0x00000803 (unsigned-byte images) in \(labels), found 0x00000801"]) {
            try DataLoader.load(.idx(images: labels, labels: labels))
        }
        let tiny = try write("tiny", [0, 0, 8, 3, 0])
        assertDDPError(.data, containing: [tiny, "truncated", "16-byte header"]) {
            try DataLoader.load(.idx(images: tiny, labels: labels))
        }
        let images = try write("images", idx([3, 1, 1], [1, 2, 3]))
        assertDDPError(.data, containing: ["mismatch", images, labels, "3 images", "2 labels"]) {
            try DataLoader.load(.idx(images: images, labels: labels))
        }
        let missing = directory.appendingPathComponent("nowhere.gz").path
        assertDDPError(.data, containing: [missing]) { try DataLoader.load(.idx(images: missing, labels: labels)) }
        let huge = try write("huge", idx([0xFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], []))
        let hugeLabels = try write("huge-labels", idx([0xFFF_FFFF], []))
        assertDDPError(.data, containing: [huge, "truncated"]) { try DataLoader.load(.idx(images: huge, labels: hugeLabels)) }
    }

    func testCorruptGzip() throws {
        let gz = try DataFile.readAll("\(Self.fashion)/t10k-labels-idx1-ubyte.gz", what: "labels")
        let cut = try write("cut.gz", Array(gz[0..<2000]))
        assertDDPError(.data, containing: [cut, "gzip", "truncated"]) { try DataFile.contents(of: cut, what: "labels") }
        var damaged = gz
        for i in 100..<200 { damaged[i] ^= 0x5A }
        let bad = try write("bad.gz", damaged)
        assertDDPError(.data, containing: [bad, "corrupt gzip"]) { try DataFile.contents(of: bad, what: "labels") }
    }

    func testGzipThatInflatesPastTheLimitIsAnError() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("DataTests-gzip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let raw = directory.appendingPathComponent("zeros")
        try Data(count: 4 << 20).write(to: raw)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-k", raw.path]
        try gzip.run()
        gzip.waitUntilExit()
        XCTAssertEqual(gzip.terminationStatus, 0)
        let compressed = try DataFile.readAll(raw.path + ".gz", what: "test")
        XCTAssertLessThan(compressed.count, 10_000)
        XCTAssertEqual(try DataFile.gunzip(compressed, path: "z.gz", limit: 8 << 20).count, 4 << 20)
        assertDDPError(.data, containing: ["z.gz", "decompresses to more than", "bytes"]) {
            try DataFile.gunzip(compressed, path: "z.gz", limit: 1 << 20)
        }
    }

    // MARK: CSV

    func testCSVLabelByNameIndexAndNegativeIndex() throws {
        let path = try write("iris.csv", "\u{FEFF}a, b ,\"label\",c\r\n1,2,0,3\r\n\n  4 , 5.5,1,-6e1\r\n   \n7,8,2,.25\n")
        let byName = try DataLoader.load(.csv(path: path, label: .name("label"), header: true))
        XCTAssertEqual(byName.count, 3)
        XCTAssertEqual(byName.featureCount, 3)
        XCTAssertEqual(byName.labels, [0, 1, 2])
        XCTAssertEqual(byName.feature(row: 1, column: 1), 5.5)
        XCTAssertEqual(byName.feature(row: 1, column: 2), -60)
        XCTAssertEqual(byName.feature(row: 2, column: 2), 0.25)
        XCTAssertEqual(byName.classCount, 3)
        XCTAssertEqual(byName.origin, path)

        let byIndex = try DataLoader.load(.csv(path: path, label: .index(2), header: true))
        XCTAssertEqual(byIndex.labels, byName.labels)
        XCTAssertEqual(try DataLoader.load(.csv(path: path, label: .index(-2), header: true)).labels, [0, 1, 2])

        let last = try DataLoader.load(.csv(path: path, label: .index(-1), header: true))
        XCTAssertEqual(last.labels, [3, -60, 0.25])
        XCTAssertNil(last.classCount)
        XCTAssertEqual(last.feature(row: 2, column: 2), 2)

        let noHeader = try write("plain.csv", "1.5,2,1\n3,4,0\n")
        let plain = try DataLoader.load(.csv(path: noHeader, label: .index(0), header: false))
        XCTAssertEqual(plain.labels, [1.5, 3])
        XCTAssertEqual(plain.feature(row: 1, column: 1), 0)
    }

    func testCSVParsesLikeStrtod() throws {
        let texts = ["0.1", "-0.30000000000000004", "123456789012345", "1234567890123456789", "1e-7",
                     "3.4028234e38", "+2.5", "0.000000000000000000001", "9.999999999999999"]
        let path = try write("n.csv", texts.map { "\($0),0" }.joined(separator: "\n"))
        let data = try DataLoader.load(.csv(path: path, label: .index(1), header: false))
        for (row, text) in texts.enumerated() {
            XCTAssertEqual(data.feature(row: row, column: 0), Float(strtod(text, nil)), text)
        }
    }

    func testCSVErrors() throws {
        let bad = try write("bad.csv", "x,y,label\n1,2,0\n3,abc,1\n")
        assertDDPError(.data, containing: [bad, "line 3", "column 2", "'y'", "'abc'"]) {
            try DataLoader.load(.csv(path: bad, label: .name("label"), header: true))
        }
        let ragged = try write("ragged.csv", "1,2,0\n\n3,1\n")
        assertDDPError(.data, containing: [ragged, "line 3", "2 fields", "expected 3"]) {
            try DataLoader.load(.csv(path: ragged, label: .index(-1), header: false))
        }
        let named = try write("named.csv", "x,y,label\n1,2,0\n")
        assertDDPError(.config, containing: [named, "'class'", "x, y, label"]) {
            try DataLoader.load(.csv(path: named, label: .name("class"), header: true))
        }
        assertDDPError(.config, containing: [named, "header"]) {
            try DataLoader.load(.csv(path: named, label: .name("label"), header: false))
        }
        assertDDPError(.config, containing: [named, "-4", "3 columns"]) {
            try DataLoader.load(.csv(path: named, label: .index(-4), header: true))
        }
        let empty = try write("empty.csv", "x,y,label\n\n")
        assertDDPError(.data, containing: [empty, "no data rows"]) {
            try DataLoader.load(.csv(path: empty, label: .index(2), header: true))
        }
        let infinite = try write("inf.csv", "1e39,0\n")
        assertDDPError(.data, containing: ["line 1", "column 1", "1e39"]) {
            try DataLoader.load(.csv(path: infinite, label: .index(1), header: false))
        }
        let missingLabel = try write("nolabel.csv", "1, \n")
        assertDDPError(.data, containing: ["line 1", "column 2", "label"]) {
            try DataLoader.load(.csv(path: missingLabel, label: .index(1), header: false))
        }
    }

    // MARK: Synthetic

    func testMoonsDeterministicAndBalanced() throws {
        let a = try DataLoader.load(.moons(samples: 1001, noise: 0.1, seed: 7))
        let b = try DataLoader.load(.moons(samples: 1001, noise: 0.1, seed: 7))
        let c = try DataLoader.load(.moons(samples: 1001, noise: 0.1, seed: 8))
        guard case .floats(let fa) = a.storage, case .floats(let fb) = b.storage,
              case .floats(let fc) = c.storage else { return XCTFail() }
        XCTAssertEqual(fa.map(\.bitPattern), fb.map(\.bitPattern))
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertNotEqual(fa, fc)
        XCTAssertEqual(a.featureCount, 2)
        XCTAssertEqual(a.labels.filter { $0 == 0 }.count, 500)   // n_out = n/2
        XCTAssertEqual(a.labels.filter { $0 == 1 }.count, 501)
        XCTAssertEqual(a.classCount, 2)
        XCTAssertNotEqual(Array(a.labels.prefix(500)), Array(repeating: 0, count: 500), "rows are shuffled")
        XCTAssertEqual(a.origin, "moons(samples: 1001, noise: 0.1)")

        // Without noise every point lies on its half circle.
        let exact = try DataLoader.load(.moons(samples: 100, noise: 0, seed: 1))
        for row in 0..<exact.count {
            let x = Double(exact.feature(row: row, column: 0)), y = Double(exact.feature(row: row, column: 1))
            let (cx, cy) = exact.labels[row] == 0 ? (0.0, 0.0) : (1.0, 0.5)
            XCTAssertEqual((x - cx) * (x - cx) + (y - cy) * (y - cy), 1, accuracy: 1e-6)
            XCTAssertTrue(exact.labels[row] == 0 ? y >= -1e-7 : y <= 0.5 + 1e-7)
        }
    }

    func testCirclesDeterministicAndConsistent() throws {
        let a = try DataLoader.load(.circles(samples: 2000, radiusSquared: 2, seed: 3))
        let b = try DataLoader.load(.circles(samples: 2000, radiusSquared: 2, seed: 3))
        guard case .floats(let fa) = a.storage, case .floats(let fb) = b.storage else { return XCTFail() }
        XCTAssertEqual(fa.map(\.bitPattern), fb.map(\.bitPattern))
        XCTAssertEqual(a.labels, b.labels)
        for row in 0..<a.count {
            let x1 = Double(a.feature(row: row, column: 0)), x2 = Double(a.feature(row: row, column: 1))
            XCTAssertTrue(abs(x1) <= 2 && abs(x2) <= 2)
            XCTAssertEqual(a.labels[row], x1 * x1 + x2 * x2 > 2 ? 1 : 0)
        }
        // Area outside the circle of radius² 2 within [-2, 2]²: 1 - 2π/16 ≈ 0.607.
        let outside = Double(a.labels.filter { $0 == 1 }.count) / 2000
        XCTAssertEqual(outside, 1 - 2 * Double.pi / 16, accuracy: 0.04)
    }

    func testSyntheticArgumentErrors() {
        assertDDPError(.config, containing: ["samples", "1"]) { try DataLoader.load(.moons(samples: 1, noise: 0, seed: 0)) }
        assertDDPError(.config, containing: ["noise", "-0.5"]) { try DataLoader.load(.moons(samples: 10, noise: -0.5, seed: 0)) }
        assertDDPError(.config, containing: ["radiusSquared"]) { try DataLoader.load(.circles(samples: 10, radiusSquared: 0, seed: 0)) }
        assertDDPError(.config, containing: ["samples"]) { try DataLoader.load(.circles(samples: -3, radiusSquared: 1, seed: 0)) }
    }

    // MARK: Transform and gather

    /// Features: column 0 = 1, 2, 3, 6; column 1 constant 5. Labels 0…3.
    let tiny = Dataset(count: 4, featureCount: 2, storage: .floats([1, 5, 2, 5, 3, 5, 6, 5]),
                       labels: [0, 1, 2, 3], origin: "tiny")

    func testFeatureTransformFit() {
        let scale = FeatureTransform.fit(.scale, on: tiny)
        XCTAssertEqual(scale.scale, [0.2, 0])                 // 1 / (6 - 1); constant → 0
        XCTAssertEqual(scale.shift, [-0.2, 0])                // -min / (max - min)

        let standard = FeatureTransform.fit(.standardize, on: tiny)
        // mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5; constant column: std 0 → divide by 1.
        let std = Float(3.5.squareRoot())
        XCTAssertEqual(standard.scale[0], 1 / std, accuracy: 1e-6)
        XCTAssertEqual(standard.shift[0], -3 / std, accuracy: 1e-6)
        XCTAssertEqual(standard.scale[1], 1)
        XCTAssertEqual(standard.shift[1], -5)

        XCTAssertEqual(FeatureTransform.fit(.none, on: tiny), .identity(featureCount: 2))
        XCTAssertEqual(Normalization(rawValue: "standardize"), .standardize)

        let bytes = Dataset(count: 2, featureCount: 3, storage: .bytes([0, 10, 255, 3, 10, 0]),
                            labels: [0, 1], origin: "bytes")
        XCTAssertEqual(FeatureTransform.fit(.scale, on: bytes).scale, [Float](repeating: 1 / 255, count: 3))
        XCTAssertEqual(FeatureTransform.fit(.scale, on: bytes).shift, [0, 0, 0])
        let byteStandard = FeatureTransform.fit(.standardize, on: bytes)
        XCTAssertEqual(byteStandard.shift[0], -1, accuracy: 1e-6)    // mean 1.5, std 1.5
        XCTAssertEqual(byteStandard.scale[1], 1)
    }

    func testGatherAppliesTransform() {
        let transform = FeatureTransform.fit(.scale, on: tiny)
        let rows: [Int32] = [3, 0, 3]
        var inputs = [Float](repeating: .nan, count: 6)
        var labels = [Float](repeating: .nan, count: 3)
        tiny.gather(rows: rows, count: 3, transform: transform, inputs: &inputs, labels: &labels)
        assertClose(inputs, [1, 0, 0, 0, 1, 0])
        XCTAssertEqual(labels, [3, 0, 3])

        let bytes = Dataset(count: 2, featureCount: 2, storage: .bytes([0, 51, 255, 102]), labels: [7, 8], origin: "b")
        bytes.gather(rows: [1], count: 1, transform: .fit(.scale, on: bytes), inputs: &inputs, labels: &labels)
        assertClose(Array(inputs.prefix(2)), [1, 0.4])
        XCTAssertEqual(labels[0], 8)
    }

    /// More rows than the gather prefetches ahead, rows repeated and out of order, a width that
    /// is not a multiple of the SIMD lane count: every row as the scalar formula gives it.
    func testGatherOfManyRowsMatchesTheScalarFormula() {
        let count = 50, width = 13
        let raw = (0..<count * width).map { UInt8(($0 * 37 + 11) % 256) }
        let rows: [Int32] = (0..<23).map { Int32(($0 * 17 + 5) % count) } + [49, 0, 49]
        for data in [Dataset(count: count, featureCount: width, storage: .bytes(raw), labels: (0..<count).map(Float.init), origin: "b"),
                     Dataset(count: count, featureCount: width, storage: .floats(raw.map(Float.init)), labels: (0..<count).map(Float.init), origin: "f")] {
            let transform = FeatureTransform.fit(.standardize, on: data)
            var inputs = [Float](repeating: .nan, count: rows.count * width)
            var labels = [Float](repeating: .nan, count: rows.count)
            data.gather(rows: rows, count: rows.count, transform: transform, inputs: &inputs, labels: &labels)
            for (i, row) in rows.enumerated() {
                XCTAssertEqual(labels[i], Float(row))
                for f in 0..<width {
                    XCTAssertEqual(inputs[i * width + f], Float(raw[Int(row) * width + f]) * transform.scale[f] + transform.shift[f],
                                   "\(data.origin) row \(i) feature \(f)")
                }
            }
        }
    }

    func testSliceTakesRows() {
        let last = tiny.slice(2..<4)
        XCTAssertEqual(last.count, 2)
        XCTAssertEqual(last.labels, [2, 3])
        XCTAssertEqual(last.feature(row: 1, column: 0), 6)
        XCTAssertEqual(tiny.slice(0..<0).count, 0)
        XCTAssertNil(tiny.slice(0..<0).classCount)
    }
}

// MARK: NumPy .npy

extension DataTests {
    func npy<T>(_ descr: String, _ shape: [Int], _ values: [T]) -> [UInt8] {
        NPYFile.encode(descr: descr, shape: shape, values: values.withUnsafeBytes { Array($0) })
    }

    func testNPYFloatAndByteFeatures() throws {
        let labels = try write("y.npy", npy("<i8", [3], [Int64(2), 0, 1]))
        let floats = try write("x32.npy", npy("<f4", [3, 2], [Float(0.5), -1, 2, 3.25, 4, 5]))
        let data = try DataLoader.load(.npy(features: floats, labels: labels))
        XCTAssertEqual(data.count, 3)
        XCTAssertEqual(data.featureCount, 2)
        XCTAssertEqual(data.labels, [2, 0, 1])
        XCTAssertEqual(data.feature(row: 1, column: 1), 3.25)

        let doubles = try write("x64.npy", npy("<f8", [3, 2], [0.5, -1, 2, 3.25, 4, 5]))
        guard case .floats(let fromDoubles) = try DataLoader.load(.npy(features: doubles, labels: labels)).storage,
              case .floats(let fromFloats) = data.storage else { return XCTFail("float features should be floats") }
        XCTAssertEqual(fromDoubles, fromFloats)

        let bytes = try write("x8.npy", npy("|u1", [3, 2], [UInt8(0), 255, 7, 8, 9, 10]))
        let byteData = try DataLoader.load(.npy(features: bytes, labels: labels))
        guard case .bytes(let pixels) = byteData.storage else { return XCTFail("uint8 features should stay bytes, as IDX") }
        XCTAssertEqual(pixels, [0, 255, 7, 8, 9, 10])
        XCTAssertEqual(FeatureTransform.fit(.scale, on: byteData).scale, [1 / 255, 1 / 255])

        // 1-D features: one per sample; float labels of shape (N, 1); big-endian values.
        let oneD = try write("x1.npy", npy(">f4", [3], [Float(1), 2, 3].map { $0.bitPattern.bigEndian }))
        let floatLabels = try write("yf.npy", npy("<f4", [3, 1], [Float(0.25), 1, 0]))
        let column = try DataLoader.load(.npy(features: oneD, labels: floatLabels))
        XCTAssertEqual(column.featureCount, 1)
        XCTAssertEqual(column.feature(row: 2, column: 0), 3)
        XCTAssertEqual(column.labels, [0.25, 1, 0])
    }

    // MARK: Files numpy wrote. The tests above build files with NPYFile.encode, ddp's own
    // writer, so a mistake shared by writer and reader would pass them; these bytes come from
    // numpy itself.

    /// Transcribed from `numpy.save` (numpy 2.4.6): the preamble, the header dict as numpy
    /// wrote it (padded with spaces and a newline to 128 bytes), then the values.
    enum NumpyWrote {
        /// np.save(f, np.array([[1.5, -2, 0.25], [3e-8, -0.0, 7]], dtype=np.float32))
        static let float32: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, 118, 0]
            + Array("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".utf8) + [UInt8](repeating: 0x20, count: 58) + [0x0A]
            + [0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x80, 0x3e,
               0x59, 0xd9, 0x00, 0x33, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0xe0, 0x40]
        /// np.lib.format.write_array(f, np.array([[1.5, -2], [0.25, 4]], dtype=">f8"), version=(2, 0))
        static let bigEndianFloat64Version2: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 2, 0, 116, 0, 0, 0]
            + Array("{'descr': '>f8', 'fortran_order': False, 'shape': (2, 2), }".utf8) + [UInt8](repeating: 0x20, count: 56) + [0x0A]
            + [0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc0, 0x00, 0, 0, 0, 0, 0, 0,
               0x3f, 0xd0, 0, 0, 0, 0, 0, 0, 0x40, 0x10, 0, 0, 0, 0, 0, 0]
        /// np.save(f, np.array([2, 0], dtype=np.int64))
        static let int64Labels: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, 118, 0]
            + Array("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }".utf8) + [UInt8](repeating: 0x20, count: 60) + [0x0A]
            + [0x02, 0, 0, 0, 0, 0, 0, 0, 0x00, 0, 0, 0, 0, 0, 0, 0]
    }

    func testNPYReadsFilesNumpyWrote() throws {
        XCTAssertEqual([NumpyWrote.float32.count, NumpyWrote.bigEndianFloat64Version2.count, NumpyWrote.int64Labels.count], [152, 160, 144])
        let x = try write("numpy-x.npy", NumpyWrote.float32), y = try write("numpy-y.npy", NumpyWrote.int64Labels)
        let data = try DataLoader.load(.npy(features: x, labels: y))
        XCTAssertEqual(data.count, 2)
        XCTAssertEqual(data.featureCount, 3)
        XCTAssertEqual(data.labels, [2, 0])
        guard case .floats(let values) = data.storage else { return XCTFail("float32 features should be floats") }
        XCTAssertEqual(values.map(\.bitPattern), ([1.5, -2, 0.25, 3e-8, -0.0, 7] as [Float]).map(\.bitPattern))

        let v2 = try write("numpy-v2.npy", NumpyWrote.bigEndianFloat64Version2)
        let wide = try DataLoader.load(.npy(features: v2, labels: y))
        XCTAssertEqual(wide.featureCount, 2)
        XCTAssertEqual((0..<2).flatMap { row in (0..<2).map { wide.feature(row: row, column: $0) } }, [1.5, -2, 0.25, 4])
    }

    /// numpy loads what NPYFile.encode writes (the tests' and the fuzz seeds' writer), values
    /// and all, and ddp reads what numpy writes now, in every type ddp accepts.
    func testNumpyAndDDPReadEachOthersFiles() throws {
        let python = try InteropPython.require(["numpy"])
        let ours = try write("ours.npy", npy("<f4", [2, 3], [Float(1.5), -2, 0.25, 3e-8, -0.0, 7]))
        let theirs = directory.path
        let script = """
            import sys, numpy as np
            a = np.load(sys.argv[1])
            assert a.dtype == np.float32 and a.shape == (2, 3), (a.dtype, a.shape)
            assert a.tobytes() == np.array([[1.5, -2, 0.25], [3e-8, -0.0, 7]], dtype=np.float32).tobytes(), a
            for descr in ["<f4", ">f4", "<f8", ">f8", "|u1"]:
                values = [[0, 255, 3], [255, 0, 7]] if descr == "|u1" else [[0.5, -1.25, 3], [255, 0, 7]]
                np.save(f"{sys.argv[2]}/x{descr[1:]}{'be' if descr[0] == '>' else ''}.npy", np.array(values, dtype=descr))
            np.save(sys.argv[2] + "/y.npy", np.array([[1], [0]], dtype=np.int32))
            print("ok")
            """
        let (status, output) = try runPython(python, ["-c", script, ours, theirs])
        XCTAssertEqual(status, 0, output)
        for name in ["f4", "f4be", "f8", "f8be", "u1"] {
            let data = try DataLoader.load(.npy(features: theirs + "/x\(name).npy", labels: theirs + "/y.npy"))
            XCTAssertEqual(data.labels, [1, 0], name)
            let read = (0..<2).flatMap { row in (0..<3).map { data.feature(row: row, column: $0) } }
            XCTAssertEqual(read, name == "u1" ? [0, 255, 3, 255, 0, 7] : [0.5, -1.25, 3, 255, 0, 7], name)
        }
    }

    func testNPYErrors() throws {
        let labels = try write("y.npy", npy("<i4", [2], [Int32(0), 1]))
        let good = npy("<f4", [2, 2], [Float(1), 2, 3, 4])
        func load(_ features: [UInt8], labels labelsPath: String? = nil) throws -> Dataset {
            try DataLoader.load(.npy(features: try write("x.npy", features), labels: labelsPath ?? labels))
        }
        let fortran = NPYFile.encode(descr: "<f4", shape: [2, 2], fortranOrder: true, values: Array(good[64...]))
        assertDDPError(.data, containing: ["x.npy", "Fortran", "ascontiguousarray"]) { try load(fortran) }
        assertDDPError(.data, containing: ["x.npy", "object array", "pickled"]) {
            try load(NPYFile.encode(descr: "|O", shape: [2, 2], values: [0x80, 0x04]))
        }
        assertDDPError(.data, containing: ["x.npy", "Python pickle"]) { try load([0x80, 0x04, 0x95, 0, 0]) }
        assertDDPError(.data, containing: ["x.npy", "zip archive"]) { try load([0x50, 0x4B, 3, 4]) }
        assertDDPError(.data, containing: ["x.npy", "truncated", "(2, 2)", "16 bytes, found 12"]) { try load(Array(good.dropLast(4))) }
        assertDDPError(.data, containing: ["x.npy", "truncated", "header"]) { try load(Array(good.prefix(40))) }
        assertDDPError(.data, containing: ["x.npy", "not an .npy file"]) { try load(Array("a,b\n1,2\n".utf8)) }
        assertDDPError(.data, containing: ["x.npy", "'<i4'", "float32, float64 or uint8"]) {
            try load(npy("<i4", [2, 2], [Int32(1), 2, 3, 4]))
        }
        assertDDPError(.data, containing: ["x.npy", "(2, 2, 1)", "data.image_shape"]) {
            try load(npy("<f4", [2, 2, 1], [Float(1), 2, 3, 4]))
        }
        let threeLabels = try write("y3.npy", npy("<i4", [3], [Int32(0), 1, 0]))
        assertDDPError(.data, containing: ["x.npy", "2 samples", "y3.npy", "3 labels"]) { try load(good, labels: threeLabels) }
        let wideLabels = try write("y2.npy", npy("<i4", [2, 2], [Int32(0), 1, 0, 1]))
        assertDDPError(.data, containing: ["y2.npy", "(2, 2)", "(N,) or (N, 1)"]) { try load(good, labels: wideLabels) }
        assertDDPError(.config, containing: ["data.train.labels"]) {
            try TrainingConfig.parse(yaml: "data: {train: {format: npy, features: x.npy}}\nmodel: {inputs: 2, layers: [{type: dense, units: 2}]}\noptimizer: {type: sgd}")
        }
    }
}
