import Foundation

/// A trained model ready for inference (`ddp predict`, `ddp eval`): the config's network with a
/// weights file loaded (model.safetensors, best.safetensors or a checkpoint's tensors file),
/// and the input transform it was trained with, read from the file's metadata (see
/// `FeatureTransform.metadata`). Files written before ddp saved the transform (or by torch)
/// have none: `savedTransform` is nil and the transform is refitted on the training data.
public struct TrainedModel {
    public let config: TrainingConfig
    public let network: Network
    public let savedTransform: FeatureTransform?

    public init(config: TrainingConfig, weights path: String) throws {
        let contents = try SafeTensors.read(path: path)
        var tensors = contents.tensors
        if contents.metadata["format"] == CheckpointState.currentFormat {
            // A checkpoint's tensors file: the model's weights at that epoch, beside the
            // optimizer moments and the best-epoch snapshot, which inference does not use.
            tensors = tensors.filter { !$0.key.hasPrefix("optimizer.") && !$0.key.hasPrefix("best.") }
        }
        let network = try Network(config: config.model)
        try network.importTensors(tensors, file: path)
        let transform = try FeatureTransform(metadata: contents.metadata, file: path)
        if let transform, transform.scale.count != config.model.inputs {
            throw DDPError(.weights, "\(path) was trained on \(transform.scale.count) input features (its saved normalization) but model.inputs is \(config.model.inputs)")
        }
        self.config = config
        self.network = network
        savedTransform = transform
    }

    /// The one-line notice for a weights file without a saved transform.
    public static func refitNotice(weights: String, normalize: Normalization) -> String {
        "ddp: note: \(weights) carries no input normalization (written before ddp saved it); refitting data.normalize: \(normalize.rawValue) on the config's training data"
    }

    /// The data set `split` of the config and the transform to apply to it, reading only the
    /// files needed: with a saved transform, `test` and a separate `validation` source need no
    /// training data; otherwise (`train`, a `validation_split`, or no saved transform) every
    /// source is read as training reads them. `refitting` is called before a refit.
    public func evaluationData(split: String, refitting: () -> Void) throws -> (data: Dataset, transform: FeatureTransform) {
        if let savedTransform {
            let source: DataSource?
            switch split {
            case "test": source = config.data.test
            case "validation": source = config.data.validation
            default: source = nil
            }
            if let source {
                let data = try DataLoader.load(source)
                try RunData.check(data, name: "data.\(split)", config: config)
                return (data, savedTransform)
            }
            return (try RunData(config: config).split(split), savedTransform)
        }
        refitting()
        let all = try RunData(config: config)
        return (try all.split(split), all.transform)
    }

    /// The transform for new data: the saved one, or (calling `refitting` first) refitted on the
    /// config's training split.
    public func inputTransform(refitting: () -> Void) throws -> FeatureTransform {
        if let savedTransform { return savedTransform }
        refitting()
        return try RunData(config: config).transform
    }
}

/// Input data for `ddp predict`: one file in a supported format, labels optional.
public struct PredictionInput {
    public enum Format: String, CaseIterable, Sendable {
        case idx, csv, npy
    }

    public let data: Dataset
    public let hasLabels: Bool

    /// The format a file name implies: `.csv`, `.npy` (either gzipped, `.gz`), and IDX by its
    /// conventional names (`*-idx3-ubyte`, `*.idx`, `*-ubyte`); nil when the name says nothing.
    public static func format(inferredFrom path: String) -> Format? {
        var name = URL(fileURLWithPath: path).lastPathComponent.lowercased()
        if name.hasSuffix(".gz") { name.removeLast(3) }
        if name.hasSuffix(".csv") { return .csv }
        if name.hasSuffix(".npy") { return .npy }
        if name.hasSuffix(".idx") || name.hasSuffix("-ubyte") || name.hasSuffix(".ubyte") { return .idx }
        return nil
    }

    /// `labels`: an IDX labels or .npy labels file (idx, npy); `csvLabel`: the CSV's label
    /// column (`.none` when every column is a feature). `allowNonFinite`: rows with NaN or
    /// infinite features load (IDX bytes are always finite).
    public static func load(path: String, format: Format, labels: String?, csvLabel: CSVLabel, header: Bool,
                            allowNonFinite: Bool = false) throws -> PredictionInput {
        switch format {
        case .idx:
            return PredictionInput(data: try IDXFile.load(images: path, labels: labels), hasLabels: labels != nil)
        case .npy:
            return PredictionInput(data: try NPYFile.load(features: path, labels: labels, allowNonFiniteFeatures: allowNonFinite),
                                   hasLabels: labels != nil)
        case .csv:
            return PredictionInput(data: try CSVFile.load(path: path, label: csvLabel, header: header, allowNonFiniteFeatures: allowNonFinite),
                                   hasLabels: csvLabel != .none)
        }
    }
}

