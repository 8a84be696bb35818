import Yams
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// `data.augment`: random transforms of training samples, applied in order to each row the
/// trainer has just gathered (and normalized) into the step's input buffer, in place. Validation,
/// test and `ddp eval` never see them.
///
/// Names and parameter meanings are Keras's preprocessing layers (RandomFlip, RandomTranslation,
/// RandomRotation, RandomZoom, GaussianNoise), torchvision's where Keras has none (RandomCrop
/// with padding, RandomErasing). Every random draw of transform t on dataset row r in epoch e is
/// a pure function of (seed, e, r, t) (`CounterRandom`, stream `.augmentation`), so a row is
/// transformed identically whichever rank holds it and wherever it sits in the batch: N ranks
/// train the model one process trains.
///
/// The pixel-moving transforms run on normalized values, which is exactly transforming the raw
/// image only when every pixel of a channel is normalized alike (`normalize: scale` on bytes,
/// or `none`); `check` refuses per-pixel normalizations for them. Their fill values are in the
/// data's raw units (Keras and torchvision fill before any Normalize) and are normalized with
/// the channel's scale and shift; random_erasing's value and gaussian_noise act on the
/// normalized input, where torchvision's RandomErasing and Keras's GaussianNoise usually sit.
public enum AugmentTransform: Sendable, Equatable {
    /// Keras RandomFlip: each enabled flip with probability 1/2, independently.
    case randomFlip(FlipMode)
    /// Keras RandomTranslation: shifts by U(lower, upper) × size, positive = down / right.
    case randomTranslation(height: FactorRange, width: FactorRange, fill: FillMode, fillValue: Float, interpolation: Interpolation)
    /// Keras RandomRotation: by U(lower, upper) × 2π about the centre, positive = counter-clockwise.
    case randomRotation(factor: FactorRange, fill: FillMode, fillValue: Float, interpolation: Interpolation)
    /// Keras RandomZoom: scales by 1 + U(lower, upper) about the centre, positive = zoom out;
    /// without a width factor the width takes the height's zoom (aspect kept).
    case randomZoom(height: FactorRange, width: FactorRange?, fill: FillMode, fillValue: Float, interpolation: Interpolation)
    /// torchvision RandomCrop(size = the image's, padding): pads by `padding` on every side, then
    /// crops back at a random offset (each of the (2p+1)² equally likely).
    case randomCrop(padding: Int, fill: Float, paddingMode: PaddingMode)
    /// torchvision RandomErasing: with probability p, a rectangle of area U(scale) × H·W and
    /// aspect exp(U(log ratio)) (10 tries to fit) is set to `value` (or N(0, 1) per value).
    case randomErasing(probability: Double, scale: FactorRange, ratio: FactorRange, value: ErasingValue)
    /// Keras GaussianNoise on the normalized input: x + stddev·N(0, 1) per value.
    case gaussianNoise(stddev: Float)

    public enum FlipMode: String, Sendable, CaseIterable {
        case horizontal, vertical, horizontalAndVertical = "horizontal_and_vertical"
    }
    /// Keras fill_mode (scipy.ndimage names): how points outside the input are filled.
    /// reflect (d c b a | a b c d | d c b a), wrap (a b c d | a b c d | a b c d),
    /// nearest (a a a a | a b c d | d d d d), constant (k k k k | a b c d | k k k k).
    public enum FillMode: String, Sendable, CaseIterable {
        case reflect, wrap, nearest, constant
    }
    public enum Interpolation: String, Sendable, CaseIterable {
        case bilinear, nearest
    }
    /// torchvision padding_mode: constant (fill), edge, reflect (no edge repeat), symmetric.
    public enum PaddingMode: String, Sendable, CaseIterable {
        case constant, edge, reflect, symmetric
    }
    public enum ErasingValue: Sendable, Equatable {
        case constant(Float)
        case random
    }

    public var name: String {
        switch self {
        case .randomFlip: return "random_flip"
        case .randomTranslation: return "random_translation"
        case .randomRotation: return "random_rotation"
        case .randomZoom: return "random_zoom"
        case .randomCrop: return "random_crop"
        case .randomErasing: return "random_erasing"
        case .gaussianNoise: return "gaussian_noise"
        }
    }

    /// Needs the sample's image shape.
    var needsImage: Bool {
        if case .gaussianNoise = self { return false }
        return true
    }

    /// Moves values between pixel positions (so needs the same normalization at every pixel of a channel).
    var movesPixels: Bool {
        switch self {
        case .randomErasing, .gaussianNoise: return false
        default: return true
        }
    }
}

