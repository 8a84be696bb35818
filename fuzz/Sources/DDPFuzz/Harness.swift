import Foundation
@testable import DDPCore

/// libFuzzer calls `LLVMFuzzerTestOneInput` with each input; `DDP_FUZZ_TARGET` says which
/// parser gets it. A parser may reject an input with a thrown error (that is its job); a trap,
/// a crash, a sanitizer report, a hang or runaway memory is a bug.
///
///     config       YAML; after a NUL byte, one `--set key=value` per line
///     gzip         the bytes as a gzip file
///     idx          2-byte little-endian length L, then L bytes of images file, the rest the labels file
///     npy          2-byte little-endian length L, then L bytes of .npy features file, the rest the labels file
///     csv          first byte: bit 0 header on/off, bit 1 label by name "label" or by index -1; the rest the file
///     safetensors  the bytes as a safetensors file, its float tensors read out
///     checkpoint   the bytes as a checkpoint's JSON state, beside a valid tensors file, then resume's search
///     resume       the bytes as a checkpoint's JSON state, decoded and checked against a run as --resume checks it
///     augment      first byte: the image shape (bits 0-2 height − 1, 3-5 width − 1, 6 three channels); the rest
///                  the value of `data.augment` in a config, parsed, checked and applied to a batch of three images
enum Harness {
    static let target = ProcessInfo.processInfo.environment["DDP_FUZZ_TARGET"] ?? ""
    static let targets = ["config", "gzip", "idx", "npy", "csv", "safetensors", "checkpoint", "resume", "augment"]
    static let scratch: String = {
        let path = "/dev/shm/ddp-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path + "/checkpoints", withIntermediateDirectories: true)
        return path
    }()

    static func run(_ bytes: [UInt8]) {
        switch target {
        case "config": config(bytes)
        case "gzip": _ = try? DataFile.gunzip(bytes, path: "fuzz.gz")
        case "idx": idx(bytes)
        case "npy": npy(bytes)
        case "csv": csv(bytes)
        case "safetensors": safetensors(bytes)
        case "checkpoint": checkpoint(bytes)
        case "resume": resume(bytes)
        case "augment": augment(bytes)
        default:
            FileHandle.standardError.write(Data("set DDP_FUZZ_TARGET to one of \(targets.joined(separator: ", "))\n".utf8))
            exit(2)
        }
    }

    static func config(_ bytes: [UInt8]) {
        let parts = bytes.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
        let yaml = String(decoding: parts[0], as: UTF8.self)
        let overrides = parts.count > 1 ? String(decoding: parts[1], as: UTF8.self).split(separator: "\n").map(String.init) : []
        _ = try? TrainingConfig.parse(yaml: yaml, source: "fuzz.yaml", overrides: overrides)
    }

    static func idx(_ bytes: [UInt8]) {
        guard bytes.count >= 2 else { return }
        let length = min(Int(bytes[0]) | Int(bytes[1]) << 8, bytes.count - 2)
        let images = scratch + "/images", labels = scratch + "/labels"
        _ = FileManager.default.createFile(atPath: images, contents: Data(bytes[2..<2 + length]))
        _ = FileManager.default.createFile(atPath: labels, contents: Data(bytes[(2 + length)...]))
        _ = try? DataLoader.load(.idx(images: images, labels: labels))
    }

    /// The pair of files `data: {format: npy}` names, loaded as the trainer loads them.
    static func npy(_ bytes: [UInt8]) {
        guard bytes.count >= 2 else { return }
        let length = min(Int(bytes[0]) | Int(bytes[1]) << 8, bytes.count - 2)
        let features = scratch + "/features.npy", labels = scratch + "/labels.npy"
        _ = FileManager.default.createFile(atPath: features, contents: Data(bytes[2..<2 + length]))
        _ = FileManager.default.createFile(atPath: labels, contents: Data(bytes[(2 + length)...]))
        guard let data = try? DataLoader.load(.npy(features: features, labels: labels)) else { return }
        _ = data.classCount
        _ = data.feature(row: data.count - 1, column: data.featureCount - 1)
    }

