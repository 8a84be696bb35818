/// Keras's Flatten (torch's nn.Flatten): image (H, W, C) → features (H·W·C). A row is already
/// flat and channels-last, so forward and backward copy it unchanged; what changes is the
/// shape: the features remember the image they came from (`FeatureShape.flattenedImage`), so
/// the dense layer that reads them exports its kernel in torch's (C, H, W) flatten order
/// (`ExportLayout.denseAfterFlatten`) while computing in (H, W, C) order.
public final class Flatten: Layer {
    public let configIndex: Int
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public var displayName: String { "Flatten" }

    public init(configIndex: Int, width: Int) {
        self.configIndex = configIndex
        inputWidth = width
    }

    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        output.update(from: input, count: batch * inputWidth)
    }

    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        dx?.update(from: dy, count: batch * inputWidth)
    }
}

/// `type: flatten`.
public struct FlattenSpec: ParsableLayerSpec, Equatable {
    static let typeName = "flatten"

    public init() {}

    static func parse(_ entry: inout ConfigSection) throws -> FlattenSpec { FlattenSpec() }

    public var inputKind: LayerInputKind { .image }

    /// Flat features in, flat features out would be a silent no-op that still claims the
    /// (H, W, C) order a dense kernel's export depends on: refused, as a misplaced layer.
    public func outputShape(input: FeatureShape) throws -> FeatureShape {
        guard let image = input.image else {
            throw DDPError(.config, "gets the features \(input), which are flat already: flatten takes an image (H, W, C) "
                           + "and has nothing to flatten here; remove it, or move it to where the rows are still images")
        }
        return .features(image.featureCount, flattenedFrom: image)
    }

    public func parameterCount(input: FeatureShape) -> Int { 0 }

    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        [Flatten(configIndex: configIndex, width: input.count)]
    }
}
