import Foundation
import XCTest
@testable import DDPCore

final class SafeTensorsTests: XCTestCase {
    private var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("SafeTensorsTests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func sampleTensors() -> [StoredTensor] {
        [
            StoredTensor(name: "dense.weight", shape: [2, 3], floats: [1, -2.5, 0.125, .pi, -0.0, 3.0e-38]),
            StoredTensor(name: "dense.bias", shape: [3], doubles: [0.1, -1e300, .leastNonzeroMagnitude]),
            StoredTensor(name: "step", shape: [2, 1], int64s: [42, Int64.min]),
            StoredTensor(name: "scalar", shape: [], floats: [7]),
            StoredTensor(name: "empty", shape: [0, 4], floats: []),
            StoredTensor(name: "nan", shape: [1], floats: [Float(bitPattern: 0x7FC0_1234)]),
        ]
    }

    // MARK: Round trip

    func testRoundTripKeepsValuesOrderAndMetadata() throws {
        let tensors = sampleTensors()
        let metadata = ["format": "pt", "quote\"d": "line\nbreak \\ tab\t ü €", "control": "\u{01}"]
        let decoded = try SafeTensors.decode(SafeTensors.encode(tensors, metadata: metadata), file: "model.safetensors")

        XCTAssertEqual(decoded.order, tensors.map(\.name))
        XCTAssertEqual(decoded.metadata, metadata)
        for tensor in tensors { XCTAssertEqual(decoded.tensors[tensor.name], tensor) }
        XCTAssertEqual(decoded.tensors["dense.weight"]?.floats(), [1, -2.5, 0.125, .pi, -0.0, 3.0e-38])
        XCTAssertEqual(decoded.tensors["dense.bias"]?.doubles(), [0.1, -1e300, .leastNonzeroMagnitude])
        XCTAssertEqual(decoded.tensors["step"]?.int64s(), [42, Int64.min])
        XCTAssertEqual(decoded.tensors["step"]?.shape, [2, 1])
        XCTAssertEqual(decoded.tensors["scalar"]?.elementCount, 1)
        XCTAssertEqual(decoded.tensors["empty"]?.elementCount, 0)
        XCTAssertEqual(decoded.tensors["nan"]?.floats()?.first?.bitPattern, 0x7FC0_1234)
        XCTAssertNil(decoded.tensors["step"]?.floats())
        XCTAssertNil(decoded.tensors["dense.weight"]?.doubles())
        XCTAssertNil(decoded.tensors["dense.weight"]?.int64s())
    }

    func testBytesAreLittleEndian() {
        XCTAssertEqual(StoredTensor(name: "a", shape: [1], floats: [1]).bytes, [0, 0, 0x80, 0x3F])
        XCTAssertEqual(StoredTensor(name: "a", shape: [1], int64s: [0x0102]).bytes, [2, 1, 0, 0, 0, 0, 0, 0])
    }

    func testEmptyFileRoundTrips() throws {
        let bytes = SafeTensors.encode([])
        XCTAssertEqual(bytes.count, 16)
        let decoded = try SafeTensors.decode(bytes, file: "empty.safetensors")
        XCTAssertTrue(decoded.tensors.isEmpty)
        XCTAssertTrue(decoded.metadata.isEmpty)
    }

    func testHeaderIsPaddedToEightBytes() {
        for length in 1...16 {
            let name = String(repeating: "x", count: length)
            let bytes = SafeTensors.encode([StoredTensor(name: name, shape: [1], floats: [1])],
                                           metadata: length.isMultiple(of: 2) ? ["k": name] : [:])
            let headerLength = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            XCTAssertEqual(headerLength % 8, 0)
            XCTAssertEqual(bytes.count, 8 + headerLength + 4)
            let header = String(decoding: bytes[8..<(8 + headerLength)], as: UTF8.self)
            XCTAssertTrue(header.hasPrefix("{"))
            XCTAssertTrue(header.trimmingCharacters(in: .init(charactersIn: " ")).hasSuffix("}"), header)
        }
    }

    func testCopyFloats() throws {
        let tensor = StoredTensor(name: "w", shape: [2, 2], floats: [1, 2, 3, 4])
        var destination = [Float](repeating: 0, count: 4)
        try destination.withUnsafeMutableBufferPointer { try tensor.copyFloats(into: $0, file: "m.safetensors") }
        XCTAssertEqual(destination, [1, 2, 3, 4])

        var wrongSize = [Float](repeating: 0, count: 3)
        assertWeightsError(contains: ["m.safetensors", "'w'", "4 elements", "expected 3"]) {
            try wrongSize.withUnsafeMutableBufferPointer { try tensor.copyFloats(into: $0, file: "m.safetensors") }
        }
        let ints = StoredTensor(name: "i", shape: [4], int64s: [1, 2, 3, 4])
        assertWeightsError(contains: ["m.safetensors", "I64", "expected F32"]) {
            try destination.withUnsafeMutableBufferPointer { try ints.copyFloats(into: $0, file: "m.safetensors") }
        }
    }

