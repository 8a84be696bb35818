/// The datasets of one run, split and normalized as the config says, with every check that
/// needs both the data and the model (feature count, label range) done once, up front.
public struct RunData: Sendable {
    public let train: Dataset
    public let validation: Dataset?
    public let test: Dataset?
    /// Fitted on `train` only; applied to every split.
    public let transform: FeatureTransform
    /// One sample's shape as an image: `data.image_shape`, else the training file's own (IDX).
    public let imageShape: ImageShape?

    /// Reads every data file of the config in this process.
    public init(config: TrainingConfig) throws {
        try self.init(config: config, loaded: try Self.loadSources(config))
    }

    /// The config's data sources in order: train, then validation and test when configured.
    public static func sources(_ config: TrainingConfig) -> [DataSource] {
        [config.data.train] + [config.data.validation, config.data.test].compactMap { $0 }
    }

    static func loadSources(_ config: TrainingConfig) throws -> [Dataset] {
        try sources(config).map(DataLoader.load)
    }

    /// Splits, checks and normalizes datasets already loaded (in this process, or in a node's
    /// shared window) in the order of `sources(config)`.
    public init(config: TrainingConfig, loaded: [Dataset]) throws {
        precondition(loaded.count == Self.sources(config).count, "RunData: \(loaded.count) datasets for \(Self.sources(config).count) sources")
        let full = loaded[0]
        var train = full
        var validation: Dataset?
        if config.data.validation != nil {
            validation = loaded[1]
        } else if config.data.validationSplit > 0 {
            // Keras: split_at = floor(n·(1 − validation_split)); validation is the tail, unshuffled.
            let splitAt = Int((Double(full.count) * (1 - config.data.validationSplit)).rounded(.down))
            guard splitAt > 0, splitAt < full.count else {
                throw DDPError(.config, "data.validation_split \(config.data.validationSplit) leaves no training or no validation samples out of \(full.count)")
            }
            train = full.slice(0..<splitAt)
            validation = full.slice(splitAt..<full.count)
        }
        try self.init(config: config, train: train, validation: validation,
                      test: config.data.test == nil ? nil : loaded[loaded.count - 1])
    }

    /// The splits as given (a cross-validation fold's, say): checked against the model, the
    /// normalization fitted on `train`.
    public init(config: TrainingConfig, train: Dataset, validation: Dataset?, test: Dataset?) throws {
        for (name, data) in [("data.train", train), ("data.validation", validation), ("data.test", test)] {
            guard let data else { continue }
            try Self.check(data, name: name, config: config)
        }
        self.train = train
        self.validation = validation
        self.test = test
        transform = FeatureTransform.fit(config.data.normalize, on: train)
        imageShape = try Self.imageShape(config, datasets: [("data.train", train), ("data.validation", validation), ("data.test", test)])
        try Augmentation.check(config.data.augment, imageShape: imageShape, transform: transform)
    }

    /// The configured image shape, which every file that records its own must agree with.
    static func imageShape(_ config: TrainingConfig, datasets: [(String, Dataset?)]) throws -> ImageShape? {
        var shape = config.data.imageShape
        for case let (name, data?) in datasets {
            guard let own = data.imageShape else { continue }
            if let configured = config.data.imageShape, configured.featureCount == own.featureCount, configured != own {
                throw DDPError(.config, "data.image_shape is \(configured) but \(name) (\(data.origin)) holds images of \(own)")
            }
            shape = shape ?? own
        }
        return shape
    }

    public func split(_ name: String) throws -> Dataset {
        switch name {
        case "train": return train
        case "validation":
            guard let validation else { throw DDPError(.config, "the config has no validation data (data.validation or data.validation_split)") }
            return validation
        case "test":
            guard let test else { throw DDPError(.config, "the config has no test data (data.test)") }
            return test
        default: throw DDPError(.config, "--split: '\(name)' is not one of train, validation, test")
        }
    }

    static func check(_ data: Dataset, name: String, config: TrainingConfig) throws {
        guard data.featureCount == config.model.inputs else {
            throw DDPError(.config, "\(name) (\(data.origin)) has \(data.featureCount) features per sample but model.inputs is \(config.model.inputs)")
        }
        guard data.count > 0 else { throw DDPError(.data, "\(name) (\(data.origin)) has no samples") }
        let outputs = config.model.outputWidth
        if !config.loss.isCategorical && outputs != 1 {
            throw DDPError(.config, "loss \(config.loss.name) takes one label per sample, so the last dense layer needs units: 1, not \(outputs)")
        }
        for (row, label) in data.labels.enumerated() {
            switch config.loss {
            case .crossEntropy:
                guard label >= 0, label == label.rounded(), label < Float(outputs) else {
                    throw DDPError(.data, "\(name) (\(data.origin)): label \(label) of sample \(row) is not a class index in 0..<\(outputs) (the last layer has \(outputs) units)")
                }
            case .binaryCrossEntropy:
                guard label >= 0, label <= 1 else {
                    throw DDPError(.data, "\(name) (\(data.origin)): label \(label) of sample \(row) is not in [0, 1] as binary_crossentropy expects")
                }
            case .meanSquaredError:
                guard label.isFinite else { throw DDPError(.data, "\(name) (\(data.origin)): label of sample \(row) is not a finite number") }
            }
        }
    }
}