/// A closed range [lower, upper] of a random factor.
public struct FactorRange: Sendable, Equatable {
    public var lower: Double
    public var upper: Double
    public init(_ lower: Double, _ upper: Double) {
        self.lower = lower
        self.upper = upper
    }
    /// lower + (upper − lower)·u for u in [0, 1).
    @inline(__always)
    func at(_ u: Double) -> Double { lower + (upper - lower) * u }
}

// MARK: Config

extension AugmentTransform {
    static let names = ["random_flip", "random_translation", "random_rotation", "random_zoom", "random_crop",
                        "random_erasing", "gaussian_noise"]

    /// `data.augment`: a list whose entries are a name (`- random_flip`, default parameters) or a
    /// mapping with `type` and the transform's parameters.
    static func parseList(_ node: Node?, path: String) throws -> [AugmentTransform] {
        guard let node else { return [] }
        guard let list = node.sequence else {
            throw DDPError(.config, "\(path): expected a list of transforms (e.g. - {type: random_flip, mode: horizontal})")
        }
        return try list.enumerated().map { index, entry in try parse(entry, path: "\(path)[\(index)]") }
    }

    static func parse(_ node: Node, path: String) throws -> AugmentTransform {
        var section: ConfigSection
        let type: String
        if let scalar = node.scalar {
            section = try ConfigSection(nil, path: path)
            type = scalar.string
        } else {
            section = try ConfigSection(node, path: path)
            type = try section.string("type") ?? ""
        }
        let transform: AugmentTransform
        switch type {
        case "random_flip":
            transform = .randomFlip(try section.choice("mode", default: FlipMode.horizontalAndVertical))
        case "random_translation":
            guard let height = try factor(&section, "height_factor", in: -1...1) else { throw missing(section, "height_factor") }
            guard let width = try factor(&section, "width_factor", in: -1...1) else { throw missing(section, "width_factor") }
            transform = .randomTranslation(height: height, width: width, fill: try section.choice("fill_mode", default: FillMode.reflect),
                                           fillValue: try section.float("fill_value", default: 0),
                                           interpolation: try section.choice("interpolation", default: Interpolation.bilinear))
        case "random_rotation":
            guard let factor = try factor(&section, "factor", in: -1...1) else { throw missing(section, "factor") }
            transform = .randomRotation(factor: factor, fill: try section.choice("fill_mode", default: FillMode.reflect),
                                        fillValue: try section.float("fill_value", default: 0),
                                        interpolation: try section.choice("interpolation", default: Interpolation.bilinear))
        case "random_zoom":
            // Keras: a zoom factor below −1 would mean a negative scale.
            guard let height = try factor(&section, "height_factor", in: -1...10) else { throw missing(section, "height_factor") }
            let width = try factor(&section, "width_factor", in: -1...10)
            for (name, range) in [("height_factor", height), ("width_factor", width)] where range != nil && range!.lower <= -1 {
                throw DDPError(.config, "\(section.key(name)): the lower bound must be greater than -1 (a zoom of 1 + factor > 0), got \(range!.lower)")
            }
            transform = .randomZoom(height: height, width: width, fill: try section.choice("fill_mode", default: FillMode.reflect),
                                    fillValue: try section.float("fill_value", default: 0),
                                    interpolation: try section.choice("interpolation", default: Interpolation.bilinear))
        case "random_crop":
            guard let padding = try section.int("padding") else { throw missing(section, "padding") }
            guard padding >= 0, padding <= 4096 else {
                throw DDPError(.config, "\(section.key("padding")): expected an integer in [0, 4096], got \(padding)")
            }
            transform = .randomCrop(padding: padding, fill: try section.float("fill", default: 0),
                                    paddingMode: try section.choice("padding_mode", default: PaddingMode.constant))
        case "random_erasing":
            let probability = try section.double("probability", default: 0.5, in: 0...1)
            let scale = try factor(&section, "scale", in: 0...1, pairOnly: true) ?? FactorRange(0.02, 0.33)
            let ratio = try factor(&section, "ratio", in: 1e-6...1e6, pairOnly: true) ?? FactorRange(0.3, 3.3)
            let value: ErasingValue
            if let text = section.node("value")?.scalar?.string, text == "random" {
                value = .random
            } else {
                value = .constant(try section.float("value", default: 0))
            }
            transform = .randomErasing(probability: probability, scale: scale, ratio: ratio, value: value)
        case "gaussian_noise":
            transform = .gaussianNoise(stddev: try section.float("stddev", default: 0.1, in: 0...1e6))
        default:
            throw DDPError(.config, "\(path)\(node.scalar == nil ? ".type" : ""): '\(type)' is not one of \(names.joined(separator: ", "))")
        }
        try section.finish()
        return transform
    }

