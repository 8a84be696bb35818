import Foundation
import Yams

/// The config's `data` section.
public struct DataConfig: Sendable, Equatable {
    public var train: DataSource
    public var validation: DataSource?
    /// Keras validation_split: the LAST fraction of the training data, taken before shuffling.
    public var validationSplit: Double = 0
    public var test: DataSource?
    public var normalize = Normalization.scale
    /// The shape of one sample as an image; IDX files carry their own.
    public var imageShape: ImageShape?
    /// Transforms applied in order to training batches only.
    public var augment: [AugmentTransform] = []
}

/// The config's `training` section.
public struct LoopConfig: Sendable, Equatable {
    public var epochs = 10
    /// The global batch: one optimizer step sees this many samples, split across the ranks.
    public var batchSize = 32
    /// Weak scaling: each rank takes this many, so the global batch is this × ranks.
    public var batchSizePerRank: Int?
    public var shuffle = true
    /// Drop the last incomplete batch of each epoch (torch DataLoader's drop_last).
    public var dropLast = false
    /// Each optimizer step sums the gradients of this many micro-batches of `batch_size` (or
    /// `batch_size_per_rank` × ranks), with one gradient sync: a global batch of K × that.
    public var accumulateSteps = 1
}

/// The config's `checkpoint` section.
public struct CheckpointConfig: Sendable, Equatable {
    public var everyEpochs = 1
    public var keep = 3
}

/// The config's `distributed` section: how ranks combine their work.
public struct DistributedConfig: Sendable, Equatable {
    /// ZeRO stage 1 when np > 1: reduce-scatter the gradients, each rank updates its 1/N slice
    /// of the flat parameter buffer (and holds optimizer moments for that slice only), then the
    /// parameters are allgathered. `false`: every rank allreduces the whole gradient and
    /// repeats the whole update.
    public var shardedUpdate = true
    /// With the sharded update, when every rank runs on one node: parameters and gradients in
    /// node-shared windows, reduced by reading each other's memory (no reduce-scatter, no
    /// allgather). `false`: MPI collectives even on one node.
    public var sharedMemory = true
    /// MPI path of the sharded update: once this many kB of the gradient are final during
    /// backward (the last layers come first), their reduce-scatter starts and runs while the
    /// earlier layers' gradients are computed; 0 = one reduce-scatter after backward. torch
    /// DDP's `bucket_cap_mb` plays the same part.
    public var bucketKilobytes = 128.0
    /// The collective deadline: a rank that has waited this long in one blocking MPI call ends
    /// the job (see `CollectiveWatchdog`). torch.distributed's defaults are 10 to 30 minutes;
    /// 300 s is far above any collective of a healthy job and ends a lost-host job quickly.
    public var timeoutSeconds = 300.0
    /// The same bits at any rank count (`VirtualShards`): every global batch is split into
    /// `virtualShards` fixed shards whose sums combine in one fixed tree, so weights, moments,
    /// BatchNorm statistics, metrics and checkpoints do not depend on np (a divisor of
    /// `virtualShards`) or on the host layout. OpenBLAS runs one thread per rank.
    public var deterministic = false
    /// Virtual shards per global batch under `deterministic`: a power of two, the largest rank
    /// count the guarantee covers (np must divide it).
    public var virtualShards = 8

    public init() {}
}

/// The config's `logging` section: what rank 0 writes besides metrics.jsonl and the console.
public struct LoggingConfig: Sendable, Equatable {
    /// A TensorBoard event file in the run directory (`tensorboard --logdir runs/`).
    public var tensorboard = true
    /// Every N optimizer steps, the step's loss and learning rate as TensorBoard scalars
    /// (`TensorBoardStepWriter`); 0 = only the per-epoch ones.
    public var tensorboardEverySteps = 0
    /// Where stderr is not a terminal (a batch job's log): seconds between plain progress lines
    /// within an epoch.
    public var progressSeconds = 30.0
    /// Per epoch, a histogram of every trainable tensor's weights and of its gradient in the
    /// epoch's last step (`weights/<name>`, `gradients/<name>`: Keras's TensorBoard callback with
    /// `histogram_freq=1`), in the epoch's event file (`TensorBoardWriter.appendHistograms`).
    public var histograms = false
}

