import Foundation
import XCTest
@testable import DDPCore

/// AveragePooling2D: hand-computed means (with `same`, over the real pixels only), central
/// differences, torch (valid: F.avg_pool2d; same: a sum pool over the zero-padded input divided
/// by the sum pool of the real pixels' indicator) and the config errors.
final class AveragePooling2DTests: XCTestCase {
    private func spec(_ pool: (Int, Int), strides: (Int, Int)? = nil, _ padding: PoolWindow.Padding = .valid) -> AveragePooling2DSpec {
        AveragePooling2DSpec(window: PoolWindow(height: pool.0, width: pool.1, strideHeight: strides?.0, strideWidth: strides?.1,
                                                padding: padding))
    }

    // MARK: Hand-computed values

    func testTwoByTwoPoolOnAFourByFourImage() throws {
        let probe = imageLayerProbe(spec((2, 2)), ImageShape(height: 4, width: 4, channels: 1), batch: 1)
        store([1, 2, 3, 4,
               5, 6, 7, 8,
               9, 10, 11, 12,
               13, 14, 15, 16], into: probe.input)
        store([4, 8, 12, 16], into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), [3.5, 5.5, 11.5, 13.5])
        XCTAssertEqual(Array(probe.inputGradient), [1, 1, 2, 2,
                                                    1, 1, 2, 2,
                                                    3, 3, 4, 4,
                                                    3, 3, 4, 4])
    }

    /// `same` on 3 × 3, pool 2, stride 2: the border windows average 2 and 1 real pixels
    /// (Keras), not 4 with zeros.
    func testSamePaddingAveragesTheRealPixelsOnly() throws {
        let probe = imageLayerProbe(spec((2, 2), strides: (2, 2), .same), ImageShape(height: 3, width: 3, channels: 1), batch: 1)
        store([1, 2, 3,
               4, 5, 6,
               7, 8, 9], into: probe.input)
        store([4, 2, 2, 1], into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), [3, 4.5, 7.5, 9])
        XCTAssertEqual(Array(probe.inputGradient), [1, 1, 1,
                                                    1, 1, 1,
                                                    1, 1, 1])
    }

    /// 10 channels: one 8-wide block and a 2-channel tail, each channel on its own.
    func testChannelsArePooledSeparately() throws {
        let probe = imageLayerProbe(spec((1, 2)), ImageShape(height: 1, width: 2, channels: 10), batch: 1)
        store((0..<10).map { Float($0) } + (0..<10).map { Float(3 * $0) }, into: probe.input)
        store(Array(repeating: 2, count: 10), into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), (0..<10).map { Float(2 * $0) })
        XCTAssertEqual(Array(probe.inputGradient), Array(repeating: 1, count: 20))
    }

    func testOneByOnePoolIsTheIdentity() throws {
        let probe = imageLayerProbe(spec((1, 1)), ImageShape(height: 2, width: 3, channels: 9), batch: 2)
        var random = TestRandom(seed: 8)
        fill(probe, inputs: random.array(108, -1, 1), seed: 9)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), Array(probe.input))
        XCTAssertEqual(Array(probe.inputGradient), Array(probe.upstream))
    }

    // MARK: Gradients against central differences

    func testGradientsAgainstCentralDifferences() throws {
        for (label, spec, image) in [
            ("2×2 valid", spec((2, 2)), ImageShape(height: 4, width: 4, channels: 3)),
            ("3×3 stride 2 same, odd", spec((3, 3), strides: (2, 2), .same), ImageShape(height: 5, width: 5, channels: 9)),
            ("3×2 stride 1 overlapping same", spec((3, 2), strides: (1, 1), .same), ImageShape(height: 4, width: 4, channels: 2)),
        ] {
            let probe = imageLayerProbe(spec, image, batch: 2)
            var random = TestRandom(seed: 21)
            fill(probe, inputs: random.array(2 * image.featureCount, -1, 1), seed: 22)
            try checkLayer(probe, "average pooling \(label)")
        }
    }

    // MARK: Against torch

    /// A probe of `pool`, `strides`, `padding` on two random images, and torch's result:
    /// F.avg_pool2d for `valid`; for `same`, the sum pool of the zero-padded input over the sum
    /// pool of the padded indicator of real pixels (F.pad's order: left, right, top, bottom).
    private func torchCase(_ pool: (Int, Int), strides: (Int, Int), _ padding: PoolWindow.Padding, _ image: ImageShape,
                           seed: UInt64) throws -> TorchCase {
        let spec = spec(pool, strides: strides, padding)
        let g = try spec.window.geometry(on: image)
        let probe = imageLayerProbe(spec, image, batch: 2)
        var random = TestRandom(seed: seed)
        fill(probe, inputs: random.array(2 * image.featureCount, -1, 1), seed: seed + 100)
        let kernel = "(\(pool.0), \(pool.1)), (\(strides.0), \(strides.1))"
        let expression: String
        if padding == .valid {
            expression = "F.avg_pool2d(x, \(kernel))"
        } else {
            let bottom = max((g.outputHeight - 1) * strides.0 + pool.0 - image.height, 0) - g.padTop
            let right = max((g.outputWidth - 1) * strides.1 + pool.1 - image.width, 0) - g.padLeft
            let pad = "(\(g.padLeft), \(right), \(g.padTop), \(bottom))"
            expression = "F.avg_pool2d(F.pad(x, \(pad)), \(kernel), divisor_override=1)"
                + " / F.avg_pool2d(F.pad(torch.ones_like(x), \(pad)), \(kernel), divisor_override=1)"
        }
        return TorchCase(label: "\(pool) / \(strides) \(padding) on \(image)", probe: probe, expression: expression, image: image)
    }

    func testMatchesTorch() throws {
        try assertMatchTorch([
            torchCase((2, 2), strides: (2, 2), .valid, ImageShape(height: 6, width: 4, channels: 11), seed: 1),
            torchCase((3, 2), strides: (1, 2), .valid, ImageShape(height: 5, width: 5, channels: 3), seed: 2),
            torchCase((2, 2), strides: (3, 3), .valid, ImageShape(height: 8, width: 7, channels: 8), seed: 3),
            torchCase((5, 4), strides: (5, 4), .valid, ImageShape(height: 5, width: 4, channels: 16), seed: 4),
            torchCase((1, 1), strides: (2, 2), .valid, ImageShape(height: 5, width: 4, channels: 4), seed: 5),
            torchCase((3, 3), strides: (2, 2), .same, ImageShape(height: 7, width: 7, channels: 9), seed: 6),
            torchCase((3, 3), strides: (2, 2), .same, ImageShape(height: 8, width: 8, channels: 9), seed: 7),
            torchCase((2, 2), strides: (2, 2), .same, ImageShape(height: 5, width: 6, channels: 3), seed: 8),
            torchCase((2, 3), strides: (3, 1), .same, ImageShape(height: 7, width: 5, channels: 17), seed: 9),
            torchCase((4, 4), strides: (1, 1), .same, ImageShape(height: 3, width: 2, channels: 2), seed: 10),
        ])
    }

    // MARK: Config

    func testShapesAndErrors() throws {
        let model = ModelConfig(inputShape: .image(ImageShape(height: 7, width: 5, channels: 4)),
                                layers: [LayerConfig(spec((2, 2), strides: (2, 2), .same)), LayerConfig(spec((2, 3)))])
        XCTAssertEqual(try model.shapes().map(\.description), ["(None, 4, 3, 4)", "(None, 2, 1, 4)"])
        XCTAssertEqual(spec((2, 2)).inputKind, .image)
        assertDDPError(.config, containing: ["model.layers[0] (average_pooling2d): pool 3×3 does not fit the input (None, 2, 2, 8) with padding: valid"]) {
            try ModelConfig(inputShape: .image(ImageShape(height: 2, width: 2, channels: 8)), layers: [LayerConfig(self.spec((3, 3)))]).shapes()
        }
        assertDDPError(.config, containing: ["model.layers[0] (average_pooling2d): gets the features (None, 12); average_pooling2d takes an image"]) {
            try ModelConfig(inputs: 12, layers: [LayerConfig(self.spec((2, 2)))]).shapes()
        }
    }
}