/// Per-row predictions as CSV, the decision each row's accuracy counts in `Loss.evaluate`:
/// - cross_entropy: `class` (the first largest logit), then `p_0 … p_{C−1}`, the softmax;
/// - binary_crossentropy: `class` (logit > 0, or probability > 0.5), then `p_0, p_1` with
///   p_1 = sigmoid(logit) (from_logits) or the output itself;
/// - mse: `value`, the output.
/// With labels, a last column `label`. A row it cannot score (a non-finite feature, or a
/// non-finite output from finite features) is an error naming the row, or under `allowNaN`
/// (`ddp predict --allow-nan`) a row whose prediction fields are empty, counted in the result.
public enum PredictionWriter {
    /// The rows `predict` left unscored under `allowNaN`: how many, and the first few (0-based).
    public struct Unscored: Sendable, Equatable {
        public var count = 0
        public var first: [Int] = []

        public init() {}

        /// Adds a chunk's unscored rows (`count` of them, `rows` the first few), in row order.
        mutating func add(_ rows: [Int], count: Int? = nil) {
            self.count += count ?? rows.count
            first += rows.prefix(max(0, 5 - first.count))
        }
    }

    public static func header(loss: Loss, width: Int, labels: Bool) -> String {
        var columns: [String]
        switch loss {
        case .crossEntropy: columns = ["class"] + (0..<width).map { "p_\($0)" }
        case .binaryCrossEntropy: columns = ["class", "p_0", "p_1"]
        case .meanSquaredError: columns = ["value"]
        }
        if labels { columns.append("label") }
        return columns.joined(separator: ",")
    }

    /// Runs the model over every row of `input` in inference mode and hands `emit` the CSV
    /// text, header first, a chunk of rows at a time. With a communicator of several ranks
    /// (`ddp predict` under mpirun) rank r scores chunks r, r + N, … and rank 0 alone emits
    /// them, in order; a row that cannot be scored fails every rank alike (`AgreedFailure`:
    /// rank 0 names the first such row).
    @discardableResult
    public static func predict(_ model: TrainedModel, input: PredictionInput, transform: FeatureTransform, allowNaN: Bool = false,
                               communicator: Communicator = LocalCommunicator(), emit: (String) throws -> Void) throws -> Unscored {
        let data = input.data
        guard data.featureCount == model.config.model.inputs else {
            throw DDPError(.data, "\(data.origin) has \(data.featureCount) features per sample but model.inputs is \(model.config.model.inputs)"
                           + (data.featureCount == model.config.model.inputs + 1 && !input.hasLabels ? " (one too many: if a column holds the label, name it with --label)" : ""))
        }
        let scorer = ChunkScorer(model: model, input: input, transform: transform)
        let header = Self.header(loss: model.config.loss, width: model.network.outputWidth, labels: input.hasLabels) + "\n"
        guard communicator.size > 1 else {
            try emit(header)
            var unscored = Unscored()
            for index in 0..<scorer.chunks {
                let scored = try scorer.score(chunk: index)
                if let problem = scored.problem, !allowNaN { throw scorer.error(problem) }
                unscored.add(scored.unscored)
                try emit(scored.text)
            }
            return unscored
        }
        // Per chunk: its text's bytes, its unscored rows' count, the first 5 of them + 1 (0: none),
        // and its first unscorable row + 1 and what failed (`ChunkScorer.Problem`); each value has
        // one non-zero contributor, so the allreduce gives every rank every chunk's figures exactly.
        let stride = 9, chunks = scorer.chunks, ranks = communicator.size, rank = communicator.rank
        var figures = [Double](repeating: 0, count: chunks * stride)
        var texts: [[UInt8]] = []
        for index in Swift.stride(from: rank, to: chunks, by: ranks) {
            let scored = try scorer.score(chunk: index)
            texts.append(Array(scored.text.utf8))
            figures[index * stride] = Double(texts.last!.count)
            figures[index * stride + 1] = Double(scored.unscored.count)
            for (slot, row) in scored.unscored.prefix(5).enumerated() { figures[index * stride + 2 + slot] = Double(row + 1) }
            if let problem = scored.problem {
                figures[index * stride + 7] = Double(problem.row + 1)
                figures[index * stride + 8] = problem.finiteFeatures ? 2 : 1
            }
        }
        try figures.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
        var unscored = Unscored()
        for index in 0..<chunks {
            let base = index * stride
            if !allowNaN && figures[base + 7] > 0 {
                let problem = ChunkScorer.Problem(row: Int(figures[base + 7]) - 1, finiteFeatures: figures[base + 8] == 2)
                throw AgreedFailure(error: scorer.error(problem), printHere: rank == 0)
            }
            unscored.add((0..<5).compactMap { slot in figures[base + 2 + slot] > 0 ? Int(figures[base + 2 + slot]) - 1 : nil },
                         count: Int(figures[base + 1]))
        }
        // One gather per round of N chunks (chunk k·N + r from rank r), each rank's text padded to
        // the round's longest: rank 0 emits while the rest of the output waits on the other ranks.
        if rank == 0 { try emit(header) }
        var gathered = [UInt8]()
        for round in 0..<(chunks + ranks - 1) / ranks {
            let first = round * ranks, members = min(ranks, chunks - first)
            let width = (first..<first + members).map { Int(figures[$0 * stride]) }.max() ?? 0
            var block = [UInt8](repeating: 0, count: max(width, 1))
            if round < texts.count { block.replaceSubrange(0..<texts[round].count, with: texts[round]) }
            if rank == 0 { gathered = [UInt8](repeating: 0, count: ranks * block.count) }
            try block.withUnsafeBytes { mine in
                try gathered.withUnsafeMutableBytes { all in
                    try communicator.gather(bytes: mine, into: rank == 0 ? all.baseAddress : nil, root: 0)
                }
            }
            guard rank == 0 else { continue }
            for member in 0..<members {
                let bytes = Int(figures[(first + member) * stride])
                try emit(String(decoding: gathered[member * block.count..<member * block.count + bytes], as: UTF8.self))
            }
        }
        return unscored
    }