/// A whole training config, parsed and validated. docs/CONFIG.md lists every key (generated
/// from this parser by `ConfigReference`).
public struct TrainingConfig: Sendable, Equatable {
    public var seed: UInt64 = 0
    public var data: DataConfig
    public var model: ModelConfig
    public var loss: Loss
    /// `loss.class_weight`; nil = every class weighs 1.
    public var classWeight: ClassWeight?
    /// The loss with its options and class weights, as a checkpoint records it: a resume under
    /// another (whose val_loss early stopping would compare with this one's) is refused.
    public var lossSignature: String {
        switch classWeight {
        case nil: loss.signature
        case .balanced: loss.signature + " class_weight=balanced"
        case let .given(weights):
            loss.signature + " class_weight={" + weights.keys.sorted().map { "\($0): \(weights[$0]!)" }.joined(separator: ", ") + "}"
        }
    }
    public var optimizer: OptimizerConfig
    public var schedule = LearningRateSchedule()
    public var training = LoopConfig()
    public var earlyStopping: EarlyStoppingConfig?
    public var checkpoint = CheckpointConfig()
    public var distributed = DistributedConfig()
    public var logging = LoggingConfig()
    /// `metrics`: the validation figures each epoch reports beyond loss and accuracy.
    public var metrics = ValidationMetrics()
    /// The resolved YAML (after overrides), saved into the run directory.
    public var resolvedYAML = ""

