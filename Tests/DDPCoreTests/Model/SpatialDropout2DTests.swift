import Foundation
import XCTest
@testable import DDPCore

/// SpatialDropout2D: whole channels dropped and the kept ones scaled by 1/(1 − rate), the
/// same per-channel draw as Dropout's per-unit one, masks keyed by sample (not batch position
/// or batch), the drop fraction, the identity in inference, central differences with a fixed
/// mask, torch's nn.Dropout2d's structure, and the config error on flat features.
final class SpatialDropout2DTests: XCTestCase {
    /// The per-(sample, channel) factor: output ÷ input with inputs of 1, checked to be the same
    /// over all pixels of the channel.
    private func channelMasks(rate: Float, image: ImageShape, rows: [Int], seed: UInt64 = 42, epoch: Int = 0,
                              configIndex: Int = 1) throws -> [[Float]] {
        let probe = imageLayerProbe(SpatialDropout2DSpec(rate: rate), image, batch: rows.count, configIndex: configIndex,
                                    rows: rows, seed: seed, epoch: epoch)
        probe.input.update(repeating: 1)
        try probe.forward()
        let pixels = image.height * image.width, channels = image.channels
        return (0..<rows.count).map { sample in
            (0..<channels).map { c in
                let factor = probe.output[sample * image.featureCount + c]
                for pixel in 0..<pixels {
                    XCTAssertEqual(probe.output[(sample * pixels + pixel) * channels + c], factor, "sample \(sample), channel \(c)")
                }
                return factor
            }
        }
    }

    func testDropsWholeChannelsAndScalesTheKeptOnes() throws {
        let masks = try channelMasks(rate: 0.4, image: ImageShape(height: 3, width: 4, channels: 21), rows: [3, 9, 27, 81])
        let values = Set(masks.joined())
        XCTAssertEqual(values, [0, 1 / Float(0.6)], "every channel is all zero or all 1/(1 − rate)")
    }

    /// Channel c of a sample is kept exactly when Dropout (same layer index, seed, epoch and
    /// sample) keeps unit c of a C-wide row: the same counter-based draw.
    func testDrawsAsDropoutDrawsItsUnits() throws {
        let image = ImageShape(height: 2, width: 2, channels: 37), rows = [5, 17, 1_000_003]
        let spatial = try channelMasks(rate: 0.3, image: image, rows: rows, seed: 7, epoch: 2, configIndex: 4)
        let dropout = LayerProbe(Dropout(configIndex: 4, width: 37, rate: 0.3), batch: 3, training: true, seed: 7, epoch: 2, rows: rows)
        dropout.input.update(repeating: 1)
        try dropout.forward()
        XCTAssertEqual(spatial.flatMap { $0 }, Array(dropout.output))
    }

    func testMaskFollowsTheSampleNotTheBatch() throws {
        let image = ImageShape(height: 2, width: 3, channels: 64)
        let a = try channelMasks(rate: 0.5, image: image, rows: [10, 20, 30, 40])
        let b = try channelMasks(rate: 0.5, image: image, rows: [40, 30, 99])
        XCTAssertEqual(a[3], b[0], "sample 40 at positions 3 and 0")
        XCTAssertEqual(a[2], b[1], "sample 30 at positions 2 and 1")
        XCTAssertNotEqual(a[3], a[2], "different samples get different masks")
        XCTAssertEqual(try channelMasks(rate: 0.5, image: image, rows: [20])[0], a[1], "a batch of one")
    }

    func testMaskChangesWithEpochSeedAndLayer() throws {
        let image = ImageShape(height: 1, width: 2, channels: 64)
        let base = try channelMasks(rate: 0.5, image: image, rows: [7, 8])
        XCTAssertEqual(try channelMasks(rate: 0.5, image: image, rows: [7, 8]), base, "deterministic")
        XCTAssertNotEqual(try channelMasks(rate: 0.5, image: image, rows: [7, 8], epoch: 1)[0], base[0])
        XCTAssertNotEqual(try channelMasks(rate: 0.5, image: image, rows: [7, 8], seed: 43)[0], base[0])
        XCTAssertNotEqual(try channelMasks(rate: 0.5, image: image, rows: [7, 8], configIndex: 2)[0], base[0])
    }

    func testDropFractionIsNearTheRate() throws {
        let masks = try channelMasks(rate: 0.3, image: ImageShape(height: 1, width: 1, channels: 256), rows: Array(0..<64))
        let dropped = masks.joined().filter { $0 == 0 }.count
        XCTAssertEqual(Double(dropped) / Double(64 * 256), 0.3, accuracy: 0.02)   // σ ≈ 0.0036
    }

    func testIdentityInInference() throws {
        let image = ImageShape(height: 3, width: 3, channels: 5)
        let probe = imageLayerProbe(SpatialDropout2DSpec(rate: 0.5), image, batch: 2, training: false)
        var random = TestRandom(seed: 51)
        fill(probe, inputs: random.array(90, -1, 1), seed: 52)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), Array(probe.input))
        XCTAssertEqual(Array(probe.inputGradient), Array(probe.upstream))
    }

    func testGradientsAgainstCentralDifferencesWithAFixedMask() throws {
        let image = ImageShape(height: 2, width: 3, channels: 10)
        let probe = imageLayerProbe(SpatialDropout2DSpec(rate: 0.4), image, batch: 3, rows: [4, 8, 15], seed: 9, epoch: 3)
        var random = TestRandom(seed: 53)
        fill(probe, inputs: random.array(180, -2, 2), seed: 54)
        try checkLayer(probe, "spatial dropout (training)")
        let ratios = Set((0..<180).map { probe.inputGradient[$0] / probe.upstream[$0] })
        XCTAssertTrue(ratios.contains(0) && ratios.contains { abs($0 - 1 / 0.6) < 1e-5 }, "both dropped and kept channels: \(ratios)")
    }

    /// torch's nn.Dropout2d has the structure this layer has (each channel of a sample all zero
    /// or all 1/(1 − p)) on the same NCHW tensor: the reference semantics, not its random stream.
    func testTorchDropout2dHasTheSameStructure() throws {
        let python = try InteropPython.require(["torch"])
        let script = """
            import torch
            torch.manual_seed(0)
            y = torch.nn.Dropout2d(p=0.4).train()(torch.ones(16, 21, 3, 4))
            per_channel = y.flatten(2)
            whole = ((per_channel == 0).all(2) | (per_channel == 1 / 0.6).all(2)).all().item()
            print(whole, sorted(set(round(v, 6) for v in y.flatten().tolist())))
            """
        let (status, output) = try runPython(python, ["-c", script])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("True [0.0, 1.666667]"), output)
        try testDropsWholeChannelsAndScalesTheKeptOnes()
    }

    func testShapesAndErrors() throws {
        let image = ImageShape(height: 6, width: 6, channels: 8)
        XCTAssertEqual(try SpatialDropout2DSpec(rate: 0.2).outputShape(input: .image(image)), .image(image))
        XCTAssertEqual(SpatialDropout2DSpec(rate: 0.2).inputKind, .image)
        XCTAssertEqual(imageLayerProbe(SpatialDropout2DSpec(rate: 0.2), image, batch: 1).layer.displayName, "SpatialDropout2D(0.2)")
        assertDDPError(.config, containing: ["model.layers[1] (spatial_dropout2d): gets the features (None, 288); spatial_dropout2d takes an image",
                                             "{type: dropout}"]) {
            try ModelConfig(inputShape: .image(image), layers: [LayerConfig(FlattenSpec()), LayerConfig(SpatialDropout2DSpec(rate: 0.2))]).shapes()
        }
    }
}
