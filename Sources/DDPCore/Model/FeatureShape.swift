/// The shape of one sample as a layer sees it, without the batch dimension: an image
/// (height, width, channels), stored channels-last as Keras's default (element
/// (y·width + x)·channels + c), or a flat vector of features. Layers still read and write one
/// flat row per sample; the shape says how that row is laid out, so a convolution knows its
/// pixels and a dense layer refuses an image it would silently read as a vector.
public struct FeatureShape: Sendable, Equatable, CustomStringConvertible {
    /// Set for an image; nil for flat features.
    public var image: ImageShape?
    /// Values per sample.
    public var count: Int
    /// For flat features that a `flatten` made from an image (and the shape-keeping layers after
    /// it passed on): that image. Its features follow the image's (H, W, C) order, while torch's
    /// nn.Flatten after NCHW activations gives (C, H, W): the export layout of the dense kernel
    /// that reads them.
    public var flattenedImage: ImageShape?

    public static func features(_ count: Int, flattenedFrom image: ImageShape? = nil) -> FeatureShape {
        FeatureShape(image: nil, count: count, flattenedImage: image)
    }

    public static func image(_ shape: ImageShape) -> FeatureShape {
        FeatureShape(image: shape, count: shape.featureCount, flattenedImage: nil)
    }

    /// Keras's output shape: "(None, 28, 28, 32)" or "(None, 128)".
    public var description: String {
        guard let image else { return "(None, \(count))" }
        return "(None, \(image.height), \(image.width), \(image.channels))"
    }
}
