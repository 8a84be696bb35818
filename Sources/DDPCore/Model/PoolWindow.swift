/// The windows a 2-D pooling layer slides over an image: Keras's `pool_size`, `strides` and
/// `padding` (MaxPooling2D, AveragePooling2D; torch's kernel_size and stride). The max and the
/// average pooling layers share it, and a global pool is the window that covers the whole image.
public struct PoolWindow: Sendable, Equatable {
    /// Keras's `padding`. `valid`: windows only where they fit, out = ⌊(n − k)/s⌋ + 1.
    /// `same` (TensorFlow's rule): out = ⌈n/s⌉, padded by max((out − 1)·s + k − n, 0) in all,
    /// half of it (rounded down) at the top/left and the odd pixel at the bottom/right. A padded
    /// pixel never enters a max or an average (see `PoolGeometry`).
    public enum Padding: String, Sendable, CaseIterable {
        case valid, same
    }

    public var height: Int
    public var width: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var padding: Padding

    /// Strides default to the pool size, as Keras's `strides=None`.
    public init(height: Int, width: Int, strideHeight: Int? = nil, strideWidth: Int? = nil, padding: Padding = .valid) {
        self.height = height
        self.width = width
        self.strideHeight = strideHeight ?? height
        self.strideWidth = strideWidth ?? width
        self.padding = padding
    }

    /// `pool_size` (default 2), `strides` (default the pool size), `padding` (default valid).
    static func parse(_ entry: inout ConfigSection) throws -> PoolWindow {
        let pool = try sizePair(&entry, "pool_size", default: "2") ?? (2, 2)
        let strides = try sizePair(&entry, "strides", default: "pool_size") ?? pool
        return PoolWindow(height: pool.0, width: pool.1, strideHeight: strides.0, strideWidth: strides.1,
                          padding: try entry.choice("padding", default: Padding.valid))
    }

    /// An integer n (for n × n) or a list [height, width], each at least 1 and at most an image's
    /// largest extent (so the geometry's products stay far from Int's range).
    private static func sizePair(_ entry: inout ConfigSection, _ name: String, default fallback: String) throws -> (Int, Int)? {
        ConfigKeyRecorder.current?.note(entry.key(name), type: "integer ≥ 1, or list [height, width]", default: fallback)
        guard let node = entry.node(name) else { return nil }
        let items = node.sequence.map(Array.init) ?? [node]
        let values = items.compactMap { Int($0.scalar?.string.replacingOccurrences(of: "_", with: "") ?? "") }
        guard items.count == (node.sequence == nil ? 1 : 2), values.count == items.count,
              values.allSatisfy({ (1...ImageShape.maximumFeatures).contains($0) }) else {
            throw DDPError(.config, "\(entry.key(name)): expected an integer ≥ 1 or a list [height, width] of them, "
                           + "got '\(ConfigSection.describe(node))'")
        }
        return (values[0], values.last!)
    }

    /// "3×3", Keras's pool_size as the messages name it.
    var sizeText: String { "\(height)×\(width)" }

    /// Where the windows fall on `image`, or the error when a `valid` window does not fit.
    func geometry(on image: ImageShape) throws -> PoolGeometry {
        func extent(_ n: Int, _ k: Int, _ s: Int) -> (out: Int, before: Int) {
            switch padding {
            case .valid: return ((n - k) / s + 1, 0)
            case .same:
                let out = (n + s - 1) / s
                return (out, max((out - 1) * s + k - n, 0) / 2)
            }
        }
        if padding == .valid && (height > image.height || width > image.width) {
            throw DDPError(.config, "pool \(sizeText) does not fit the input \(FeatureShape.image(image)) with padding: valid "
                           + "(use a smaller pool_size, or padding: same)")
        }
        let rows = extent(image.height, height, strideHeight), columns = extent(image.width, width, strideWidth)
        return PoolGeometry(input: image, outputHeight: rows.out, outputWidth: columns.out, poolHeight: height, poolWidth: width,
                            strideHeight: strideHeight, strideWidth: strideWidth, padTop: rows.before, padLeft: columns.before)
    }
}

/// A pool window's placement on one input image (H, W, C), channels-last: output pixel
/// (oy, ox) pools the input rows `rows(oy)` and columns `columns(ox)`, its window clipped to
/// the image. Clipping is how a padded pixel never counts: with `same` padding every window
/// still holds at least one real pixel (the total padding is less than the pool), so a max
/// needs no −∞ and an average divides by the real pixels (Keras; torch's
/// count_include_pad=False).
public struct PoolGeometry: Sendable, Equatable {
    public let input: ImageShape
    public let outputHeight: Int
    public let outputWidth: Int
    public let poolHeight: Int
    public let poolWidth: Int
    public let strideHeight: Int
    public let strideWidth: Int
    public let padTop: Int
    public let padLeft: Int

    /// The window that covers the whole image once: a global pool.
    public static func whole(_ image: ImageShape) -> PoolGeometry {
        PoolGeometry(input: image, outputHeight: 1, outputWidth: 1, poolHeight: image.height, poolWidth: image.width,
                     strideHeight: image.height, strideWidth: image.width, padTop: 0, padLeft: 0)
    }

    public var output: ImageShape { ImageShape(height: outputHeight, width: outputWidth, channels: input.channels) }
    public var outputPixels: Int { outputHeight * outputWidth }

    @inline(__always) public func rows(_ oy: Int) -> Range<Int> {
        let start = oy * strideHeight - padTop
        return max(start, 0)..<min(start + poolHeight, input.height)
    }

    @inline(__always) public func columns(_ ox: Int) -> Range<Int> {
        let start = ox * strideWidth - padLeft
        return max(start, 0)..<min(start + poolWidth, input.width)
    }
}

extension FeatureShape {
    /// The image an image-only layer kind (`kind`: its config type) needs, or the error that
    /// says where such a layer goes; `otherwise` adds what to use on flat features instead.
    func requiredImage(by kind: String, otherwise: String? = nil) throws -> ImageShape {
        if let image { return image }
        throw DDPError(.config, "gets the features \(self); \(kind) takes an image (H, W, C): put it where the rows are still "
                       + "images (model.inputs: [height, width, channels], before any flatten, global pooling or dense layer)"
                       + (otherwise.map { "; \($0)" } ?? ""))
    }
}

/// Stores eight Int32 at an unaligned address (max pooling's argmax indices), beside `store8`.
@inline(__always) func storeInt8(_ value: SIMD8<Int32>, _ p: UnsafeMutablePointer<Int32>) {
    UnsafeMutableRawPointer(p).storeBytes(of: value, as: SIMD8<Int32>.self)
}

/// A pooling kind configured by its window alone (max and average pooling): parsed, shaped and
/// counted alike.
protocol WindowPoolingSpec: ParsableLayerSpec {
    var window: PoolWindow { get }
    init(window: PoolWindow)
}

extension WindowPoolingSpec {
    static func parse(_ entry: inout ConfigSection) throws -> Self { Self(window: try PoolWindow.parse(&entry)) }
    public var inputKind: LayerInputKind { .image }
    public func outputShape(input: FeatureShape) throws -> FeatureShape {
        .image(try window.geometry(on: input.requiredImage(by: Self.typeName)).output)
    }
    public func parameterCount(input: FeatureShape) -> Int { 0 }
}
