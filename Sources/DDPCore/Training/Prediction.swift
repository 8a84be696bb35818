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
    /// text, header first, a chunk of rows at a time.
    @discardableResult
    public static func predict(_ model: TrainedModel, input: PredictionInput, transform: FeatureTransform, allowNaN: Bool = false,
                               emit: (String) throws -> Void) throws -> Unscored {
        let network = model.network, loss = model.config.loss, data = input.data
        guard data.featureCount == model.config.model.inputs else {
            throw DDPError(.data, "\(data.origin) has \(data.featureCount) features per sample but model.inputs is \(model.config.model.inputs)"
                           + (data.featureCount == model.config.model.inputs + 1 && !input.hasLabels ? " (one too many: if a column holds the label, name it with --label)" : ""))
        }
        let chunk = Evaluator.chunk(for: model.config.model)
        network.reserve(maxBatch: chunk)
        let context = StepContext(communicator: LocalCommunicator(), maxBatch: chunk)
        context.training = false
        let labels = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunk)
        defer { labels.deallocate() }
        let width = network.outputWidth
        let probabilities = UnsafeMutablePointer<Float>.allocate(capacity: width)
        defer { probabilities.deallocate() }
        let columns = header(loss: loss, width: width, labels: false).split(separator: ",").count
        let features = data.featureCount
        var unscored = Unscored()
        try emit(header(loss: loss, width: width, labels: input.hasLabels) + "\n")
        var start = 0
        while start < data.count {
            let batch = min(chunk, data.count - start)
            for i in 0..<batch { context.sampleRows[i] = Int32(start + i) }
            data.gather(rows: context.sampleRows, count: batch, transform: transform,
                        inputs: network.input.baseAddress!, labels: labels.baseAddress!)
            try network.forward(batch: batch, context: context)
            var text = ""
            for row in 0..<batch {
                let inputs = UnsafeBufferPointer(start: network.input.baseAddress! + row * features, count: features)
                let outputs = UnsafeBufferPointer(start: network.output + row * width, count: width)
                let finiteInputs = inputs.allSatisfy(\.isFinite)
                if finiteInputs && outputs.allSatisfy(\.isFinite) {
                    text += line(loss, network.output + row * width, width: width, probabilities: probabilities)
                } else {
                    guard allowNaN else {
                        throw DDPError(.data, "\(data.origin): row \(start + row) " + (finiteInputs
                            ? "has finite features but the model's output is not finite"
                            : "has a non-finite feature (NaN or infinity)") + "; ddp predict --allow-nan writes such rows with empty prediction fields")
                    }
                    text += String(repeating: ",", count: columns - 1)
                    unscored.count += 1
                    if unscored.first.count < 5 { unscored.first.append(start + row) }
                }
                if input.hasLabels { text += ",\(label(labels[row]))" }
                text += "\n"
            }
            try emit(text)
            start += batch
        }
        return unscored
    }

    /// One row's CSV fields; `probabilities` is scratch for a softmax row.
    private static func line(_ loss: Loss, _ z: UnsafePointer<Float>, width: Int, probabilities: UnsafeMutablePointer<Float>) -> String {
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

    private static func label(_ value: Float) -> String {
        value == value.rounded() && abs(value) < 1e7 ? String(Int(value)) : "\(value)"
    }
}