    private static func missing(_ section: ConfigSection, _ name: String) -> DDPError {
        DDPError(.config, "missing key '\(section.key(name))'")
    }

    /// A Keras factor: a number f ≥ 0 means [−f, f]; a list [lower, upper] is taken as given.
    /// `pairOnly`: only a list (torchvision's scale and ratio are always pairs).
    private static func factor(_ section: inout ConfigSection, _ name: String, in allowed: ClosedRange<Double>,
                               pairOnly: Bool = false) throws -> FactorRange? {
        guard let node = section.node(name) else { return nil }
        let key = section.key(name)
        let expected = pairOnly ? "a list [lower, upper]" : "a number or a list [lower, upper]"
        var values: [Double] = []
        if let scalar = node.scalar, !pairOnly {
            guard let value = Double(scalar.string), value >= 0 else {
                throw DDPError(.config, "\(key): expected \(expected) (a single number must be ≥ 0), got '\(scalar.string)'")
            }
            values = [-value, value]
        } else if let list = node.sequence, list.count == 2 {
            for item in list {
                guard let value = Double(item.scalar?.string ?? "") else {
                    throw DDPError(.config, "\(key): expected \(expected), got '\(ConfigSection.describe(item))'")
                }
                values.append(value)
            }
        } else {
            throw DDPError(.config, "\(key): expected \(expected), got '\(ConfigSection.describe(node))'")
        }
        guard values.allSatisfy(allowed.contains), values[0] <= values[1] else {
            throw DDPError(.config, "\(key): expected lower ≤ upper, both in [\(allowed.lowerBound), \(allowed.upperBound)], got [\(values[0]), \(values[1])]")
        }
        return FactorRange(values[0], values[1])
    }
}

// MARK: The pass

/// The `data.augment` pipeline of one run, ready for the hot path: fill values normalized per
/// channel once, one row of scratch allocated once.
public final class Augmentation {
    public let transforms: [AugmentTransform]
    public let shape: ImageShape?
    public let featureCount: Int
    public let seed: UInt64
    /// Per transform, its fill value normalized for each channel (empty where it has none).
    private let fills: [[Float]]
    private let scratch: UnsafeMutablePointer<Float>

    /// nil when the config has no `data.augment`.
    public convenience init?(config: TrainingConfig, data: RunData) throws {
        guard !config.data.augment.isEmpty else { return nil }
        try self.init(config.data.augment, imageShape: data.imageShape, normalization: data.transform, seed: config.seed)
    }

    public init(_ transforms: [AugmentTransform], imageShape: ImageShape?, normalization: FeatureTransform, seed: UInt64) throws {
        try Self.check(transforms, imageShape: imageShape, transform: normalization)
        self.transforms = transforms
        shape = imageShape
        featureCount = normalization.scale.count
        self.seed = seed
        fills = transforms.map { transform in
            let raw: Float
            switch transform {
            case let .randomTranslation(_, _, _, value, _), let .randomRotation(_, _, value, _),
                 let .randomZoom(_, _, _, value, _), let .randomCrop(_, value, _):
                raw = value
            default:
                return []
            }
            // Channel c's pixels share one scale and shift (checked): take pixel 0's.
            return (0..<(imageShape?.channels ?? 0)).map { c in raw * normalization.scale[c] + normalization.shift[c] }
        }
        scratch = .allocate(capacity: max(featureCount, 1))
        scratch.initialize(repeating: 0, count: max(featureCount, 1))
    }

    deinit { scratch.deallocate() }

