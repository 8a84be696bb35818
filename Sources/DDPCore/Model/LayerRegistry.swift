import Yams

/// One layer kind as a config entry describes it, already validated: what it builds and what
/// shape comes out. Each kind lives in one file beside its layer (`DenseSpec` in Dense.swift, …)
/// and is listed once in `LayerRegistry.kinds`; adding a kind is that file and that line.
public protocol LayerSpec: Sendable {
    /// The shape of one output sample for `input`, or an error saying what this kind needs
    /// instead (a dense layer on an image, a kernel larger than its padded input): the message
    /// starts after the layer's name, which `ModelConfig.shapes()` puts in front.
    func outputShape(input: FeatureShape) throws -> FeatureShape
    /// Floats of the parameters it creates for `input` (0: nothing to train or freeze).
    /// Saturates at Int.max, so the memory check can name an absurd size instead of trapping.
    func parameterCount(input: FeatureShape) -> Int
    /// The layers that compute it, in order: a dense layer with an activation is two. `input`
    /// is a shape `outputShape(input:)` accepted. `frozen`: the config's `trainable: false`.
    func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer]
    /// Floats of per-batch workspace for each sample, beyond its layers' outputs (a
    /// convolution's unfolded patches): the memory check and `ddp summary` count it.
    func workspacePerSample(input: FeatureShape) -> Int
    /// The key, within the layer's entry, whose value sets its size (a dense layer's `units`):
    /// the memory check names it when the model does not fit.
    var sizeKey: String? { get }
    /// Whether it creates parameters at all (`trainable` applies to it).
    var hasParameters: Bool { get }
    /// What it takes: images, flat features, or either (keeping the shape).
    var inputKind: LayerInputKind { get }
    /// Its `type` in the config, for messages.
    var kindName: String { get }
    func isEqual(to other: any LayerSpec) -> Bool
}

extension LayerSpec {
    public var sizeKey: String? { nil }
    public var hasParameters: Bool { false }
    public var inputKind: LayerInputKind { .either }
    public func workspacePerSample(input: FeatureShape) -> Int { 0 }
}

/// `a · b · …`, saturating at Int.max (parameter counts of absurd configs).
func saturatingProduct(_ values: Int...) -> Int {
    var total = 1
    for value in values {
        let (product, overflow) = total.multipliedReportingOverflow(by: value)
        if overflow { return .max }
        total = product
    }
    return total
}

/// `a + b`, saturating at Int.max.
func saturatingSum(_ a: Int, _ b: Int) -> Int {
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? .max : sum
}

extension ParsableLayerSpec {
    public var kindName: String { Self.typeName }
}

extension LayerSpec where Self: Equatable {
    public func isEqual(to other: any LayerSpec) -> Bool { (other as? Self) == self }
}

/// What a layer kind takes.
public enum LayerInputKind: Sendable {
    case image, features, either
    /// nil for `either`.
    var takesImage: Bool? {
        switch self {
        case .image: return true
        case .features: return false
        case .either: return nil
        }
    }
}

/// A kind the config parser knows by its `type` name.
protocol ParsableLayerSpec: LayerSpec {
    static var typeName: String { get }
    /// Reads the kind's own keys from its entry. The registry reads the keys every entry may
    /// have (`type`, `trainable`, `activity_regularizer`) and rejects the rest after.
    static func parse(_ entry: inout ConfigSection) throws -> Self
}

/// Every layer kind the config accepts, in the order error messages list them.
enum LayerRegistry {
    static let kinds: [Kind] = [
        Kind(DenseSpec.self), Kind(BatchNormSpec.self), Kind(DropoutSpec.self), Kind(ActivationSpec.self),
        Kind(GaussianNoiseSpec.self), Kind(Conv2DSpec.self),
        Kind(MaxPooling2DSpec.self), Kind(AveragePooling2DSpec.self),
        Kind(GlobalAveragePooling2DSpec.self), Kind(GlobalMaxPooling2DSpec.self),
        Kind(FlattenSpec.self), Kind(SpatialDropout2DSpec.self),
    ]

    /// A kind's name and parser. (A list of `any ParsableLayerSpec.Type` would do, but calling
    /// through the existential metatype crashes Swift 6.3.1's SIL generation.)
    struct Kind: Sendable {
        let typeName: String
        let parse: @Sendable (inout ConfigSection) throws -> any LayerSpec
        init<Spec: ParsableLayerSpec>(_ spec: Spec.Type) {
            typeName = Spec.typeName
            parse = { try Spec.parse(&$0) }
        }
    }

    /// `model.layers[index]`.
    static func parse(_ node: Node, index: Int) throws -> LayerConfig {
        let path = "model.layers[\(index)]"
        var entry = try ConfigSection(node, path: path)
        let type = try entry.string("type") ?? ""
        guard let kind = kinds.first(where: { $0.typeName == type }) else {
            throw DDPError(.config, "\(path).type: '\(type)' is not one of \(kinds.map(\.typeName).joined(separator: ", "))")
        }
        let spec = try kind.parse(&entry)
        let trainableKey = entry.node("trainable") != nil
        let trainable = try entry.bool("trainable", default: true)
        if trainableKey && !spec.hasParameters {
            throw DDPError(.config, "\(path).trainable: a \(type) layer has no parameters to train or freeze")
        }
        let activity = try TrainingConfig.penalty(&entry, "activity_regularizer")
        try entry.finish()
        return LayerConfig(spec, activityRegularizer: activity, trainable: trainable)
    }
}
