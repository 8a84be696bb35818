import Foundation
import XCTest
@testable import DDPCore

/// GlobalAveragePooling2D: image (H, W, C) → features (C), the mean of each channel; its
/// gradient spread evenly; central differences; torch's x.mean((2, 3)); the config errors.
final class GlobalAveragePooling2DTests: XCTestCase {
    func testMeansEachChannelOverAllPixels() throws {
        let probe = imageLayerProbe(GlobalAveragePooling2DSpec(), ImageShape(height: 2, width: 2, channels: 2), batch: 2)
        store([1, 10,  2, 20,  3, 30,  6, 60,
               -1, 0,  -1, 0,  -1, 0,  -1, 4], into: probe.input)
        store([4, 8, -4, 2], into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(probe.layer.outputWidth, 2)
        XCTAssertEqual(probe.layer.displayName, "GlobalAveragePooling2D")
        XCTAssertEqual(Array(probe.output), [3, 30, -1, 1])
        XCTAssertEqual(Array(probe.inputGradient), [1, 2,  1, 2,  1, 2,  1, 2,
                                                    -1, 0.5,  -1, 0.5,  -1, 0.5,  -1, 0.5])
    }

    func testGradientsAgainstCentralDifferences() throws {
        let image = ImageShape(height: 3, width: 4, channels: 10)
        let probe = imageLayerProbe(GlobalAveragePooling2DSpec(), image, batch: 2)
        var random = TestRandom(seed: 31)
        fill(probe, inputs: random.array(2 * image.featureCount, -1, 1), seed: 32)
        try checkLayer(probe, "global average pooling")
    }

    func testMatchesTorch() throws {
        let cases = [(1, ImageShape(height: 5, width: 3, channels: 19)), (2, ImageShape(height: 1, width: 1, channels: 8)),
                     (3, ImageShape(height: 7, width: 7, channels: 3))].map { seed, image in
            let probe = imageLayerProbe(GlobalAveragePooling2DSpec(), image, batch: 3)
            var random = TestRandom(seed: UInt64(seed))
            fill(probe, inputs: random.array(3 * image.featureCount, -1, 1), seed: UInt64(seed) + 10)
            return TorchCase(label: "global average on \(image)", probe: probe, expression: "x.mean((2, 3), keepdim=True)", image: image)
        }
        try assertMatchTorch(cases)
    }

    func testShapesAndErrors() throws {
        let model = ModelConfig(inputShape: .image(ImageShape(height: 7, width: 7, channels: 64)),
                                layers: [LayerConfig(GlobalAveragePooling2DSpec()), LayerConfig(DenseSpec(units: 10))])
        XCTAssertEqual(try model.shapes(), [.features(64), .features(10)])
        XCTAssertEqual(GlobalAveragePooling2DSpec().inputKind, .image)
        assertDDPError(.config, containing: ["model.layers[1] (global_average_pooling2d): gets the features (None, 64); "
                                             + "global_average_pooling2d takes an image (H, W, C)"]) {
            try ModelConfig(inputShape: .image(ImageShape(height: 7, width: 7, channels: 64)),
                            layers: [LayerConfig(GlobalAveragePooling2DSpec()), LayerConfig(GlobalAveragePooling2DSpec())]).shapes()
        }
    }
}
