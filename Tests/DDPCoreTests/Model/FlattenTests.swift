import Foundation
import XCTest
@testable import DDPCore

/// Flatten: rows pass unchanged both ways; the shape becomes features that remember their
/// image; flatten of flat features is an error; and a dense layer after it exports its kernel
/// in torch's (C, H, W) order and computes with it as nn.Linear after nn.Flatten of NCHW would.
final class FlattenTests: XCTestCase {
    func testCopiesRowsBothWays() throws {
        let probe = imageLayerProbe(FlattenSpec(), ImageShape(height: 2, width: 3, channels: 2), batch: 3)
        var random = TestRandom(seed: 41)
        fill(probe, inputs: random.array(36, -1, 1), seed: 42)
        try probe.backward()
        XCTAssertEqual(probe.layer.outputWidth, 12)
        XCTAssertEqual(probe.layer.displayName, "Flatten")
        XCTAssertEqual(Array(probe.output), Array(probe.input))
        XCTAssertEqual(Array(probe.inputGradient), Array(probe.upstream))
    }

    func testShapeRemembersTheImage() throws {
        let image = ImageShape(height: 7, width: 7, channels: 32)
        XCTAssertEqual(try FlattenSpec().outputShape(input: .image(image)), .features(1568, flattenedFrom: image))
        XCTAssertEqual(FlattenSpec().inputKind, .image)
        XCTAssertFalse(FlattenSpec().hasParameters)
        // A shape-keeping layer after the flatten passes the image on to the dense layer.
        let model = ModelConfig(inputShape: .image(image), layers: [LayerConfig(FlattenSpec()), LayerConfig(DropoutSpec(rate: 0.5))])
        XCTAssertEqual(try model.shapes().last?.flattenedImage, image)
    }

    func testFlattenOfFlatFeaturesIsAnError() {
        assertDDPError(.config, containing: ["model.layers[1] (flatten): gets the features (None, 48), which are flat already",
                                             "nothing to flatten"]) {
            try ModelConfig(inputShape: .image(ImageShape(height: 4, width: 4, channels: 3)),
                            layers: [LayerConfig(FlattenSpec()), LayerConfig(FlattenSpec())]).shapes()
        }
        assertDDPError(.config, containing: ["model.layers[0] (flatten): gets the features (None, 10)"]) {
            try ModelConfig(inputs: 10, layers: [LayerConfig(FlattenSpec())]).shapes()
        }
    }

    /// The stored kernel is (units, H, W, C); the file's is [units, C·H·W], element
    /// [u, (c·H + y)·W + x] = stored [u, (y·W + x)·C + c].
    func testDenseAfterFlattenExportsTheKernelInTorchOrder() throws {
        let image = ImageShape(height: 2, width: 3, channels: 2)
        let network = try Network(config: ModelConfig(inputShape: .image(image),
                                                      layers: [LayerConfig(FlattenSpec()), LayerConfig(DenseSpec(units: 4))]))
        network.reserve(maxBatch: 1)
        network.initialize(seed: 5)
        let tensors = Dictionary(uniqueKeysWithValues: network.exportTensors().map { ($0.name, $0) })
        let kernel = try XCTUnwrap(tensors["1.weight"])
        XCTAssertEqual(kernel.shape, [4, 12])
        let file = try XCTUnwrap(kernel.floats())
        // Unit 1, channel 1, row 0, column 2: file index 1·12 + (1·2 + 0)·3 + 2 = 20, stored 1·12 + (0·3 + 2)·2 + 1 = 17.
        XCTAssertEqual(file[20], network.parameters[17])
        XCTAssertNotEqual(file[20], network.parameters[20])

        // nn.Linear after nn.Flatten: y[u] = Σ W_file[u, chw] · x_NCHW[chw] + b[u], on the same image.
        var random = TestRandom(seed: 6)
        let pixels = random.array(12, -1, 1)
        store(pixels, into: network.input)
        try network.forward(batch: 1, context: makeContext(maxBatch: 1, training: false))
        let bias = try XCTUnwrap(tensors["1.bias"]?.floats())
        for unit in 0..<4 {
            var expected = Double(bias[unit])
            for c in 0..<2 {
                for y in 0..<2 {
                    for x in 0..<3 {
                        expected += Double(file[unit * 12 + (c * 2 + y) * 3 + x]) * Double(pixels[(y * 3 + x) * 2 + c])
                    }
                }
            }
            XCTAssertEqual(Double(network.output[unit]), expected, accuracy: 1e-5, "unit \(unit)")
        }
    }
}
