/// `type: global_average_pooling2d`: Keras GlobalAveragePooling2D (torch's
/// nn.AdaptiveAvgPool2d(1) followed by a flatten): image (H, W, C) → features (C), each the
/// mean of its channel over all H·W pixels. Backward spreads dy / (H·W) over them.
///
/// It is average pooling with one window over the whole image (`PoolGeometry.whole`): the
/// same loops, eight channels at a time, and its output row (1, 1, C) is already the C
/// features.
public struct GlobalAveragePooling2DSpec: ParsableLayerSpec, Equatable {
    static let typeName = "global_average_pooling2d"

    public init() {}

    static func parse(_ entry: inout ConfigSection) throws -> GlobalAveragePooling2DSpec { GlobalAveragePooling2DSpec() }

    public var inputKind: LayerInputKind { .image }

    public func outputShape(input: FeatureShape) throws -> FeatureShape {
        .features(try input.requiredImage(by: Self.typeName).channels)
    }

    public func parameterCount(input: FeatureShape) -> Int { 0 }

    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        [AveragePooling2D(configIndex: configIndex, geometry: .whole(input.image!), displayName: "GlobalAveragePooling2D")]
    }
}