    /// The errors a user can make, checked before training: image transforms without an image
    /// shape, pixel-moving transforms under a per-pixel normalization, reflect padding as wide
    /// as the image.
    public static func check(_ transforms: [AugmentTransform], imageShape: ImageShape?, transform: FeatureTransform) throws {
        for (index, augment) in transforms.enumerated() {
            let key = "data.augment[\(index)] (\(augment.name))"
            guard augment.needsImage else { continue }
            guard let shape = imageShape else {
                throw DDPError(.config, "\(key) transforms images, but the training data has no image shape: set data.image_shape: [height, width, channels]")
            }
            if augment.movesPixels {
                let channels = shape.channels
                for f in 0..<shape.featureCount where transform.scale[f] != transform.scale[f % channels] || transform.shift[f] != transform.shift[f % channels] {
                    throw DDPError(.config, "\(key) moves pixels, which needs one normalization for every pixel of a channel, but data.normalize normalizes each pixel on its own (feature \(f) differs from feature \(f % channels)); use normalize: none (or scale on uint8/IDX images)")
                }
            }
            if case let .randomCrop(padding, _, mode) = augment, mode == .reflect, padding >= min(shape.height, shape.width) {
                throw DDPError(.config, "data.augment[\(index)].padding: reflect padding must be smaller than the image (\(shape.height)×\(shape.width)), got \(padding)")
            }
        }
    }

