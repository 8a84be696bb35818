import Yams

/// One layer kind as a config entry describes it, already validated: what it builds and what
/// shape comes out. Each kind lives in one file beside its layer (`DenseSpec` in Dense.swift, …)
/// and is listed once in `LayerRegistry.kinds`; adding a kind is that file and that line.
public protocol LayerSpec: Sendable {
    /// Output features for `inputWidth` input features.
    func outputWidth(inputWidth: Int) -> Int
    /// Floats of the parameters it creates for `inputWidth` input features (0: nothing to train
    /// or freeze).
    func parameterCount(inputWidth: Int) -> Int
    /// The layers that compute it, in order: a dense layer with an activation is two.
    /// `frozen`: the config's `trainable: false`.
    func makeLayers(configIndex: Int, inputWidth: Int, frozen: Bool) -> [Layer]
    /// The key, within the layer's entry, whose value sets its size (a dense layer's `units`):
    /// the memory check names it when the model does not fit.
    var sizeKey: String? { get }
    func isEqual(to other: any LayerSpec) -> Bool
}

extension LayerSpec {
    public var sizeKey: String? { nil }
}

extension LayerSpec where Self: Equatable {
    public func isEqual(to other: any LayerSpec) -> Bool { (other as? Self) == self }
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
        Kind(GaussianNoiseSpec.self),
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
        if trainableKey && spec.parameterCount(inputWidth: 1) == 0 {
            throw DDPError(.config, "\(path).trainable: a \(type) layer has no parameters to train or freeze")
        }
        let activity = try TrainingConfig.penalty(&entry, "activity_regularizer")
        try entry.finish()
        return LayerConfig(spec, activityRegularizer: activity, trainable: trainable)
    }
}
