import Foundation

/// Everything besides tensors that a run needs to continue exactly where it stopped.
public struct CheckpointState: Codable, Sendable, Equatable {
    public struct Monitor: Codable, Sendable, Equatable {
        public var wait: Int
        public var best: Double
        public var bestEpoch: Int
        public var stoppedEpoch: Int?
        public var hasSnapshot: Bool
    }
    public static let currentFormat = "ddp-checkpoint-1"
    public var format = CheckpointState.currentFormat
    /// Epochs completed (the run continues with this 0-based epoch).
    public var epoch: Int
    public var globalStep: Int
    public var optimizerStep: Int
    public var seed: UInt64
    public var ranks: Int
    /// Samples per optimizer step over all ranks: resume requires the same.
    public var globalBatch: Int
    public var monitor: Monitor
    /// The tensors file beside this JSON and its size and FNV-1a 64 checksum, which resume verifies.
    public var tensorsFile: String
    public var tensorsBytes: Int
    public var tensorsChecksum: String
    /// Set when the run stopped inside epoch `epoch` (0-based: the one after the completed
    /// ones) on a preemption signal: how far it got, so `--resume` continues at the next step.
    public var partialEpoch: PartialEpoch?
    /// reduce_on_plateau's state after the last completed epoch; nil for other schedules (and in
    /// checkpoints written before it existed: a resume then starts the plateau afresh).
    public var plateau: Plateau? = nil
    /// The loss the run optimized (`Loss.signature`); nil in checkpoints written before it.
    public var loss: String? = nil
    /// The lr schedule the run followed (`LearningRateSchedule.signature`); nil in checkpoints
    /// written before it.
    public var schedule: String? = nil
    /// `distributed.deterministic`'s virtual shards and the OpenBLAS kernel table whose GEMM
    /// results the run's bits rest on; nil for a run not in that mode.
    public var deterministic: Deterministic? = nil

    public struct Deterministic: Codable, Sendable, Equatable {
        public var virtualShards: Int
        public var blasCore: String
    }

    /// The steps of an epoch already taken and their running sums (the epoch's metrics line is
    /// written when it completes, after the resume).
    public struct PartialEpoch: Codable, Sendable, Equatable {
        public var steps: Int
        public var lossSum: Double
        public var correct: Double
        public var samples: Double
        public var seconds: Double
    }

    /// `ReduceLROnPlateau`'s counters; the lr (a Float) as a Double, which JSON round-trips exactly.
    public struct Plateau: Codable, Sendable, Equatable {
        public var learningRate: Double
        public var best: Double
        public var wait: Int
        public var cooldownCounter: Int
    }
}

extension CheckpointState {
    /// The JSON a checkpoint's state file holds, and what resume broadcasts to every rank
    /// (sorted keys; a best value of ±∞ before the first epoch as a string).
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try encoder.encode(self)
    }

    public static func decoded(from data: Data) throws -> CheckpointState {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try decoder.decode(CheckpointState.self, from: data)
    }
}

/// Checkpoints in RUN_DIR/checkpoints, written by rank 0 only:
/// `epoch-0003.safetensors` (model tensors under state_dict names, `optimizer.first_moment`,
/// `optimizer.second_moment`, and `best.*` copies for restore_best_weights) and then
/// `epoch-0003.json` (the state). Each file is written atomically (temp, fsync, rename, fsync of
/// the directory) and the JSON goes last, so a JSON whose checksum matches its tensors file
/// marks a complete checkpoint. A crash mid-write leaves the previous checkpoints intact.
public struct CheckpointStore {
    public let directory: String

    public init(runDirectory: String) {
        directory = runDirectory + "/checkpoints"
    }

    /// "epoch-0003" after 3 epochs; "epoch-0004-step-000120" in epoch 4 after its step 120 (a
    /// preemption), as the message that announces it counts: 1-based, like the epoch lines.
    static func stem(epoch: Int, step: Int? = nil) -> String {
        step.map { String(format: "epoch-%04d-step-%06d", epoch + 1, $0) } ?? String(format: "epoch-%04d", epoch)
    }

    /// The state file of the checkpoint after `epoch` epochs and `step` steps of the next
    /// (whether or not it exists).
    public func statePath(epoch: Int, step: Int? = nil) -> String { "\(directory)/\(Self.stem(epoch: epoch, step: step)).json" }

