import XCTest
@testable import DDPCore

/// The model's shapes as a config states them: where the input shape comes from, the output
/// shape of every layer, and one clear error naming the layer for every layer that cannot take
/// what comes before it.
final class ModelConfigTests: XCTestCase {
    /// A config over 28×28 grey images (npy files the parse does not open) with `layers`.
    private func parse(_ layers: [String], inputs: String? = nil, imageShape: String? = "[28, 28, 1]") throws -> TrainingConfig {
        try TrainingConfig.parse(yaml: """
            data:
              train: {format: npy, features: /nonexistent/x.npy, labels: /nonexistent/y.npy}
            \(imageShape.map { "  image_shape: \($0)" } ?? "")
            model:
            \(inputs.map { "  inputs: \($0)" } ?? "")
              layers:
            \(layers.map { "    - " + $0 }.joined(separator: "\n"))
            optimizer: {type: sgd, lr: 0.1}
            """)
    }

    func testShapesOfTheTorchPeersCNN() throws {
        let config = try parse([
            "{type: conv2d, filters: 32, kernel_size: 3, padding: same, use_bias: false}", "{type: batchnorm}",
            "{type: activation, fn: relu}", "{type: max_pooling2d, pool_size: 2}",
            "{type: conv2d, filters: 64, kernel_size: 3, padding: same}", "{type: max_pooling2d, pool_size: 2}",
            "{type: flatten}", "{type: dropout, rate: 0.3}", "{type: dense, units: 10}",
        ])
        XCTAssertEqual(config.model.inputShape, .image(ImageShape(height: 28, width: 28, channels: 1)))
        XCTAssertEqual(try config.model.shapes().map(\.description), [
            "(None, 28, 28, 32)", "(None, 28, 28, 32)", "(None, 28, 28, 32)", "(None, 14, 14, 32)",
            "(None, 14, 14, 64)", "(None, 7, 7, 64)", "(None, 3136)", "(None, 3136)", "(None, 10)",
        ])
        let flattened = try config.model.shapes()[7]
        XCTAssertEqual(flattened.flattenedImage, ImageShape(height: 7, width: 7, channels: 64), "dropout passes the flatten's image on")
        let layout = try ParameterLayout(config: config.model)
        XCTAssertEqual(layout.tensors.first { $0.name == "0.weight" }?.shape, [32, 1, 3, 3], "nn.Conv2d's [out, in, kh, kw]")
        XCTAssertEqual(layout.tensors.first { $0.name == "8.weight" }?.shape, [10, 3136])
        XCTAssertEqual(layout.counters, ["1.num_batches_tracked"])
    }

    /// An MLP on the same images sees flat features: its first layer decides.
    func testAnMLPOnImagesSeesFeatures() throws {
        let config = try parse(["{type: batchnorm}", "{type: dense, units: 10}"])
        XCTAssertEqual(config.model.inputShape, .features(784))
        XCTAssertEqual(try parse(["{type: dense, units: 10}"], inputs: "784").model.inputShape, .features(784))
    }

    func testInputShapeFromTheConfigWithoutDataShape() throws {
        let config = try parse(["{type: conv2d, filters: 2, kernel_size: 3}", "{type: flatten}", "{type: dense, units: 2}"],
                               inputs: "[5, 6, 3]", imageShape: nil)
        XCTAssertEqual(try config.model.shapes().map(\.description), ["(None, 3, 4, 2)", "(None, 24)", "(None, 2)"])
        assertDDPError(.config, containing: ["model.layers", "take images", "model.inputs: [height, width, channels]"]) {
            _ = try self.parse(["{type: conv2d, filters: 2, kernel_size: 3}"], inputs: "90", imageShape: nil)
        }
    }

    /// Each mistake gets one error that names the layer and says what it needs.
    func testLayersThatCannotTakeTheirInputNameThemselves() {
        let cases: [([String], [String])] = [
            (["{type: flatten}", "{type: conv2d, filters: 4, kernel_size: 3}"], ["model.layers[1] (conv2d)", "image"]),
            (["{type: flatten}", "{type: spatial_dropout2d, rate: 0.2}"], ["model.layers[1] (spatial_dropout2d)", "{type: dropout}"]),
            (["{type: max_pooling2d, pool_size: 30}"], ["model.layers[0] (max_pooling2d)", "pool 30×30 does not fit", "(None, 28, 28, 1)"]),
            (["{type: conv2d, filters: 4, kernel_size: 3}", "{type: dense, units: 10}"],
             ["model.layers[1] (dense)", "(None, 26, 26, 4)", "{type: flatten}"]),
            (["{type: conv2d, filters: 4, kernel_size: 29}"], ["model.layers[0] (conv2d)", "kernel 29×29 does not fit", "padding: valid"]),
            (["{type: flatten}", "{type: flatten}"], ["model.layers[1] (flatten)", "flat already"]),
            (["{type: conv2d, filters: 4, kernel_size: 3}", "{type: activation, fn: softmax}"], ["model.layers[1] (activation)", "softmax"]),
        ]
        for (layers, parts) in cases {
            assertDDPError(.config, containing: parts) { _ = try self.parse(layers) }
        }
    }

    /// A batchnorm after flatten holds its per-feature tensors in the image's (H, W, C) order;
    /// the file has them in nn.Flatten's (C, H, W) order, as BatchNorm1d after it expects, and
    /// reads them back.
    func testBatchNormAfterFlattenExportsTorchsOrder() throws {
        let image = ImageShape(height: 2, width: 3, channels: 2)
        let network = try Network(config: ModelConfig(inputShape: .image(image), layers: [
            LayerConfig(FlattenSpec()), Layers.batchNorm(), Layers.dense(2),
        ]))
        let gamma = try XCTUnwrap(network.tensors.first { $0.name == "1.weight" })
        for i in 0..<12 { network.parameters[gamma.offset + i] = Float(i) }   // stored index (h·3 + w)·2 + c
        let exported = try XCTUnwrap(network.exportTensors().first { $0.name == "1.weight" }?.floats())
        var expected: [Float] = []
        for c in 0..<2 { for h in 0..<2 { for w in 0..<3 { expected.append(Float((h * 3 + w) * 2 + c)) } } }
        XCTAssertEqual(exported, expected)
        XCTAssertEqual(network.exportTensors().first { $0.name == "1.running_var" }?.shape, [12])
        let copy = try Network(config: network.config)
        try copy.importTensors(Dictionary(uniqueKeysWithValues: network.exportTensors().map { ($0.name, $0) }), file: "test")
        XCTAssertEqual(Array(copy.parameters), Array(network.parameters))
    }
}
