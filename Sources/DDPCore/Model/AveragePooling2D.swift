/// 2-D average pooling over channels-last images, as Keras's AveragePooling2D: output pixel
/// (oy, ox) of channel c is the mean of that channel over its window's real pixels. With
/// `same` padding a window at the border averages fewer pixels, never padded zeros (Keras;
/// torch's nn.AvgPool2d with count_include_pad=False; with `valid` every window holds
/// pool_h · pool_w pixels and the two rules agree).
///
/// input (B, H, W, C), output (B, OH, OW, C). y = Σ x / n over a window of n pixels;
/// backward adds dy / n to each of them (overlapping windows, stride < pool, add up).
/// Eight channels at a time, contiguous in NHWC.
public final class AveragePooling2D: Layer {
    public let configIndex: Int
    public let geometry: PoolGeometry
    public let displayName: String
    public var inputWidth: Int { geometry.input.featureCount }
    public var outputWidth: Int { geometry.outputPixels * geometry.input.channels }

    /// `displayName`: a global average pool is this layer with `PoolGeometry.whole`.
    public init(configIndex: Int, geometry: PoolGeometry, displayName: String = "AveragePooling2D") {
        self.configIndex = configIndex
        self.geometry = geometry
        self.displayName = displayName
    }

    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        let g = geometry, channels = g.input.channels, imageWidth = g.input.width
        let inputWidth = self.inputWidth, outputWidth = self.outputWidth, end = channels - channels % 8
        for sample in 0..<batch {
            let x = input + sample * inputWidth
            for oy in 0..<g.outputHeight {
                let rows = g.rows(oy)
                for ox in 0..<g.outputWidth {
                    let columns = g.columns(ox), count = Float(rows.count * columns.count)
                    let y = output + sample * outputWidth + (oy * g.outputWidth + ox) * channels
                    var c = 0
                    while c < end {
                        var sum = SIMD8<Float>()
                        for row in rows {
                            for pixel in row * imageWidth + columns.lowerBound..<row * imageWidth + columns.upperBound {
                                sum += load8(x + pixel * channels + c)
                            }
                        }
                        store8(sum / count, y + c)
                        c += 8
                    }
                    while c < channels {
                        var sum: Float = 0
                        for row in rows {
                            for pixel in row * imageWidth + columns.lowerBound..<row * imageWidth + columns.upperBound {
                                sum += x[pixel * channels + c]
                            }
                        }
                        y[c] = sum / count
                        c += 1
                    }
                }
            }
        }
    }

    /// dx = 0, then dx[p] += dy / n for each pixel p of each window of n pixels.
    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient dy: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        guard let dx else { return }
        let g = geometry, channels = g.input.channels, imageWidth = g.input.width
        let inputWidth = self.inputWidth, outputWidth = self.outputWidth, end = channels - channels % 8
        dx.update(repeating: 0, count: batch * inputWidth)
        for sample in 0..<batch {
            let gradient = dx + sample * inputWidth
            for oy in 0..<g.outputHeight {
                let rows = g.rows(oy)
                for ox in 0..<g.outputWidth {
                    let columns = g.columns(ox), count = Float(rows.count * columns.count)
                    let upstream = dy + sample * outputWidth + (oy * g.outputWidth + ox) * channels
                    for row in rows {
                        for pixel in row * imageWidth + columns.lowerBound..<row * imageWidth + columns.upperBound {
                            let target = gradient + pixel * channels
                            var c = 0
                            while c < end {
                                store8(load8(target + c) + load8(upstream + c) / count, target + c)
                                c += 8
                            }
                            while c < channels { target[c] += upstream[c] / count; c += 1 }
                        }
                    }
                }
            }
        }
    }
}

/// `type: average_pooling2d`: Keras AveragePooling2D(pool_size, strides, padding).
public struct AveragePooling2DSpec: WindowPoolingSpec, Equatable {
    static let typeName = "average_pooling2d"
    public var window: PoolWindow

    public init(window: PoolWindow = PoolWindow(height: 2, width: 2)) { self.window = window }


    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        [AveragePooling2D(configIndex: configIndex, geometry: try! window.geometry(on: input.image!))]
    }
}