    /// `metadata` goes into the tensors file's header beside the format (the input transform).
    @discardableResult
    public func save(tensors: [StoredTensor], state: CheckpointState, keep: Int, metadata: [String: String] = [:]) throws -> String {
        try RunDirectory.create(directory)
        let stem = Self.stem(epoch: state.epoch, step: state.partialEpoch?.steps)
        let bytes = SafeTensors.encode(tensors, metadata: metadata.merging(["format": state.format]) { _, format in format })
        try AtomicFile.write(bytes, to: "\(directory)/\(stem).safetensors")
        var state = state
        state.tensorsFile = "\(stem).safetensors"
        state.tensorsBytes = bytes.count
        state.tensorsChecksum = Self.checksum(bytes)
        try AtomicFile.write(Array(try state.encoded()), to: "\(directory)/\(stem).json")
        try prune(keep: keep, keeping: stem)
        return statePath(epoch: state.epoch, step: state.partialEpoch?.steps)
    }

    /// The newest checkpoint whose tensors file is whole (size and checksum match). Damaged
    /// ones are skipped with a note in `skipped`.
    public func newestValid() -> (checkpoint: (state: CheckpointState, tensors: [String: StoredTensor], path: String)?, skipped: [String]) {
        var skipped: [String] = []
        for json in stems().reversed().map({ "\(directory)/\($0).json" }) {
            // FileBytes, not FileManager.contents(atPath:): that leaks a 4 KB buffer on an empty file
            // (swift-foundation, found by launch/fuzz checkpoint).
            guard let bytes = try? FileBytes.read(json, what: "checkpoint state", kind: .weights),
                  let state = try? CheckpointState.decoded(from: Data(bytes)) else {
                skipped.append("\(json): not a readable checkpoint state")
                continue
            }
            // The JSON names a file beside it; anything else (a path to /dev/zero, say) is not ours to read.
            let name = state.tensorsFile
            guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                skipped.append("\(json): its tensors file '\(name)' is not a file name in \(directory)")
                continue
            }
            let tensorsPath = "\(directory)/\(name)"
            let attributes = try? FileManager.default.attributesOfItem(atPath: tensorsPath)
            guard attributes?[.type] as? FileAttributeType == .typeRegular,
                  (attributes?[.size] as? NSNumber)?.intValue == state.tensorsBytes,
                  let bytes = try? FileBytes.read(tensorsPath, what: "checkpoint tensors", kind: .weights),
                  bytes.count == state.tensorsBytes, Self.checksum(bytes) == state.tensorsChecksum else {
                skipped.append("\(tensorsPath): missing, truncated or checksum mismatch")
                continue
            }
            do {
                let decoded = try SafeTensors.decode(bytes, file: tensorsPath)
                return ((state, decoded.tensors, json), skipped)
            } catch {
                skipped.append("\(error)")
            }
        }
        return (nil, skipped)
    }

    /// Checkpoint stems ("epoch-0003", "epoch-0004-step-000120") present, oldest first, by the
    /// position their names give: (epochs completed, steps into the next). A step checkpoint
    /// an older ddp named by epochs completed ("epoch-0003-step-000120" for the same position)
    /// is recognized by its state file, which records that position. Numbers, not names: past
    /// epoch 9999 the name grows a digit ("epoch-10000" sorts before "epoch-9999").
    func stems() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        func key(_ stem: String) -> (Int, Int, String) {
            let parts = stem.split(separator: "-")
            let epoch = parts.count > 1 ? Int(parts[1]) ?? -1 : -1
            guard parts.count == 4, parts[2] == "step", let step = Int(parts[3]) else { return (epoch, 0, stem) }
            if let bytes = try? FileBytes.read("\(directory)/\(stem).json", what: "checkpoint state", kind: .weights, streamLimit: 1 << 20),
               let state = try? CheckpointState.decoded(from: Data(bytes)), state.epoch == epoch, state.partialEpoch?.steps == step {
                return (epoch, step, stem)
            }
            return (epoch - 1, step, stem)
        }
        return names.filter { $0.hasPrefix("epoch-") && $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }
            .map { (key($0), $0) }.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// Removes temporary files a killed writer left behind ("….tmp-<pid>"). Called on resume,
    /// when no other process writes here.
    public func removeStaleTemporaries() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.contains(".tmp-") {
            try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
        }
    }

    /// Keeps the newest `keep` checkpoints, `current` (the one just written) always among them.
    private func prune(keep: Int, keeping current: String) throws {
        for stem in stems().filter({ $0 != current }).dropLast(max(keep - 1, 0)) {
            try? FileManager.default.removeItem(atPath: "\(directory)/\(stem).json")
            try? FileManager.default.removeItem(atPath: "\(directory)/\(stem).safetensors")
        }
    }

    /// FNV-1a, 64-bit: cheap and enough to tell a torn or corrupted file from a whole one.
    static func checksum(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return String(format: "%016llx", hash)
    }
}