    /// Reads `path`, applies `--set` overrides in order, and validates every key.
    public static func load(path: String, overrides: [String] = []) throws -> TrainingConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "not readable UTF-8 text" : "no such file"
            throw DDPError(.config, "cannot read config file \(path): \(reason)")
        }
        return try parse(yaml: text, source: path, overrides: overrides)
    }

    public static func parse(yaml text: String, source: String = "config", overrides: [String] = []) throws -> TrainingConfig {
        var root: Node
        try YAMLLimits.checkNesting(text, source: source)
        do {
            root = try Yams.compose(yaml: text) ?? Node.mapping(Node.Mapping([]))
        } catch {
            throw DDPError(.config, "\(source) is not valid YAML: \(error)")
        }
        for assignment in overrides { try ConfigOverride.apply(assignment, to: &root) }
        try YAMLLimits.checkSize(root, source: source)
        do {
            var config = try parse(root: root)
            config.resolvedYAML = (try? Yams.serialize(node: root)) ?? text
            return config
        } catch let error as DDPError {
            // A value that came from the command line is blamed on the --set that gave it (the
            // last one for a key given twice: it is the one applied).
            let blamed = overrides.last { assignment in
                let key = assignment.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
                return !key.isEmpty && (error.message.hasPrefix(key + ":") || error.message.contains("'\(key)'"))
            }
            throw DDPError(error.kind, blamed.map { "--set \($0) (over \(source)): \(error.message)" } ?? "\(source): \(error.message)")
        }
    }

    /// The sections in the order they depend on one another: the seed keys the data sources,
    /// the data and loss decide which monitors exist, the epochs the schedule's length.
    static func parse(root: Node) throws -> TrainingConfig {
        var top = try ConfigSection(root, path: "")
        let seed = UInt64(try top.int("seed", default: 0, min: 0))
        guard var dataSection = try top.section("data") else { throw DDPError(.config, "missing key 'data'") }
        let data = try dataConfig(&dataSection, seed: seed)
        try dataSection.finish()
        guard var modelSection = try top.section("model") else { throw DDPError(.config, "missing key 'model'") }
        let model = try modelConfig(&modelSection, data: data)
        try modelSection.finish()
        let (loss, classWeight) = try lossConfig(top.node("loss"), model: model)
        guard var optimizerSection = try top.section("optimizer") else { throw DDPError(.config, "missing key 'optimizer'") }
        let optimizer = try optimizerConfig(&optimizerSection)
        try optimizerSection.finish()

        var config = TrainingConfig(seed: seed, data: data, model: model, loss: loss, optimizer: optimizer)
        config.classWeight = classWeight
        try top.parseSection("training") { try loopConfig(&$0, into: &config.training) }
        try top.parseSection("schedule") { config.schedule = try scheduleConfig(&$0, epochs: config.training.epochs) }
        if case let .reduceOnPlateau(plateau) = config.schedule.kind {
            try checkMonitor(plateau.monitor, key: "schedule.monitor", data: data, loss: loss)
        }
        if case let .oneCycle(cycle) = config.schedule.kind, cycle.cycleMomentum, optimizer.kind == .rmsprop, optimizer.centered {
            throw DDPError(.config, "schedule.cycle_momentum: one_cycle would give centered RMSprop a momentum, which needs a third state buffer (see optimizer.centered); set cycle_momentum: false")
        }
        try top.parseSection("early_stopping") { config.earlyStopping = try earlyStoppingConfig(&$0, data: data, loss: loss) }
        try top.parseSection("checkpoint") { try checkpointConfig(&$0, into: &config.checkpoint) }
        try top.parseSection("distributed") { try distributedConfig(&$0, into: &config.distributed) }
        try top.parseSection("logging") { try loggingConfig(&$0, into: &config.logging) }
        config.metrics = try metricsConfig(top.node("metrics"), loss: loss, model: model)
        try top.finish()
        // The deterministic mode keeps per-shard gradient buffers (on one process, the most).
        let shards = config.distributed.virtualShards
        let shardBuffers = !config.distributed.deterministic ? 0
            : config.training.accumulateSteps > 1 ? shards - 1 : shards.trailingZeroBitCount
        try MemoryCheck.checkModel(config.model, batch: config.training.batchSizePerRank ?? config.training.batchSize,
                                   batchKey: config.training.batchSizePerRank == nil ? "training.batch_size" : "training.batch_size_per_rank",
                                   gradientCopies: shardBuffers)
        return config
    }

    static func dataConfig(_ section: inout ConfigSection, seed: UInt64) throws -> DataConfig {
        guard let trainNode = section.node("train") else { throw DDPError(.config, "missing key 'data.train'") }
        var data = DataConfig(train: try dataSource(trainNode, path: "data.train", seed: seed))
        if let node = section.node("validation") {
            data.validation = try dataSource(node, path: "data.validation", seed: seed &+ 1)
        }
        if let node = section.node("test") {
            data.test = try dataSource(node, path: "data.test", seed: seed &+ 2)
        }
        data.validationSplit = try section.double("validation_split", default: data.validationSplit, in: 0...0.99)
        data.normalize = try section.choice("normalize", default: data.normalize)
        data.imageShape = try ImageShape.parse(&section, "image_shape")
        data.augment = try AugmentTransform.parseList(section.node("augment"), path: "data.augment")
        if data.validation != nil && data.validationSplit > 0 {
            throw DDPError(.config, "data.validation and data.validation_split are both set; use one")
        }
        return data
    }

    static func loopConfig(_ section: inout ConfigSection, into loop: inout LoopConfig) throws {
        loop.epochs = try section.int("epochs", default: loop.epochs, min: 1)
        loop.batchSize = try section.int("batch_size", default: loop.batchSize, min: 1)
        loop.batchSizePerRank = try section.int("batch_size_per_rank")
        loop.accumulateSteps = try section.int("accumulate_steps", default: loop.accumulateSteps, min: 1)
        if let perRank = loop.batchSizePerRank, perRank < 1 {
            throw DDPError(.config, "training.batch_size_per_rank: expected an integer ≥ 1, got \(perRank)")
        }
        // Rows are addressed with 32-bit indices, and epochs × steps must stay an Int.
        let rowLimit = Int(Int32.max)
        for (name, value) in [("batch_size", loop.batchSize), ("batch_size_per_rank", loop.batchSizePerRank ?? 1),
                              ("accumulate_steps", loop.accumulateSteps)] where value > rowLimit {
            throw DDPError(.config, "training.\(name): at most \(rowLimit) (samples are addressed with 32-bit indices), got \(value)")
        }
        let global = (loop.batchSizePerRank ?? loop.batchSize).multipliedReportingOverflow(by: loop.accumulateSteps)
        guard !global.overflow, global.partialValue <= rowLimit else {
            throw DDPError(.config, "training.accumulate_steps: \(loop.accumulateSteps) micro-batches of \(loop.batchSizePerRank ?? loop.batchSize) make a step of more than \(rowLimit) samples")
        }
        guard loop.epochs <= 1_000_000_000 else {
            throw DDPError(.config, "training.epochs: at most 1000000000, got \(loop.epochs)")
        }
        loop.shuffle = try section.bool("shuffle", default: loop.shuffle)
        loop.dropLast = try section.bool("drop_last", default: loop.dropLast)
    }

    static func earlyStoppingConfig(_ section: inout ConfigSection, data: DataConfig, loss: Loss) throws -> EarlyStoppingConfig {
        var early = EarlyStoppingConfig()
        early.monitor = try section.string("monitor", default: early.monitor)
        try checkMonitor(early.monitor, key: "early_stopping.monitor", data: data, loss: loss)
        early.minDelta = try section.double("min_delta", default: early.minDelta)
        early.patience = try section.int("patience", default: early.patience, min: 0)
        early.mode = try section.choice("mode", default: early.mode)
        early.baseline = try section.double("baseline")
        early.restoreBestWeights = try section.bool("restore_best_weights", default: early.restoreBestWeights)
        early.startFromEpoch = try section.int("start_from_epoch", default: early.startFromEpoch, min: 0)
        _ = try early.minimizes()
        return early
    }

    static func checkpointConfig(_ section: inout ConfigSection, into checkpoint: inout CheckpointConfig) throws {
        checkpoint.everyEpochs = try section.int("every_epochs", default: checkpoint.everyEpochs, min: 0)
        checkpoint.keep = try section.int("keep", default: checkpoint.keep, min: 1)
    }

    static func distributedConfig(_ section: inout ConfigSection, into distributed: inout DistributedConfig) throws {
        distributed.shardedUpdate = try section.bool("sharded_update", default: distributed.shardedUpdate)
        distributed.sharedMemory = try section.bool("shared_memory", default: distributed.sharedMemory)
        distributed.bucketKilobytes = try section.double("bucket_kb", default: distributed.bucketKilobytes, in: 0...1_048_576)
        distributed.timeoutSeconds = try section.double("timeout_seconds", default: distributed.timeoutSeconds, in: 1...604_800)
        distributed.deterministic = try section.bool("deterministic", default: distributed.deterministic)
        distributed.virtualShards = try section.int("virtual_shards", default: distributed.virtualShards, min: 1)
        guard distributed.virtualShards <= 1024, distributed.virtualShards & (distributed.virtualShards - 1) == 0 else {
            throw DDPError(.config, "\(section.key("virtual_shards")): expected a power of two from 1 to 1024 (the rank counts the deterministic mode covers are its divisors), got \(distributed.virtualShards)")
        }
    }

    static func loggingConfig(_ section: inout ConfigSection, into logging: inout LoggingConfig) throws {
        logging.tensorboard = try section.bool("tensorboard", default: logging.tensorboard)
        logging.progressSeconds = try section.double("progress_seconds", default: logging.progressSeconds, in: 0.1...86_400)
        logging.tensorboardEverySteps = try section.int("tensorboard_every_steps", default: logging.tensorboardEverySteps, min: 0)
        if logging.tensorboardEverySteps > 0 && !logging.tensorboard {
            throw DDPError(.config, "logging.tensorboard_every_steps is \(logging.tensorboardEverySteps) but logging.tensorboard is false; set tensorboard: true or tensorboard_every_steps: 0")
        }
        logging.histograms = try section.bool("histograms", default: logging.histograms)
        if logging.histograms && !logging.tensorboard {
            throw DDPError(.config, "logging.histograms is true but logging.tensorboard is false; histograms go into the TensorBoard event file: set tensorboard: true or histograms: false")
        }
    }

    static func dataSource(_ node: Node, path: String, seed: UInt64) throws -> DataSource {
        var section = try ConfigSection(node, path: path)
        let format = try section.string("format") ?? ""
        let source: DataSource
        switch format {
        case "idx":
            guard let images = try section.string("images") else { throw DDPError(.config, "missing key '\(path).images'") }
            guard let labels = try section.string("labels") else { throw DDPError(.config, "missing key '\(path).labels'") }
            source = .idx(images: images, labels: labels)
        case "csv":
            guard let file = try section.string("path") else { throw DDPError(.config, "missing key '\(path).path'") }
            let header = try section.bool("header", default: true)
            let label: CSVLabel
            if let labelNode = section.node("label"), let index = Int(labelNode.scalar?.string ?? "") {
                label = .index(index)
            } else if let name = try section.string("label") {
                label = .name(name)
            } else {
                label = .index(-1)
            }
            source = .csv(path: file, label: label, header: header)
        case "npy":
            guard let features = try section.string("features") else { throw DDPError(.config, "missing key '\(path).features'") }
            guard let labels = try section.string("labels") else { throw DDPError(.config, "missing key '\(path).labels'") }
            source = .npy(features: features, labels: labels)
        case "moons":
            source = .moons(samples: try section.int("samples", default: 100, min: 2),
                            noise: try section.double("noise", default: 0.25, in: 0...10),
                            seed: UInt64(try section.int("seed", default: Int(truncatingIfNeeded: seed), min: 0)))
        case "circles":
            source = .circles(samples: try section.int("samples", default: 1000, min: 2),
                              radiusSquared: try section.double("radius_squared", default: 5, in: 1e-9...1e9),
                              seed: UInt64(try section.int("seed", default: Int(truncatingIfNeeded: seed), min: 0)))
        default:
            throw DDPError(.config, "\(path).format: '\(format)' is not one of idx, csv, npy, moons, circles")
        }
        try section.finish()
        return source
    }

    static func penalty(_ section: inout ConfigSection, _ name: String) throws -> Penalty? {
        guard var reg = try section.section(name) else { return nil }
        let penalty = Penalty(l1: try reg.float("l1", default: 0, in: 0...1e6), l2: try reg.float("l2", default: 0, in: 0...1e6))
        try reg.finish()
        return penalty
    }

    static func modelConfig(_ section: inout ConfigSection, data: DataConfig) throws -> ModelConfig {
        let initWeights = try section.string("init_weights")
        guard let list = section.node("layers")?.sequence else {
            throw DDPError(.config, "model.layers: expected a list of layers")
        }
        let layers = try list.enumerated().map { try LayerRegistry.parse($1, index: $0) }
        let inputShape = try inputShape(&section, data: data, takesImage: ModelConfig.takesImage(layers))
        let model = ModelConfig(inputShape: inputShape, layers: layers, initWeights: initWeights)
        _ = try model.shapes()
        return model
    }

    /// `model.inputs`: an integer (flat features), a list [height, width, channels], or omitted
    /// when the data says: `data.image_shape`, or the IDX training file's header. With layers
    /// that take images first, an integer input must match the data's image.
    static func inputShape(_ section: inout ConfigSection, data: DataConfig, takesImage: Bool) throws -> FeatureShape {
        let declaredImage = section.node("inputs")?.sequence != nil ? try ImageShape.parse(&section, "inputs") : nil
        let declaredCount = declaredImage == nil ? try section.int("inputs") : nil
        if let declaredCount, declaredCount < 1 {
            throw DDPError(.config, "model.inputs must be a positive integer, got \(declaredCount)")
        }
        var dataImage = data.imageShape
        if dataImage == nil, declaredImage == nil, takesImage || declaredCount == nil, case let .idx(images, _) = data.train {
            dataImage = try IDXFile.imageShape(images)
        }
        if let declaredImage, let dataImage, declaredImage != dataImage {
            throw DDPError(.config, "model.inputs is \(declaredImage) but data.image_shape is \(dataImage)")
        }
        if let shape = data.imageShape, let declaredCount, shape.featureCount != declaredCount {
            throw DDPError(.config, "data.image_shape \(shape) holds \(shape.featureCount) values per sample but model.inputs is \(declaredCount)")
        }
        if let image = declaredImage ?? dataImage, takesImage {
            if let declaredCount, declaredCount != image.featureCount {
                throw DDPError(.config, "model.inputs is \(declaredCount) but the data's images \(image) hold \(image.featureCount) values")
            }
            return .image(image)
        }
        if takesImage {
            throw DDPError(.config, "model.layers: the first layers take images, but the data has no image shape: "
                           + "set model.inputs: [height, width, channels] or data.image_shape")
        }
        guard let count = declaredCount ?? (declaredImage ?? dataImage)?.featureCount else {
            throw DDPError(.config, "missing key 'model.inputs' (the data has no image shape to take it from)")
        }
        return .features(count)
    }

    static func lossConfig(_ node: Node?, model: ModelConfig) throws -> (Loss, ClassWeight?) {
        guard let node else { return (.crossEntropy, nil) }
        var name: String
        var fromLogits = true
        var labelSmoothing: Double?
        var classWeight: ClassWeight?
        if let scalar = node.scalar {
            name = scalar.string
        } else {
            var section = try ConfigSection(node, path: "loss")
            name = try section.string("type", default: "cross_entropy")
            fromLogits = try section.bool("from_logits", default: true)
            labelSmoothing = try section.double("label_smoothing")
            classWeight = try classWeightConfig(&section)
            try section.finish()
        }
        let loss = try lossKind(name, fromLogits: fromLogits, labelSmoothing: labelSmoothing)
        if let classWeight {
            guard let classes = loss.weightedClasses(width: model.outputWidth) else {
                throw DDPError(.config, "loss.class_weight: mse has no classes to weight; class_weight applies to cross_entropy and binary_crossentropy")
            }
            if case let .given(weights) = classWeight, let beyond = weights.keys.first(where: { $0 >= classes }) {
                throw DDPError(.config, "loss.class_weight: class \(beyond) does not exist: the model has \(classes) classes (0 to \(classes - 1))")
            }
        }
        return (loss, classWeight)
    }

    /// `metrics: [accuracy, precision, recall, f1, {top_k_accuracy: 5}]` (Keras's names; accuracy
    /// is always reported where the loss has one).
    static func metricsConfig(_ node: Node?, loss: Loss, model: ModelConfig) throws -> ValidationMetrics {
        ConfigKeyRecorder.current?.note("metrics", type: "list of accuracy, precision, recall, f1, {top_k_accuracy: k}", default: "[accuracy]")
        guard let node else { return ValidationMetrics() }
        guard let items = node.sequence else {
            throw DDPError(.config, "metrics: expected a list such as [accuracy, f1, {top_k_accuracy: 5}], got '\(ConfigSection.describe(node))'")
        }
        var metrics = ValidationMetrics()
        for (index, item) in items.enumerated() {
            let key = "metrics[\(index)]"
            if let name = item.scalar?.string {
                switch name {
                case "accuracy": continue
                case "precision": metrics.precision = true
                case "recall": metrics.recall = true
                case "f1": metrics.f1 = true
                case "top_k_accuracy": metrics.topK = 5
                default: throw DDPError(.config, "\(key): '\(name)' is not one of accuracy, precision, recall, f1, top_k_accuracy")
                }
            } else if let mapping = item.mapping, mapping.count == 1, let (nameNode, valueNode) = mapping.first,
                      nameNode.scalar?.string == "top_k_accuracy" {
                guard let k = Int(valueNode.scalar?.string ?? ""), k >= 1 else {
                    throw DDPError(.config, "\(key).top_k_accuracy: expected an integer k ≥ 1, got '\(ConfigSection.describe(valueNode))'")
                }
                metrics.topK = k
            } else {
                throw DDPError(.config, "\(key): expected a metric name or {top_k_accuracy: k}, got '\(ConfigSection.describe(item))'")
            }
        }
        if metrics.precision || metrics.recall || metrics.f1 {
            guard let classes = loss.confusionClasses(width: model.outputWidth) else {
                throw DDPError(.config, "metrics: precision, recall and f1 need a classifier (cross_entropy, or binary_crossentropy with one output); the loss is \(loss.name)")
            }
            guard classes <= Evaluator.maximumConfusionClasses else {
                throw DDPError(.config, "metrics: precision, recall and f1 count a classes × classes confusion matrix; the model has \(classes) classes, at most \(Evaluator.maximumConfusionClasses) are supported")
            }
        }
        if let k = metrics.topK {
            guard loss.isCategorical else {
                throw DDPError(.config, "metrics: top_k_accuracy ranks the logits of cross_entropy; the loss is \(loss.name)")
            }
            guard k <= model.outputWidth else {
                throw DDPError(.config, "metrics: top_k_accuracy with k = \(k) exceeds the model's \(model.outputWidth) classes")
            }
        }
        return metrics
    }

    /// `loss.class_weight`: `balanced`, or a mapping from class index to a weight ≥ 0 (not all 0).
    static func classWeightConfig(_ section: inout ConfigSection) throws -> ClassWeight? {
        ConfigKeyRecorder.current?.note(section.key("class_weight"), type: "balanced, or {class: weight}")
        guard let node = section.node("class_weight") else { return nil }
        let key = section.key("class_weight")
        if let text = node.scalar?.string {
            guard text == "balanced" else {
                throw DDPError(.config, "\(key): expected balanced or a mapping such as {0: 1.0, 3: 4.0}, got '\(text)'")
            }
            return .balanced
        }
        guard let mapping = node.mapping else {
            throw DDPError(.config, "\(key): expected balanced or a mapping such as {0: 1.0, 3: 4.0}, got '\(ConfigSection.describe(node))'")
        }
        var weights: [Int: Float] = [:]
        for (classNode, valueNode) in mapping {
            guard let text = classNode.scalar?.string, let index = Int(text), index >= 0 else {
                throw DDPError(.config, "\(key): '\(ConfigSection.describe(classNode))' is not a class index (an integer ≥ 0)")
            }
            guard let value = Double(valueNode.scalar?.string ?? ""), value.isFinite, value >= 0, value <= 1e6 else {
                throw DDPError(.config, "\(key).\(index): expected a weight in [0, 1e6], got '\(ConfigSection.describe(valueNode))'")
            }
            guard weights[index] == nil else { throw DDPError(.config, "\(key): class \(index) is given twice") }
            weights[index] = Float(value)
        }
        return .given(weights)
    }

    static func lossKind(_ name: String, fromLogits: Bool, labelSmoothing: Double?) throws -> Loss {
        let smoothing = Float(labelSmoothing ?? 0)
        if let labelSmoothing, !(0..<1).contains(labelSmoothing) {
            throw DDPError(.config, "loss.label_smoothing: expected a number in [0, 1), got \(labelSmoothing)")
        }
        switch name {
        case "cross_entropy", "sparse_categorical_crossentropy": return .crossEntropy(labelSmoothing: smoothing)
        case "binary_crossentropy", "binary_cross_entropy": return .binaryCrossEntropy(fromLogits: fromLogits, labelSmoothing: smoothing)
        case "mse", "mean_squared_error":
            if labelSmoothing != nil {
                throw DDPError(.config, "loss.label_smoothing: mse has no classes to smooth; label_smoothing applies to cross_entropy and binary_crossentropy")
            }
            return .meanSquaredError
        default: throw DDPError(.config, "loss: '\(name)' is not one of cross_entropy, binary_crossentropy, mse")
        }
    }

    static func optimizerConfig(_ section: inout ConfigSection) throws -> OptimizerConfig {
        let kind = try section.choice("type", default: OptimizerConfig.Kind.adam)
        let defaultRate: Float = switch kind {
        case .sgd, .rmsprop: 0.01
        case .lars: 0.1
        case .adam, .adamw, .lamb: 0.001
        }
        var config = OptimizerConfig(kind: kind, learningRate: try section.float("lr", default: defaultRate, in: 0...1e3))
        config.weightDecay = try section.float("weight_decay", default: kind == .adamw ? 0.01 : 0, in: 0...1e3)
        config.decay = try section.choice("decay", default: config.decay)
        // Each type reads its own keys only, so a key another type takes (SGD's momentum on
        // Adam, say) is an unknown key here, not a value silently ignored.
        if kind == .sgd || kind == .rmsprop || kind == .lars {
            config.momentum = try section.float("momentum", default: config.momentum, in: 0...1)
        }
        if kind == .lars {
            config.trustCoefficient = try section.float("trust_coefficient", default: config.trustCoefficient, in: 0...1e3)
            config.adapt = try section.choice("adapt", default: config.adapt)
        }
        if kind == .sgd {
            config.dampening = try section.float("dampening", default: config.dampening, in: 0...1)
            config.nesterov = try section.bool("nesterov", default: config.nesterov)
        }
        if kind == .adam || kind == .adamw || kind == .lamb {
            config.beta1 = try section.float("beta1", default: config.beta1, in: 0...0.999_999)
            config.beta2 = try section.float("beta2", default: config.beta2, in: 0...0.999_999_9)
        }
        if kind != .sgd {
            config.epsilon = try section.float("epsilon", default: config.epsilon, in: 0...1)
        }
        if kind == .rmsprop {
            config.alpha = try section.float("alpha", default: config.alpha, in: 0...1)
            config.centered = try section.bool("centered", default: config.centered)
            if config.centered && config.momentum > 0 {
                throw DDPError(.config, "optimizer.centered: RMSprop centered with momentum keeps three buffers per parameter; ddp keeps two: use centered: true or momentum > 0, not both")
            }
        }
        config.scaleLR = try section.choice("scale_lr", default: config.scaleLR)
        config.baseBatch = try section.int("base_batch", default: config.baseBatch, min: 1)
        if let clip = try section.double("clip_norm") {
            guard clip > 0 else { throw DDPError(.config, "optimizer.clip_norm: expected a positive number, got \(clip)") }
            config.clipNorm = Float(clip)
        }
        if config.nesterov && (config.momentum == 0 || config.dampening != 0) {
            throw DDPError(.config, "optimizer.nesterov needs momentum > 0 and dampening 0 (as torch.optim.SGD)")
        }
        return config
    }

    static func scheduleConfig(_ section: inout ConfigSection, epochs: Int) throws -> LearningRateSchedule {
        let type = try section.string("type", default: "constant")
        var schedule = LearningRateSchedule()
        schedule.warmupSteps = try section.int("warmup_steps", default: 0, min: 0)
        schedule.warmupEpochs = try section.int("warmup_epochs", default: 0, min: 0)
        schedule.warmupStartFactor = try section.float("warmup_start_factor", default: 0, in: 0...1)
        if schedule.warmupSteps > 0 && schedule.warmupEpochs > 0 {
            throw DDPError(.config, "schedule.warmup_epochs: give the warmup's length once, as warmup_steps (\(schedule.warmupSteps)) or warmup_epochs (\(schedule.warmupEpochs))")
        }
        if schedule.warmupEpochs >= epochs {
            throw DDPError(.config, "schedule.warmup_epochs: a warmup of \(schedule.warmupEpochs) epoch(s) leaves nothing of training.epochs \(epochs) to the schedule; expected fewer")
        }
        // torch asks γ > 0 of StepLR and its kin; above 1 the lr would grow.
        let gamma = { (section: inout ConfigSection, fallback: Float) throws -> Float in
            let value = try section.float("gamma", default: fallback, in: 0...1)
            guard value > 0 else { throw DDPError(.config, "schedule.gamma: expected a number in (0, 1], got \(value)") }
            return value
        }
        switch type {
        case "constant": schedule.kind = .constant
        case "warmup":
            guard schedule.warmupSteps > 0 || schedule.warmupEpochs > 0 else {
                throw DDPError(.config, "schedule.warmup_steps: expected an integer ≥ 1 for type warmup (or warmup_epochs)")
            }
            schedule.kind = .constant
        case "step":
            schedule.kind = .step(stepSize: try section.int("step_size", default: 10, min: 1), gamma: try gamma(&section, 0.1))
        case "multistep":
            schedule.kind = .multistep(milestones: try milestones(&section), gamma: try gamma(&section, 0.1))
        case "exponential":
            guard section.node("gamma") != nil else { throw DDPError(.config, "missing key 'schedule.gamma'") }
            schedule.kind = .exponential(gamma: try gamma(&section, 1))
        case "cosine":
            schedule.kind = .cosine(tMax: try section.int("t_max", default: epochs, min: 1),
                                    minimum: try section.float("eta_min", default: 0, in: 0...1e3))
        case "one_cycle":
            guard schedule.warmupSteps == 0 && schedule.warmupEpochs == 0 else {
                throw DDPError(.config, "schedule.warmup_steps: one_cycle warms up by itself (pct_start); drop the warmup")
            }
            var cycle = LearningRateSchedule.OneCycle(epochs: epochs)
            ConfigKeyRecorder.current?.note(section.key("max_lr"), type: "number in (0, 1000]", default: "optimizer.lr")
            cycle.maxLR = section.node("max_lr") == nil ? nil : try section.float("max_lr", default: 0, in: 1e-12...1e3)
            cycle.pctStart = try section.double("pct_start", default: cycle.pctStart, in: 0...1)
            cycle.divFactor = try section.double("div_factor", default: cycle.divFactor, in: 1e-12...1e12)
            cycle.finalDivFactor = try section.double("final_div_factor", default: cycle.finalDivFactor, in: 1e-12...1e12)
            cycle.cycleMomentum = try section.bool("cycle_momentum", default: cycle.cycleMomentum)
            cycle.baseMomentum = try section.double("base_momentum", default: cycle.baseMomentum, in: 0...1)
            cycle.maxMomentum = try section.double("max_momentum", default: cycle.maxMomentum, in: 0...1)
            guard cycle.pctStart > 0 && cycle.pctStart < 1 else {
                throw DDPError(.config, "schedule.pct_start: expected a number in (0, 1), got \(cycle.pctStart)")
            }
            schedule.kind = .oneCycle(cycle)
        case "reduce_on_plateau":
            var plateau = ReduceLROnPlateauConfig()
            plateau.monitor = try section.string("monitor", default: plateau.monitor)
            plateau.factor = try section.double("factor", default: plateau.factor)
            guard plateau.factor < 1 else {
                throw DDPError(.config, "schedule.factor: reduce_on_plateau does not support a factor ≥ 1 (Keras refuses it too), got \(plateau.factor)")
            }
            guard plateau.factor >= 0 else {
                throw DDPError(.config, "schedule.factor: expected a number in [0, 1), got \(plateau.factor)")
            }
            plateau.patience = try section.int("patience", default: plateau.patience, min: 0)
            plateau.mode = try section.choice("mode", default: plateau.mode)
            plateau.minDelta = try section.double("min_delta", default: plateau.minDelta)
            plateau.cooldown = try section.int("cooldown", default: plateau.cooldown, min: 0)
            plateau.minLearningRate = try section.double("min_lr", default: plateau.minLearningRate)
            for (key, value) in [("min_delta", plateau.minDelta), ("min_lr", plateau.minLearningRate)] where value < 0 {
                throw DDPError(.config, "schedule.\(key): expected a number ≥ 0, got \(value)")
            }
            schedule.kind = .reduceOnPlateau(plateau)
        default:
            throw DDPError(.config, "schedule.type: '\(type)' is not one of constant, warmup, step, multistep, exponential, cosine, one_cycle, reduce_on_plateau")
        }
        return schedule
    }

    /// multistep's `milestones`: epochs (of the schedule, from 0) at which the lr is multiplied
    /// by γ, strictly increasing as each counts once; one integer is a list of one.
    static func milestones(_ section: inout ConfigSection) throws -> [Int] {
        ConfigKeyRecorder.current?.note(section.key("milestones"), type: "list of integers ≥ 1, increasing")
        let key = section.key("milestones")
        guard let node = section.node("milestones") else { throw DDPError(.config, "missing key '\(key)'") }
        let items = node.sequence ?? [node]
        var values: [Int] = []
        for item in items {
            guard let value = Int(item.scalar?.string ?? ""), value >= 1 else {
                throw DDPError(.config, "\(key): expected a list of epochs ≥ 1 such as [30, 60], got '\(ConfigSection.describe(node))'")
            }
            if let last = values.last, value <= last {
                throw DDPError(.config, "\(key): milestones must increase, got \(value) after \(last)")
            }
            values.append(value)
        }
        guard !values.isEmpty else { throw DDPError(.config, "\(key): expected at least one epoch, got an empty list") }
        return values
    }

    /// A monitor (early_stopping's or reduce_on_plateau's) must name an epoch figure this config produces.
    static func checkMonitor(_ monitor: String, key: String, data: DataConfig, loss: Loss) throws {
        guard ["loss", "accuracy", "val_loss", "val_accuracy"].contains(monitor) else {
            throw DDPError(.config, "\(key): '\(monitor)' is not one of loss, accuracy, val_loss, val_accuracy")
        }
        if monitor.hasPrefix("val_") && data.validation == nil && data.validationSplit == 0 {
            throw DDPError(.config, "\(key) is \(monitor) but there is no validation data; set data.validation or data.validation_split")
        }
        if monitor.hasSuffix("accuracy") && !loss.hasAccuracy {
            throw DDPError(.config, "\(key) is \(monitor) but loss mse has no accuracy")
        }
    }
}