    static func csv(_ bytes: [UInt8]) {
        guard let flags = bytes.first else { return }
        let label: CSVLabel = flags & 2 == 0 ? .index(-1) : .name("label")
        _ = try? CSVFile.parse(Array(bytes.dropFirst()), path: "fuzz.csv", label: label, header: flags & 1 != 0)
    }

    static func safetensors(_ bytes: [UInt8]) {
        guard let contents = try? SafeTensors.decode(bytes, file: "fuzz.safetensors") else { return }
        for tensor in contents.tensors.values { _ = tensor.floats() ?? tensor.doubles().map { $0.map(Float.init) } }
    }

    /// A valid tensors file once; the input is the JSON that vouches for it.
    static let tensorsBytes: [UInt8] = SafeTensors.encode([StoredTensor(name: "w", shape: [2], floats: [1, 2])])

    static func checkpoint(_ bytes: [UInt8]) {
        let store = CheckpointStore(runDirectory: scratch)
        _ = FileManager.default.createFile(atPath: store.directory + "/epoch-0001.safetensors", contents: Data(tensorsBytes))
        _ = FileManager.default.createFile(atPath: store.directory + "/epoch-0001.json", contents: Data(bytes))
        _ = store.newestValid()
    }
}

extension Harness {
    /// The run a checkpoint must continue: 100 moons samples in steps of 32 on one rank (one
    /// thread: libFuzzer calls in turn).
    nonisolated(unsafe) static let resumingRun: (state: RunState, plan: BatchPlan) = {
        let yaml = """
            seed: 3
            data: {train: {format: moons, samples: 100}}
            model: {inputs: 2, layers: [{type: dense, units: 2}]}
            loss: cross_entropy
            optimizer: {type: sgd}
            training: {batch_size: 32, epochs: 5}
            """
        let config = try! TrainingConfig.parse(yaml: yaml)
        let network = try! Network(config: config.model)
        let state = try! RunState(config: config, communicator: LocalCommunicator(), network: network, hasValidation: false,
                                  runDirectory: scratch)
        let plan = try! BatchPlan(sampleCount: 100, loop: config.training, ranks: 1, rank: 0)
        return (state, plan)
    }()

    static func resume(_ bytes: [UInt8]) {
        guard let state = try? CheckpointState.decoded(from: Data(bytes)) else { return }
        _ = try? resumingRun.state.checkResumable(state, file: "fuzz.json", plan: resumingRun.plan, trainingSamples: 100)
        _ = RunState.position(state, stepsPerEpoch: resumingRun.plan.stepsPerEpoch)
        _ = resumingRun.state.scheduleNotice(state)
    }

    static func augment(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let shape = ImageShape(height: Int(first & 7) + 1, width: Int(first >> 3 & 7) + 1, channels: first & 64 == 0 ? 1 : 3)
        let yaml = """
            data:
              train: {format: moons}
              image_shape: [\(shape.height), \(shape.width), \(shape.channels)]
              normalize: none
              augment: \(String(decoding: bytes.dropFirst(), as: UTF8.self))
            model: {inputs: \(shape.featureCount), layers: [{type: dense, units: 1}]}
            loss: mse
            optimizer: {type: sgd}
            """
        guard let config = try? TrainingConfig.parse(yaml: yaml, source: "fuzz.yaml"), !config.data.augment.isEmpty else { return }
        let count = shape.featureCount
        let identity = FeatureTransform(scale: [Float](repeating: 1, count: count), shift: [Float](repeating: 0, count: count))
        guard let pipeline = try? Augmentation(config.data.augment, imageShape: shape, normalization: identity, seed: 7) else { return }
        var inputs = (0..<3 * count).map { Float($0 % 17) / 17 }
        let rows: [Int32] = [0, 5, 9]
        rows.withUnsafeBufferPointer { rows in
            inputs.withUnsafeMutableBufferPointer { pipeline.apply(rows: rows.baseAddress!, count: 3, epoch: 1, inputs: $0.baseAddress!) }
        }
    }
}

/// What libFuzzer calls with each input.
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Harness.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// libFuzzer's driver (in the runtime `-sanitize=fuzzer` links): parses libFuzzer's flags from
/// argv and calls `callback` with each input. Used instead of libFuzzer's own `main`, because
/// SwiftPM gives an executable target its own.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt
