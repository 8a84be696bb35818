import Foundation
import XCTest
@testable import DDPCore

/// GlobalMaxPooling2D: image (H, W, C) → features (C), the largest value of each channel, its
/// gradient routed to that pixel (the first of a tie); central differences; torch's
/// F.adaptive_max_pool2d(x, 1); the config errors.
final class GlobalMaxPooling2DTests: XCTestCase {
    func testTakesEachChannelsMaximum() throws {
        let probe = imageLayerProbe(GlobalMaxPooling2DSpec(), ImageShape(height: 2, width: 2, channels: 2), batch: 2)
        store([1, 10,  2, 20,  3, 30,  -6, 60,
               -1, 5,  -2, 5,  -1, 4,  -3, 0], into: probe.input)
        store([4, 8, -4, 2], into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(probe.layer.outputWidth, 2)
        XCTAssertEqual(probe.layer.displayName, "GlobalMaxPooling2D")
        XCTAssertEqual(Array(probe.output), [3, 60, -1, 5])
        // Sample 1: both channels tie (−1 at pixels 0 and 2, 5 at pixels 0 and 1): the first wins.
        XCTAssertEqual(Array(probe.inputGradient), [0, 0,  0, 0,  4, 0,  0, 8,
                                                    -4, 2,  0, 0,  0, 0,  0, 0])
    }

    func testGradientsAgainstCentralDifferences() throws {
        let image = ImageShape(height: 3, width: 4, channels: 10)
        let probe = imageLayerProbe(GlobalMaxPooling2DSpec(), image, batch: 2)
        fill(probe, inputs: distinctValues(2 * image.featureCount, seed: 33), seed: 34)
        try checkLayer(probe, "global max pooling")
    }

    func testMatchesTorch() throws {
        let cases = [(1, ImageShape(height: 5, width: 3, channels: 19)), (2, ImageShape(height: 1, width: 1, channels: 8)),
                     (3, ImageShape(height: 7, width: 7, channels: 3))].map { seed, image in
            let probe = imageLayerProbe(GlobalMaxPooling2DSpec(), image, batch: 3)
            var random = TestRandom(seed: UInt64(seed))
            fill(probe, inputs: random.array(3 * image.featureCount, -1, 1), seed: UInt64(seed) + 10)
            return TorchCase(label: "global max on \(image)", probe: probe, expression: "F.adaptive_max_pool2d(x, 1)", image: image)
        }
        try assertMatchTorch(cases)
    }

    func testShapesAndErrors() throws {
        let model = ModelConfig(inputShape: .image(ImageShape(height: 5, width: 5, channels: 12)),
                                layers: [LayerConfig(GlobalMaxPooling2DSpec()), LayerConfig(DenseSpec(units: 3))])
        XCTAssertEqual(try model.shapes(), [.features(12), .features(3)])
        XCTAssertEqual(GlobalMaxPooling2DSpec().inputKind, .image)
        assertDDPError(.config, containing: ["model.layers[0] (global_max_pooling2d): gets the features (None, 25); "
                                             + "global_max_pooling2d takes an image (H, W, C)"]) {
            try ModelConfig(inputs: 25, layers: [LayerConfig(GlobalMaxPooling2DSpec())]).shapes()
        }
    }
}
