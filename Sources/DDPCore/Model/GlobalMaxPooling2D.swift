/// `type: global_max_pooling2d`: Keras GlobalMaxPooling2D (torch's nn.AdaptiveMaxPool2d(1)
/// followed by a flatten): image (H, W, C) → features (C), each the largest value of its
/// channel over all H·W pixels. Backward routes dy to that pixel; a tie goes to the first in
/// row-major order, as torch's adaptive max pool (TensorFlow's reduce_max would split it
/// among the tied pixels: with real-valued activations ties are rare).
///
/// It is max pooling with one window over the whole image (`PoolGeometry.whole`): the same
/// register scan, eight channels at a time, and its output row (1, 1, C) is already the C
/// features.
public struct GlobalMaxPooling2DSpec: ParsableLayerSpec, Equatable {
    static let typeName = "global_max_pooling2d"

    public init() {}

    static func parse(_ entry: inout ConfigSection) throws -> GlobalMaxPooling2DSpec { GlobalMaxPooling2DSpec() }

    public var inputKind: LayerInputKind { .image }

    public func outputShape(input: FeatureShape) throws -> FeatureShape {
        .features(try input.requiredImage(by: Self.typeName).channels)
    }

    public func parameterCount(input: FeatureShape) -> Int { 0 }

    /// The argmax indices: one Int32 (a float's size) per channel.
    public func workspacePerSample(input: FeatureShape) -> Int { input.image?.channels ?? 0 }

    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        [MaxPooling2D(configIndex: configIndex, geometry: .whole(input.image!), displayName: "GlobalMaxPooling2D")]
    }
}
