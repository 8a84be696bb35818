import Foundation
import XCTest
@testable import DDPCore

/// MaxPooling2D: hand-computed maxima and gradient routing (ties to the first pixel, overlapping
/// windows adding up, padded pixels never winning), central differences, torch's
/// F.max_pool2d over the window shapes and paddings (same as an explicit −∞ pad), and the
/// config errors.
final class MaxPooling2DTests: XCTestCase {
    private func spec(_ pool: (Int, Int), strides: (Int, Int)? = nil, _ padding: PoolWindow.Padding = .valid) -> MaxPooling2DSpec {
        MaxPooling2DSpec(window: PoolWindow(height: pool.0, width: pool.1, strideHeight: strides?.0, strideWidth: strides?.1,
                                            padding: padding))
    }

    // MARK: Hand-computed values

    func testTwoByTwoPoolOnAFourByFourImage() throws {
        let image = ImageShape(height: 4, width: 4, channels: 1)
        let probe = imageLayerProbe(spec((2, 2)), image, batch: 1)
        store([ 1, 9, 2, 0,
                3, 4, 8, 7,
               -1, -5, 6, 6.5,
               -2, -3, 5, 6], into: probe.input)
        store([10, 20, 30, 40], into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), [9, 8, -1, 6.5])
        XCTAssertEqual(Array(probe.inputGradient), [ 0, 10, 0, 0,
                                                     0, 0, 20, 0,
                                                     30, 0, 0, 40,
                                                     0, 0, 0, 0])
    }

    /// Channels are pooled on their own; 11 channels run one 8-wide block and a 3-channel tail.
    func testChannelsArePooledSeparately() throws {
        let image = ImageShape(height: 2, width: 2, channels: 11)
        let probe = imageLayerProbe(spec((2, 2)), image, batch: 1)
        // Channel c's maximum is at pixel c % 4, with value c.
        var values = [Float](repeating: -100, count: 44)
        for c in 0..<11 { values[(c % 4) * 11 + c] = Float(c) }
        store(values, into: probe.input)
        store((0..<11).map { Float($0 + 1) }, into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), (0..<11).map(Float.init))
        var expected = [Float](repeating: 0, count: 44)
        for c in 0..<11 { expected[(c % 4) * 11 + c] = Float(c + 1) }
        XCTAssertEqual(Array(probe.inputGradient), expected)
    }

    /// torch's rule: a tie goes to the first pixel in row-major window order.
    func testTiesRouteTheGradientToTheFirstPixel() throws {
        let probe = imageLayerProbe(spec((2, 2)), ImageShape(height: 2, width: 2, channels: 2), batch: 1)
        store([1, 3,  2, 3,  2, 3,  0, 3], into: probe.input)
        store([5, 7], into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), [2, 3])
        XCTAssertEqual(Array(probe.inputGradient), [0, 7,  5, 0,  0, 0,  0, 0])
    }

    /// Stride 1 under a 3-wide pool: one pixel wins two windows and gets both gradients.
    func testOverlappingWindowsAddTheirGradients() throws {
        let probe = imageLayerProbe(spec((1, 3), strides: (1, 1)), ImageShape(height: 1, width: 4, channels: 1), batch: 1)
        store([0, 5, 1, 2], into: probe.input)
        store([10, 100], into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), [5, 5])
        XCTAssertEqual(Array(probe.inputGradient), [0, 110, 0, 0])
    }

    /// `same` on 3 × 3 with pool 2, stride 2: the padded row and column never win, even over
    /// negative pixels (TensorFlow pads with −∞, not 0).
    func testSamePaddingNeverPicksAPaddedPixel() throws {
        let probe = imageLayerProbe(spec((2, 2), strides: (2, 2), .same), ImageShape(height: 3, width: 3, channels: 1), batch: 1)
        store([-1, -2, -3,
               -4, -5, -6,
               -7, -8, -9], into: probe.input)
        store([1, 2, 3, 4], into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), [-1, -3, -7, -9])
        XCTAssertEqual(Array(probe.inputGradient), [1, 0, 2,  0, 0, 0,  3, 0, 4])
    }

    /// As torch, a NaN in a window is its maximum: pooling does not hide it.
    func testNaNPropagates() throws {
        let probe = imageLayerProbe(spec((2, 2)), ImageShape(height: 2, width: 2, channels: 9), batch: 1)
        var values = [Float](repeating: 1, count: 36)
        values[2 * 9 + 0] = .nan
        values[3 * 9 + 8] = .nan
        store(values, into: probe.input)
        try probe.forward()
        XCTAssertTrue(probe.output[0].isNaN && probe.output[8].isNaN)
        XCTAssertEqual(Array(probe.output[1..<8]), Array(repeating: 1, count: 7))
    }

    func testOneByOnePoolIsTheIdentity() throws {
        let image = ImageShape(height: 3, width: 2, channels: 5)
        let probe = imageLayerProbe(spec((1, 1)), image, batch: 2)
        var random = TestRandom(seed: 3)
        fill(probe, inputs: random.array(60, -1, 1), seed: 4)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), Array(probe.input))
        XCTAssertEqual(Array(probe.inputGradient), Array(probe.upstream))
    }

    // MARK: Gradients against central differences

    func testGradientsAgainstCentralDifferences() throws {
        for (label, spec, image) in [
            ("2×2 valid", spec((2, 2)), ImageShape(height: 4, width: 4, channels: 3)),
            ("3×3 stride 2 same, odd", spec((3, 3), strides: (2, 2), .same), ImageShape(height: 5, width: 5, channels: 9)),
            ("3×3 stride 1 overlapping", spec((3, 3), strides: (1, 1)), ImageShape(height: 4, width: 5, channels: 2)),
        ] {
            let probe = imageLayerProbe(spec, image, batch: 2)
            fill(probe, inputs: distinctValues(2 * image.featureCount, seed: 11), seed: 12)
            try checkLayer(probe, "max pooling \(label)", h: 1e-2)
        }
    }

    // MARK: Against torch

    /// A probe of `pool`, `strides`, `padding` on two random images, and torch's F.max_pool2d
    /// over the input padded as TensorFlow's `same` pads it, with −∞ (F.pad's order: left,
    /// right, top, bottom).
    private func torchCase(_ pool: (Int, Int), strides: (Int, Int), _ padding: PoolWindow.Padding, _ image: ImageShape,
                           inputs: [Float]? = nil, seed: UInt64) throws -> TorchCase {
        let spec = spec(pool, strides: strides, padding)
        let g = try spec.window.geometry(on: image)
        let probe = imageLayerProbe(spec, image, batch: 2)
        var random = TestRandom(seed: seed)
        fill(probe, inputs: inputs ?? random.array(2 * image.featureCount, -1, 1), seed: seed + 100)
        let bottom = max((g.outputHeight - 1) * strides.0 + pool.0 - image.height, 0) - g.padTop
        let right = max((g.outputWidth - 1) * strides.1 + pool.1 - image.width, 0) - g.padLeft
        let expression = "F.max_pool2d(F.pad(x, (\(g.padLeft), \(right), \(g.padTop), \(bottom)), value=-inf), "
            + "(\(pool.0), \(pool.1)), (\(strides.0), \(strides.1)))"
        return TorchCase(label: "\(pool) / \(strides) \(padding) on \(image)", probe: probe, expression: expression, image: image)
    }

    func testMatchesTorch() throws {
        try assertMatchTorch([
            torchCase((2, 2), strides: (2, 2), .valid, ImageShape(height: 6, width: 4, channels: 11), seed: 1),
            torchCase((3, 2), strides: (1, 2), .valid, ImageShape(height: 5, width: 5, channels: 3), seed: 2),
            torchCase((2, 2), strides: (3, 3), .valid, ImageShape(height: 8, width: 7, channels: 8), seed: 3),
            torchCase((5, 4), strides: (5, 4), .valid, ImageShape(height: 5, width: 4, channels: 16), seed: 4),
            torchCase((1, 1), strides: (1, 1), .valid, ImageShape(height: 3, width: 3, channels: 4), seed: 5),
            torchCase((1, 1), strides: (2, 2), .valid, ImageShape(height: 5, width: 4, channels: 4), seed: 6),
            torchCase((3, 3), strides: (2, 2), .same, ImageShape(height: 7, width: 7, channels: 9), seed: 7),
            torchCase((3, 3), strides: (2, 2), .same, ImageShape(height: 8, width: 8, channels: 9), seed: 8),
            torchCase((2, 2), strides: (2, 2), .same, ImageShape(height: 5, width: 6, channels: 3), seed: 9),
            torchCase((2, 3), strides: (3, 1), .same, ImageShape(height: 7, width: 5, channels: 17), seed: 10),
            torchCase((4, 4), strides: (1, 1), .same, ImageShape(height: 3, width: 2, channels: 2), seed: 11),
        ])
    }

    /// Integer data with many ties: both pick the first pixel of a window.
    func testMatchesTorchOnTies() throws {
        let image = ImageShape(height: 6, width: 6, channels: 10)
        var random = TestRandom(seed: 77)
        let inputs = (0..<2 * image.featureCount).map { _ in Float(random.next() % 3) }
        try assertMatchTorch([
            torchCase((3, 3), strides: (1, 1), .valid, image, inputs: inputs, seed: 1),
            torchCase((2, 2), strides: (2, 2), .valid, image, inputs: inputs, seed: 2),
            torchCase((3, 3), strides: (2, 2), .same, image, inputs: inputs, seed: 3),
        ])
    }

    // MARK: Config

    func testShapesAndErrors() throws {
        let model = ModelConfig(inputShape: .image(ImageShape(height: 28, width: 28, channels: 32)),
                                layers: [LayerConfig(spec((2, 2))), LayerConfig(spec((3, 3), strides: (2, 2), .same))])
        XCTAssertEqual(try model.shapes().map(\.description), ["(None, 14, 14, 32)", "(None, 7, 7, 32)"])
        XCTAssertEqual(spec((2, 2)).inputKind, .image)
        XCTAssertFalse(spec((2, 2)).hasParameters)
        assertDDPError(.config, containing: ["model.layers[1] (max_pooling2d): pool 3×3 does not fit the input (None, 2, 2, 8) with padding: valid"]) {
            try ModelConfig(inputShape: .image(ImageShape(height: 4, width: 4, channels: 8)),
                            layers: [LayerConfig(self.spec((2, 2))), LayerConfig(self.spec((3, 3)))]).shapes()
        }
        assertDDPError(.config, containing: ["model.layers[1] (max_pooling2d): gets the features (None, 128); max_pooling2d takes an image (H, W, C)"]) {
            try ModelConfig(inputShape: .image(ImageShape(height: 4, width: 4, channels: 8)),
                            layers: [LayerConfig(FlattenSpec()), LayerConfig(self.spec((2, 2)))]).shapes()
        }
        assertDDPError(.config, containing: ["model.layers[0] (max_pooling2d): gets the features (None, 10)"]) {
            try ModelConfig(inputs: 10, layers: [LayerConfig(self.spec((2, 2)))]).shapes()
        }
    }

    func testInsideANetworkWithTheSummaryName() throws {
        let network = try Network(config: ModelConfig(inputShape: .image(ImageShape(height: 4, width: 4, channels: 2)),
                                                      layers: [LayerConfig(spec((2, 2))), LayerConfig(FlattenSpec())]))
        network.reserve(maxBatch: 1)
        XCTAssertEqual(network.layers.first?.displayName, "MaxPooling2D")
        for i in 0..<32 { network.input[i] = Float(i) }
        try network.forward(batch: 1, context: makeContext(maxBatch: 1, training: false))
        // Pixel (y, x) channel c holds (4y + x)·2 + c: each window's max is its bottom-right pixel.
        XCTAssertEqual(copyOf(network.output, count: 8), [10, 11, 14, 15, 26, 27, 30, 31])
    }
}