    // MARK: Malformed files

    private let file = "model.safetensors"

    /// A file with `header` (padded to 8 bytes) followed by `dataCount` zero bytes.
    private func rawFile(_ header: String, dataCount: Int) -> [UInt8] {
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        return rawFile(headerBytes: headerBytes, dataCount: dataCount)
    }

    private func rawFile(headerBytes: [UInt8], dataCount: Int) -> [UInt8] {
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { Array($0) }
            + headerBytes + [UInt8](repeating: 0, count: dataCount)
    }

    private func assertWeightsError(contains fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                                    _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected a DDPError", file: file, line: line)
        } catch let error as DDPError {
            XCTAssertEqual(error.kind, .weights, error.message, file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(error.message.contains(fragment), "'\(error.message)' lacks '\(fragment)'",
                              file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    private func assertRejected(_ bytes: [UInt8], _ fragments: String..., line: UInt = #line) {
        assertWeightsError(contains: [file] + fragments, line: line) {
            _ = try SafeTensors.decode(bytes, file: self.file)
        }
    }

    private let twoFloats = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    func testTruncatedData() {
        let bytes = SafeTensors.encode(sampleTensors())
        assertRejected(Array(bytes.dropLast(4)), "is truncated", "header says")
        assertRejected(rawFile(twoFloats, dataCount: 4), "is truncated: header says 8 bytes of tensor data, file has 4")
    }

    func testFileShorterThanLengthField() {
        assertRejected([], "is truncated", "has 0 bytes")
        assertRejected([1, 2, 3], "is truncated", "has 3 bytes")
    }

    func testHeaderLengthPastEndOfFile() {
        var bytes = SafeTensors.encode(sampleTensors())
        withUnsafeBytes(of: UInt64(1_000_000).littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        assertRejected(bytes, "header length says 1000000 bytes")
        bytes.replaceSubrange(0..<8, with: [UInt8](repeating: 0xFF, count: 8))
        assertRejected(bytes, "header length says 18446744073709551615 bytes")
    }

    func testGarbageHeader() {
        assertRejected(rawFile("{not json", dataCount: 0), "malformed safetensors header")
        assertRejected(rawFile(#"{"a":"#, dataCount: 0), "malformed safetensors header", "unexpected end")
        assertRejected(rawFile("", dataCount: 0), "malformed safetensors header")
        assertRejected(rawFile("[1, 2]", dataCount: 0), "expected a JSON object, found an array")
        assertRejected(rawFile(twoFloats + " x", dataCount: 8), "unexpected text after the JSON value")
        assertRejected(rawFile(headerBytes: [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x7D, 0x20, 0x20], dataCount: 0),
                       "not valid UTF-8")
        assertRejected(rawFile(String(repeating: "[", count: 100_000), dataCount: 0), "nested too deeply")
        assertRejected(rawFile(#"{"a\ud800":{}}"#, dataCount: 0), "surrogate")
        assertRejected(rawFile("{\"a\u{01}\":{}}", dataCount: 0), "control character")
    }

    func testHeaderEscapesAreDecoded() throws {
        let header = #"{ "__metadata__" : { "k\/" : "\u00fc\ud83d\ude00\b\f" } }"#
        XCTAssertEqual(try SafeTensors.decode(rawFile(header, dataCount: 0), file: file).metadata,
                       ["k/": "ü😀\u{08}\u{0C}"])
    }

    func testDuplicateTensorName() {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
            + #""a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        assertRejected(rawFile(header, dataCount: 8), "duplicate key 'a'")
    }

    func testShapeOffsetMismatch() {
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        assertRejected(rawFile(header, dataCount: 8), "'a'", "shape [3] of F32 (12 bytes)", "data_offsets [0, 8]")
        let reversed = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#
        assertRejected(rawFile(reversed, dataCount: 8), "'a'", "data_offsets [8, 0]")
    }

    func testBadNumbers() {
        let cases: [(String, String)] = [
            (#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, "found -2"),
            (#"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, "found 2.0"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8e0]}}"#, "found 8e0"),
            (#"{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,8]}}"#, "found a boolean"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999999]}}"#,
             "found 99999999999999999999999"),
            (#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, "too large"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, "[begin, end]"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,9223372036854775807]}}"#, "data_offsets [0, 9223"),
            (#"{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}"#, "\"shape\" must be an array"),
            (#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, "has no \"shape\""),
            (#"{"a":[]}"#, "found an array"),
            (#"{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,8]}}"#, "malformed number"),
        ]
        for (header, fragment) in cases { assertRejected(rawFile(header, dataCount: 8), fragment) }
    }

    func testUnknownDType() {
        let header = #"{"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}"#
        assertRejected(rawFile(header, dataCount: 8), "'a'", "dtype BF16", "F32, F64, I64")
    }

    func testBadMetadata() {
        assertRejected(rawFile(#"{"__metadata__":{"epoch":3}}"#, dataCount: 0), "'epoch' must be a string, found a number")
        assertRejected(rawFile(#"{"__metadata__":"x"}"#, dataCount: 0), "__metadata__ must be an object")
    }

    func testOverlappingOffsets() {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
            + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertRejected(rawFile(header, dataCount: 12), "'a' [0, 8]", "'b' [4, 12]", "overlap")
    }

    func testGapAndTrailingBytes() {
        let gap = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
            + #""b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        assertRejected(rawFile(gap, dataCount: 12), "no tensor covers data bytes 4..<8")
        assertRejected(rawFile(twoFloats, dataCount: 12), "accounts for 8 bytes of tensor data, file has 12")
    }

    func testOrderFollowsDataNotHeader() throws {
        let header = #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"#
            + #""z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"#
            + #""a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
            + #""y":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#
        XCTAssertEqual(try SafeTensors.decode(rawFile(header, dataCount: 8), file: file).order, ["a", "z", "y", "b"])
    }

    // MARK: Files

    func testWriteAndReadFile() throws {
        let path = directory + "/model.safetensors"
        try SafeTensors.write(sampleTensors(), metadata: ["epoch": "3"], to: path)
        let decoded = try SafeTensors.read(path: path)
        XCTAssertEqual(decoded.order, sampleTensors().map(\.name))
        XCTAssertEqual(decoded.metadata, ["epoch": "3"])
        XCTAssertEqual(decoded.tensors["dense.weight"], sampleTensors()[0])
    }

    func testReadMissingFile() {
        let path = directory + "/absent.safetensors"
        assertWeightsError(contains: ["cannot read", path, "No such file"]) { _ = try SafeTensors.read(path: path) }
    }

    func testAtomicFileReplacesAndLeavesNoTemporary() throws {
        let path = directory + "/report.txt"
        try AtomicFile.write("first version, somewhat longer", to: path)
        try AtomicFile.write("second", to: path)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "second")
        try AtomicFile.write([0, 1, 2], to: path)
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data([0, 1, 2]))
        try AtomicFile.write([], to: path)
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data())
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["report.txt"])
    }

    func testAtomicFileRelativePath() throws {
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(directory))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        try AtomicFile.write("relative", to: "plain.txt")
        XCTAssertEqual(try String(contentsOfFile: directory + "/plain.txt", encoding: .utf8), "relative")
    }

    func testAtomicFileErrorNamesPath() throws {
        let path = directory + "/missing-dir/out.txt"
        do {
            try AtomicFile.write("x", to: path)
            XCTFail("expected an error")
        } catch let error as DDPError {
            XCTAssertEqual(error.kind, .io)
            XCTAssertEqual(error.message, "cannot write \(path): No such file or directory")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), [])
    }

    // MARK: Interoperability with Python's safetensors

    /// Written by `safetensors.numpy.save` (0.8.0): step I64 [42, -9007199254740993],
    /// scale F64 [0.1, -1e300, 2.5], weight F32 [[1.5, -2], [0.25, 3e-8]], metadata format/note.
    private let pythonFixture: [UInt8] = [
        0xe8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f, 0x6d, 0x65, 0x74, 0x61,
        0x64, 0x61, 0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a, 0x7b, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74,
        0x22, 0x3a, 0x22, 0x70, 0x74, 0x22, 0x2c, 0x22, 0x6e, 0x6f, 0x74, 0x65, 0x22, 0x3a, 0x22, 0xc3,
        0xbc, 0x6e, 0xc3, 0xaf, 0x20, 0x5c, 0x22, 0x71, 0x5c, 0x22, 0x22, 0x7d, 0x2c, 0x22, 0x73, 0x74,
        0x65, 0x70, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x49, 0x36,
        0x34, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d, 0x2c, 0x22,
        0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x30,
        0x2c, 0x31, 0x36, 0x5d, 0x7d, 0x2c, 0x22, 0x73, 0x63, 0x61, 0x6c, 0x65, 0x22, 0x3a, 0x7b, 0x22,
        0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x36, 0x34, 0x22, 0x2c, 0x22, 0x73, 0x68,
        0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f,
        0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x31, 0x36, 0x2c, 0x34, 0x30, 0x5d, 0x7d,
        0x2c, 0x22, 0x77, 0x65, 0x69, 0x67, 0x68, 0x74, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70,
        0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22,
        0x3a, 0x5b, 0x32, 0x2c, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66,
        0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x34, 0x30, 0x2c, 0x35, 0x36, 0x5d, 0x7d, 0x7d, 0x20,
        0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xdf, 0xff,
        0x9a, 0x99, 0x99, 0x99, 0x99, 0x99, 0xb9, 0x3f, 0x9c, 0x75, 0x00, 0x88, 0x3c, 0xe4, 0x37, 0xfe,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x40, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0,
        0x00, 0x00, 0x80, 0x3e, 0x59, 0xd9, 0x00, 0x33,
    ]

    func testDecodesFileWrittenByPython() throws {
        let decoded = try SafeTensors.decode(pythonFixture, file: "python.safetensors")
        XCTAssertEqual(decoded.order, ["step", "scale", "weight"])
        XCTAssertEqual(decoded.metadata, ["format": "pt", "note": "ünï \"q\""])
        XCTAssertEqual(decoded.tensors["step"]?.int64s(), [42, -9_007_199_254_740_993])
        XCTAssertEqual(decoded.tensors["scale"]?.doubles(), [0.1, -1e300, 2.5])
        XCTAssertEqual(decoded.tensors["weight"]?.shape, [2, 2])
        XCTAssertEqual(decoded.tensors["weight"]?.floats(), [1.5, -2, 0.25, 3e-8])
    }

    private func requirePython() throws -> String { try InteropPython.require(["numpy", "safetensors.numpy"]) }

    func testPythonLoadsOurFile() throws {
        let python = try requirePython()
        let path = directory + "/ours.safetensors"
        let tensors = sampleTensors().filter { $0.name != "nan" }
        try SafeTensors.write(tensors, metadata: ["epoch": "3", "note": "ü\n\"x\""], to: path)
        let script = """
            import json, sys, numpy as np
            from safetensors import safe_open
            from safetensors.numpy import load_file
            loaded = load_file(sys.argv[1])
            with safe_open(sys.argv[1], framework="np") as f:
                meta, keys = f.metadata(), list(f.keys())
            print(json.dumps({"metadata": meta, "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape),
                "bits": [str(x) for x in v.reshape(-1).view({4: np.uint32, 8: np.uint64}[v.itemsize]).tolist()]}
                for k, v in loaded.items()}}))
            """
        let (status, output) = try runPython(python, ["-c", script, path])
        XCTAssertEqual(status, 0, output)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        XCTAssertEqual(json["metadata"] as? [String: String], ["epoch": "3", "note": "ü\n\"x\""])
        let loaded = try XCTUnwrap(json["tensors"] as? [String: [String: Any]])
        XCTAssertEqual(Set(loaded.keys), Set(tensors.map(\.name)))
        let numpyNames: [TensorDType: String] = [.float32: "float32", .float64: "float64", .int64: "int64"]
        for tensor in tensors {
            let entry = try XCTUnwrap(loaded[tensor.name])
            XCTAssertEqual(entry["dtype"] as? String, numpyNames[tensor.dtype])
            XCTAssertEqual(entry["shape"] as? [Int], tensor.shape)
            let bits = try XCTUnwrap(entry["bits"] as? [String])
            let expected: [String] = switch tensor.dtype {
            case .float32: tensor.floats()!.map { String($0.bitPattern) }
            case .float64: tensor.doubles()!.map { String($0.bitPattern) }
            case .int64: tensor.int64s()!.map { String(UInt64(bitPattern: $0)) }
            }
            XCTAssertEqual(bits, expected, tensor.name)
        }
    }

    func testDecodesFileWrittenByPythonNow() throws {
        let python = try requirePython()
        let path = directory + "/theirs.safetensors"
        let script = """
            import sys, numpy as np
            from safetensors.numpy import save_file
            save_file({"b": np.arange(6, dtype=np.float32).reshape(2, 3) / 4,
                       "a": np.array([2**40, -7], dtype=np.int64),
                       "c": np.linspace(0, 1, 5, dtype=np.float64)}, sys.argv[1], metadata={"who": "python"})
            """
        let (status, output) = try runPython(python, ["-c", script, path])
        XCTAssertEqual(status, 0, output)
        let decoded = try SafeTensors.read(path: path)
        XCTAssertEqual(decoded.metadata, ["who": "python"])
        XCTAssertEqual(decoded.tensors["b"]?.shape, [2, 3])
        XCTAssertEqual(decoded.tensors["b"]?.floats(), [0, 0.25, 0.5, 0.75, 1, 1.25])
        XCTAssertEqual(decoded.tensors["a"]?.int64s(), [1 << 40, -7])
        XCTAssertEqual(decoded.tensors["c"]?.doubles(), [0, 0.25, 0.5, 0.75, 1])
    }
}