    /// Scores one chunk of rows at a time: the network, its context and scratch, made once.
    private final class ChunkScorer {
        let network: Network, loss: Loss, data: Dataset, hasLabels: Bool, transform: FeatureTransform
        let chunk: Int, context: StepContext, labels: UnsafeMutableBufferPointer<Float>
        let probabilities: UnsafeMutablePointer<Float>, columns: Int
        var chunks: Int { (data.count + chunk - 1) / chunk }

        /// A row that cannot be scored: a non-finite feature, or finite features and a non-finite output.
        struct Problem {
            let row: Int
            let finiteFeatures: Bool
        }

        init(model: TrainedModel, input: PredictionInput, transform: FeatureTransform) {
            network = model.network
            loss = model.config.loss
            data = input.data
            hasLabels = input.hasLabels
            self.transform = transform
            chunk = Evaluator.chunk(for: model.config.model)
            network.reserve(maxBatch: chunk)
            context = StepContext(communicator: LocalCommunicator(), maxBatch: chunk)
            context.training = false
            labels = .allocate(capacity: chunk)
            labels.initialize(repeating: 0)
            probabilities = .allocate(capacity: network.outputWidth)
            probabilities.initialize(repeating: 0, count: network.outputWidth)
            columns = PredictionWriter.header(loss: loss, width: network.outputWidth, labels: false).split(separator: ",").count
        }

        deinit {
            labels.deallocate()
            probabilities.deallocate()
        }

        func error(_ problem: Problem) -> DDPError {
            DDPError(.data, "\(data.origin): row \(problem.row) " + (problem.finiteFeatures
                ? "has finite features but the model's output is not finite"
                : "has a non-finite feature (NaN or infinity)") + "; ddp predict --allow-nan writes such rows with empty prediction fields")
        }

        /// Chunk `index`'s CSV lines; rows it cannot score get empty prediction fields, listed in
        /// `unscored`, the first of them also as `problem`.
        func score(chunk index: Int) throws -> (text: String, unscored: [Int], problem: Problem?) {
            let start = index * chunk, batch = min(chunk, data.count - start), width = network.outputWidth
            for i in 0..<batch { context.sampleRows[i] = Int32(start + i) }
            data.gather(rows: context.sampleRows, count: batch, transform: transform,
                        inputs: network.input.baseAddress!, labels: labels.baseAddress!)
            var text = "", unscored: [Int] = [], problem: Problem?
            try network.forward(batch: batch, context: context)
            for row in 0..<batch {
                let inputs = UnsafeBufferPointer(start: network.input.baseAddress! + row * data.featureCount, count: data.featureCount)
                let outputs = UnsafeBufferPointer(start: network.output + row * width, count: width)
                let finiteInputs = inputs.allSatisfy(\.isFinite)
                if finiteInputs && outputs.allSatisfy(\.isFinite) {
                    text += PredictionWriter.line(loss, network.output + row * width, width: width, probabilities: probabilities)
                } else {
                    text += String(repeating: ",", count: columns - 1)
                    unscored.append(start + row)
                    if problem == nil { problem = Problem(row: start + row, finiteFeatures: finiteInputs) }
                }
                if hasLabels { text += ",\(PredictionWriter.label(labels[row]))" }
                text += "\n"
            }
            return (text, unscored, problem)
        }
    }

    /// One row's CSV fields; `probabilities` is scratch for a softmax row.
    fileprivate static func line(_ loss: Loss, _ z: UnsafePointer<Float>, width: Int, probabilities: UnsafeMutablePointer<Float>) -> String {
        switch loss {
        case .crossEntropy:
            var maximum = -Float.infinity, best = 0
            for j in 0..<width where z[j] > maximum { maximum = z[j]; best = j }
            Activation.softmax(z, probabilities, width)
            var text = String(best)
            for j in 0..<width { text += ",\(probabilities[j])" }
            return text
        case .binaryCrossEntropy(let fromLogits, _):
            let p = fromLogits ? Activation.sigmoid(z[0]) : z[0]
            let positive = fromLogits ? z[0] > 0 : z[0] > 0.5
            return "\(positive ? 1 : 0),\(1 - p),\(p)"
        case .meanSquaredError:
            return "\(z[0])"
        }
    }

    fileprivate static func label(_ value: Float) -> String {
        value == value.rounded() && abs(value) < 1e7 ? String(Int(value)) : "\(value)"
    }
}
