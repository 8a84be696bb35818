/// 2-D max pooling over channels-last images, as Keras's MaxPooling2D and torch's
/// nn.MaxPool2d: output pixel (oy, ox) of channel c is the largest input of that channel in
/// its window (`PoolGeometry`; with `same` padding a padded pixel never wins, as TensorFlow's
/// −∞ padding).
///
/// input (B, H, W, C), output (B, OH, OW, C). Backward routes each output gradient to the
/// input pixel that won: forward keeps, per output element, the winner's pixel index
/// y·W + x in `argmax`; overlapping windows (stride < pool) add up there. Ties go to the first
/// pixel in row-major window order and a NaN wins, as torch's CPU kernel
/// (`val > maxval || isnan(val)`), so the gradients match torch's element for element.
///
/// Each window is scanned eight channels at a time in registers (the channels of a pixel are
/// contiguous in NHWC). Measured in release on an AMD EPYC (family 26, Zen 5; a 2-vCPU KVM
/// guest shared with other builds), pool 2×2 stride 2 on a batch of 128 × 28 × 28 × 32:
/// forward 0.52 ms, backward 0.55 ms (medians of 50 calls; 0.48 and 0.51 ms at best, and up
/// to 0.8 ms when the other builds were busy), where copying the same batch (`Flatten`)
/// takes 0.29 ms.
public final class MaxPooling2D: Layer {
    public let configIndex: Int
    public let geometry: PoolGeometry
    public let displayName: String
    public var inputWidth: Int { geometry.input.featureCount }
    public var outputWidth: Int { geometry.outputPixels * geometry.input.channels }
    /// Pixel index (y·W + x) of the winner of each output element of the last forward,
    /// (batch, OH, OW, C).
    private var argmax = UnsafeMutableBufferPointer<Int32>(start: nil, count: 0)

    /// `displayName`: a global max pool is this layer with `PoolGeometry.whole`.
    public init(configIndex: Int, geometry: PoolGeometry, displayName: String = "MaxPooling2D") {
        self.configIndex = configIndex
        self.geometry = geometry
        self.displayName = displayName
    }

    deinit { argmax.deallocate() }

    public func reserve(maxBatch: Int) {
        argmax.deallocate()
        argmax = .allocate(capacity: max(maxBatch, 1) * outputWidth)
        argmax.initialize(repeating: 0)
    }

    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        for sample in 0..<batch { forward(sample: sample, input + sample * inputWidth, output) }
    }

    /// One sample: `x` its input row, `output` the whole batch's output (the sample's row and
    /// its argmax go to its place). A fused pass (`FusedNormActivation`) calls it right after
    /// writing the row, while the row is still in cache.
    func forward(sample: Int, _ x: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>) {
        guard let argmax = argmax.baseAddress else { preconditionFailure("MaxPooling2D \(configIndex): forward before reserve(maxBatch:)") }
        let g = geometry, channels = g.input.channels, outputWidth = self.outputWidth
        for oy in 0..<g.outputHeight {
            let rows = g.rows(oy)
            for ox in 0..<g.outputWidth {
                let o = sample * outputWidth + (oy * g.outputWidth + ox) * channels
                Self.maxOverWindow(x, rows: rows, columns: g.columns(ox), imageWidth: g.input.width, channels: channels,
                                   output + o, argmax + o)
            }
        }
    }

    /// y[c] = max of x[p·C + c] over the window's pixels p, and that p in `index[c]`. The
    /// pointers and pixel numbers step along the window with wrapping arithmetic (offsets
    /// within one sample, which `ImageShape.maximumFeatures` keeps in Int32): recomputing
    /// indices with overflow checks and checked Int32 conversions measured 3× slower.
    @inline(__always)
    static func maxOverWindow(_ x: UnsafePointer<Float>, rows: Range<Int>, columns: Range<Int>, imageWidth: Int, channels: Int,
                              _ y: UnsafeMutablePointer<Float>, _ index: UnsafeMutablePointer<Int32>) {
        let first = rows.lowerBound &* imageWidth &+ columns.lowerBound
        let corner = x + first &* channels, rowStride = imageWidth &* channels
        let firstPixel = Int32(truncatingIfNeeded: first), rowPixels = Int32(truncatingIfNeeded: imageWidth)
        let end = channels - channels % 8
        var c = 0
        while c < end {
            var best = load8(corner + c)
            var winner = SIMD8<Int32>(repeating: firstPixel)
            var rowStart = corner + c, rowPixel = firstPixel
            for _ in rows {
                var p = rowStart, pixels = SIMD8<Int32>(repeating: rowPixel)
                for _ in columns {
                    let value = load8(p)
                    let wins = value .> best .| value .!= value
                    best.replace(with: value, where: wins)
                    winner.replace(with: pixels, where: wins)
                    pixels &+= 1
                    p += channels
                }
                rowStart += rowStride
                rowPixel &+= rowPixels
            }
            store8(best, y + c)
            storeInt8(winner, index + c)
            c += 8
        }
        while c < channels {
            var best = corner[c], winner = firstPixel
            var rowStart = corner + c, rowPixel = firstPixel
            for _ in rows {
                var p = rowStart, pixel = rowPixel
                for _ in columns {
                    let value = p.pointee
                    if value > best || value.isNaN { best = value; winner = pixel }
                    p += channels
                    pixel &+= 1
                }
                rowStart += rowStride
                rowPixel &+= rowPixels
            }
            y[c] = best
            index[c] = winner
            c += 1
        }
    }

    /// dx = 0, then dx[winner] += dy for every output element, in output order (overlapping
    /// windows add up). A scatter: one add per output element. A vectorized alternative that
    /// selects dy or 0 for every pixel of every window measured no faster with 2×2 windows
    /// and 1.4× slower with 3×3 stride 2, which visit pixels more than once.
    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        guard let dx else { return }
        dx.update(repeating: 0, count: batch * inputWidth)
        for sample in 0..<batch { backward(sample: sample, outputGradient: dy, into: dx + sample * inputWidth) }
    }

    /// One sample: adds its output gradients (in `dy`, the whole batch's) at their winners in
    /// `gradient`, the sample's input-gradient row, which the caller has zeroed.
    func backward(sample: Int, outputGradient dy: UnsafePointer<Float>, into gradient: UnsafeMutablePointer<Float>) {
        guard let argmax = argmax.baseAddress else { return }
        let channels = geometry.input.channels, o = sample * outputWidth
        for pixel in stride(from: o, to: o + outputWidth, by: channels) {
            for c in 0..<channels { gradient[Int(argmax[pixel + c]) &* channels &+ c] += dy[pixel + c] }
        }
    }
}

/// `type: max_pooling2d`: Keras MaxPooling2D(pool_size, strides, padding).
public struct MaxPooling2DSpec: WindowPoolingSpec, Equatable {
    static let typeName = "max_pooling2d"
    public var window: PoolWindow

    public init(window: PoolWindow = PoolWindow(height: 2, width: 2)) { self.window = window }


    /// The argmax indices: one Int32 (a float's size) per output value.
    public func workspacePerSample(input: FeatureShape) -> Int { (try? outputShape(input: input).count) ?? 0 }

    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        [MaxPooling2D(configIndex: configIndex, geometry: try! window.geometry(on: input.image!))]
    }
}