    /// Transforms `count` gathered rows of `inputs` (row i is dataset row `rows[i]`) in place.
    /// Hot path: no allocation.
    public func apply(rows: UnsafePointer<Int32>, count: Int, epoch: Int, inputs: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            apply(row: Int(rows[i]), epoch: epoch, sample: inputs + i * featureCount)
        }
    }

    /// Transforms one sample, dataset row `row` of epoch `epoch`, in place.
    public func apply(row: Int, epoch: Int, sample: UnsafeMutablePointer<Float>) {
        for (index, transform) in transforms.enumerated() {
            let key = CounterRandom.bits(seed, .augmentation, UInt64(epoch), UInt64(row), UInt64(index))
            @inline(__always) func u(_ k: Int) -> Double { Double(CounterRandom.uniform(rowKey: key, unit: k)) }
            switch transform {
            case let .randomFlip(mode):
                let horizontal = mode != .vertical && u(0) < 0.5
                let vertical = mode != .horizontal && u(1) < 0.5
                Self.flip(sample, shape!, horizontal: horizontal, vertical: vertical)
            case let .randomTranslation(height, width, fill, _, interpolation):
                let dy = height.at(u(0)) * Double(shape!.height), dx = width.at(u(1)) * Double(shape!.width)
                Self.affine(sample, shape!, Self.translationMatrix(dy: dy, dx: dx), fill: fill, fills: fills[index],
                            interpolation: interpolation, scratch: scratch)
            case let .randomRotation(factor, fill, _, interpolation):
                Self.affine(sample, shape!, Self.rotationMatrix(angle: factor.at(u(0)) * 2 * Double.pi, shape!),
                            fill: fill, fills: fills[index], interpolation: interpolation, scratch: scratch)
            case let .randomZoom(height, width, fill, _, interpolation):
                let zoomY = 1 + height.at(u(0))
                let zoomX = width.map { 1 + $0.at(u(1)) } ?? zoomY
                Self.affine(sample, shape!, Self.zoomMatrix(zoomY: zoomY, zoomX: zoomX, shape!), fill: fill, fills: fills[index],
                            interpolation: interpolation, scratch: scratch)
            case let .randomCrop(padding, _, mode):
                // torch.randint(0, h − th + 1): each offset in 0...2p equally likely.
                let top = min(Int(u(0) * Double(2 * padding + 1)), 2 * padding)
                let left = min(Int(u(1) * Double(2 * padding + 1)), 2 * padding)
                Self.crop(sample, shape!, padding: padding, top: top, left: left, mode: mode, fills: fills[index], scratch: scratch)
            case let .randomErasing(probability, scale, ratio, value):
                guard u(0) < probability, let box = Self.erasingBox(shape!, scale: scale, ratio: ratio, uniform: u) else { continue }
                let noiseKey = CounterRandom.mix(key ^ 0xE5A5_E5A5)
                Self.erase(sample, shape!, box) { position in
                    switch value {
                    case .constant(let v): return v
                    case .random: return Float(CounterRandom.normal(rowKey: noiseKey, unit: position))
                    }
                }
            case let .gaussianNoise(stddev):
                let sigma = Double(stddev)
                for f in 0..<featureCount { sample[f] += Float(sigma * CounterRandom.normal(rowKey: key, unit: f)) }
            }
        }
    }

    // MARK: Deterministic kernels (each random transform draws its parameters, then calls one)

    /// Mirrors columns (horizontal) and/or rows (vertical) in place.
    public static func flip(_ image: UnsafeMutablePointer<Float>, _ shape: ImageShape, horizontal: Bool, vertical: Bool) {
        let (h, w, c) = (shape.height, shape.width, shape.channels)
        if horizontal {
            for y in 0..<h {
                for x in 0..<w / 2 {
                    let a = image + (y * w + x) * c, b = image + (y * w + w - 1 - x) * c
                    for k in 0..<c { swap(&a[k], &b[k]) }
                }
            }
        }
        if vertical {
            for y in 0..<h / 2 {
                let a = image + y * w * c, b = image + (h - 1 - y) * w * c
                for k in 0..<w * c { swap(&a[k], &b[k]) }
            }
        }
    }

    /// Keras's projective transform [a0, a1, a2, b0, b1, b2]: output pixel (x, y) reads the input
    /// at (a0·x + a1·y + a2, b0·x + b1·y + b2).
    public typealias Matrix = (a0: Double, a1: Double, a2: Double, b0: Double, b1: Double, b2: Double)

    /// Keras get_translation_matrix: output (x, y) reads input (x − dx, y − dy).
    public static func translationMatrix(dy: Double, dx: Double) -> Matrix { (1, 0, -dx, 0, 1, -dy) }

    /// Keras get_rotation_matrix: rotation by `angle` (radians, counter-clockwise on screen) about
    /// the centre ((W − 1)/2, (H − 1)/2).
    public static func rotationMatrix(angle: Double, _ shape: ImageShape) -> Matrix {
        let (cosine, sine) = (cos(angle), sin(angle))
        let (w1, h1) = (Double(shape.width - 1), Double(shape.height - 1))
        let xOffset = (w1 - (cosine * w1 - sine * h1)) / 2
        let yOffset = (h1 - (sine * w1 + cosine * h1)) / 2
        return (cosine, -sine, xOffset, sine, cosine, yOffset)
    }

    /// Keras get_zoom_matrix: output (x, y) reads input (zx·x + (W−1)/2·(1 − zx), zy·y + …):
    /// zoom > 1 shows more of the input (zoom out).
    public static func zoomMatrix(zoomY: Double, zoomX: Double, _ shape: ImageShape) -> Matrix {
        (zoomX, 0, Double(shape.width - 1) / 2 * (1 - zoomX), 0, zoomY, Double(shape.height - 1) / 2 * (1 - zoomY))
    }

    /// Resamples `image` through `matrix` (TensorFlow's ImageProjectiveTransformV3, which Keras
    /// calls): the input coordinate is first mapped inside by `fill` (constant: left as is), then
    /// read by nearest (round half away from zero) or bilinear interpolation, any neighbour
    /// outside the image reading `fills[channel]`.
    public static func affine(_ image: UnsafeMutablePointer<Float>, _ shape: ImageShape, _ matrix: Matrix,
                              fill: AugmentTransform.FillMode, fills: [Float], interpolation: AugmentTransform.Interpolation,
                              scratch: UnsafeMutablePointer<Float>) {
        let (h, w, c) = (shape.height, shape.width, shape.channels)
        fills.withUnsafeBufferPointer { fillValues in
            @inline(__always) func read(_ y: Int, _ x: Int, _ k: Int) -> Float {
                (y >= 0 && y < h && x >= 0 && x < w) ? image[(y * w + x) * c + k] : fillValues[k]
            }
            for y in 0..<h {
                for x in 0..<w {
                    let inX = mapCoordinate(matrix.a0 * Double(x) + matrix.a1 * Double(y) + matrix.a2, w, fill)
                    let inY = mapCoordinate(matrix.b0 * Double(x) + matrix.b1 * Double(y) + matrix.b2, h, fill)
                    let out = scratch + (y * w + x) * c
                    switch interpolation {
                    case .nearest:
                        let (ny, nx) = (Int(inY.rounded()), Int(inX.rounded()))
                        for k in 0..<c { out[k] = read(ny, nx, k) }
                    case .bilinear:
                        let (y0, x0) = (inY.rounded(.down), inX.rounded(.down))
                        let (fy, fx) = (Float(inY - y0), Float(inX - x0))
                        let (iy, ix) = (Int(y0), Int(x0))
                        for k in 0..<c {
                            let top = (1 - fx) * read(iy, ix, k) + fx * read(iy, ix + 1, k)
                            let bottom = (1 - fx) * read(iy + 1, ix, k) + fx * read(iy + 1, ix + 1, k)
                            out[k] = (1 - fy) * top + fy * bottom
                        }
                    }
                }
            }
        }
        image.update(from: scratch, count: h * w * c)
    }

    /// TensorFlow's MapCoordinate for a continuous coordinate along an axis of `length`.
    @inline(__always)
    static func mapCoordinate(_ coordinate: Double, _ length: Int, _ mode: AugmentTransform.FillMode) -> Double {
        let n = Double(length)
        var c = coordinate
        switch mode {
        case .constant:
            return c
        case .nearest:
            break
        case .reflect:
            guard length > 1 else { return 0 }
            let twice = 2 * n
            if c < 0 {
                c += twice * (-c / twice).rounded(.towardZero)
                c = c < -n ? c + twice : -c - 1
            } else if c > n - 1 {
                c -= twice * (c / twice).rounded(.towardZero)
                if c >= n { c = twice - c - 1 }
            }
        case .wrap:
            guard length > 1 else { return 0 }
            if c < 0 {
                c += n * ((-c / (n - 1)).rounded(.towardZero) + 1)
            } else if c > n - 1 {
                c -= n * (c / (n - 1)).rounded(.towardZero)
            }
        }
        return min(max(c, 0), n - 1)
    }

    /// torchvision RandomCrop with padding: output (y, x) = padded(y + top, x + left), i.e. the
    /// input at (y + top − p, x + left − p), positions outside mapped by `mode`.
    public static func crop(_ image: UnsafeMutablePointer<Float>, _ shape: ImageShape, padding: Int, top: Int, left: Int,
                            mode: AugmentTransform.PaddingMode, fills: [Float], scratch: UnsafeMutablePointer<Float>) {
        let (h, w, c) = (shape.height, shape.width, shape.channels)
        @inline(__always) func source(_ i: Int, _ n: Int) -> Int? {
            if i >= 0 && i < n { return i }
            switch mode {
            case .constant: return nil
            case .edge: return min(max(i, 0), n - 1)
            case .reflect: return i < 0 ? -i : 2 * (n - 1) - i
            case .symmetric: return i < 0 ? -i - 1 : 2 * n - 1 - i
            }
        }
        for y in 0..<h {
            let sy = source(y + top - padding, h)
            for x in 0..<w {
                let out = scratch + (y * w + x) * c
                if let sy, let sx = source(x + left - padding, w) {
                    let from = image + (sy * w + sx) * c
                    for k in 0..<c { out[k] = from[k] }
                } else {
                    for k in 0..<c { out[k] = fills[k] }
                }
            }
        }
        image.update(from: scratch, count: h * w * c)
    }

    /// An erased rectangle: rows top..<top+height, columns left..<left+width.
    public struct Box: Equatable, Sendable {
        public var top: Int, left: Int, height: Int, width: Int
        public init(top: Int, left: Int, height: Int, width: Int) {
            (self.top, self.left, self.height, self.width) = (top, left, height, width)
        }
    }

    /// torchvision RandomErasing.get_params: up to 10 tries of area U(scale)·H·W, aspect
    /// exp(U(log ratio)), h = round(√(area·aspect)), w = round(√(area/aspect)) (half to even, as
    /// Python's round), kept if h < H and w < W, at a uniform offset; nil if none fits.
    /// `uniform(k)` is the k-th draw (k = 0 decided whether to erase at all).
    static func erasingBox(_ shape: ImageShape, scale: FactorRange, ratio: FactorRange, uniform: (Int) -> Double) -> Box? {
        let area = Double(shape.height * shape.width)
        let logRatio = FactorRange(log(ratio.lower), log(ratio.upper))
        for attempt in 0..<10 {
            let draw = 1 + 4 * attempt
            let erased = area * scale.at(uniform(draw))
            let aspect = exp(logRatio.at(uniform(draw + 1)))
            let height = Int((erased * aspect).squareRoot().rounded(.toNearestOrEven))
            let width = Int((erased / aspect).squareRoot().rounded(.toNearestOrEven))
            guard height < shape.height, width < shape.width else { continue }
            let top = min(Int(uniform(draw + 2) * Double(shape.height - height + 1)), shape.height - height)
            let left = min(Int(uniform(draw + 3) * Double(shape.width - width + 1)), shape.width - width)
            return Box(top: top, left: left, height: height, width: width)
        }
        return nil
    }

    /// Sets every channel of the pixels in `box` to `value(feature index)`.
    public static func erase(_ image: UnsafeMutablePointer<Float>, _ shape: ImageShape, _ box: Box, value: (Int) -> Float) {
        let (w, c) = (shape.width, shape.channels)
        for y in box.top..<box.top + box.height {
            for x in box.left..<box.left + box.width {
                for k in 0..<c {
                    let f = (y * w + x) * c + k
                    image[f] = value(f)
                }
            }
        }
    }
}
