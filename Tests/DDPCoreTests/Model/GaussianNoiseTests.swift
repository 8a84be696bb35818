import Foundation
import XCTest
@testable import DDPCore

/// GaussianNoise: its backward pass against central differences, identity in inference, the
/// noise's statistics, and draws keyed by sample.
final class GaussianNoiseTests: XCTestCase {
    // MARK: Gradients against central differences

    func testGaussianNoiseTraining() throws {
        let noise = GaussianNoise(configIndex: 1, width: 5, stddev: 0.7)
        let probe = LayerProbe(noise, batch: 3, training: true, seed: 4, epoch: 1)
        var random = TestRandom(seed: 40)
        fill(probe, inputs: random.array(15, -2, 2), seed: 41)
        try checkLayer(probe, "gaussian noise (training)")
        try probe.forward()
        XCTAssertTrue((0..<15).contains { probe.output[$0] != probe.input[$0] }, "noise was not applied")
    }

    // MARK: Behaviour

    func testGaussianNoise() throws {
        let width = 64, batch = 64
        let inference = LayerProbe(GaussianNoise(configIndex: 0, width: width, stddev: 0.5), batch: batch, training: false)
        var random = TestRandom(seed: 3)
        store(random.array(width * batch, -1, 1), into: inference.input)
        try inference.forward()
        XCTAssertEqual(Array(inference.output), Array(inference.input), "identity in inference")

        let training = LayerProbe(GaussianNoise(configIndex: 0, width: width, stddev: 0.5), batch: batch, training: true)
        store(Array(inference.input), into: training.input)
        try training.forward()
        let noise = (0..<width * batch).map { Double(training.output[$0] - training.input[$0]) }
        let mean = noise.reduce(0, +) / Double(noise.count)
        let std = (noise.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(noise.count)).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 0.03)          // σ/√4096 ≈ 0.008
        XCTAssertEqual(std, 0.5, accuracy: 0.025)

        // Keyed by sample like dropout: the same sample in another position gets the same noise.
        let a = LayerProbe(GaussianNoise(configIndex: 0, width: 8, stddev: 1), batch: 2, training: true, rows: [5, 6])
        let b = LayerProbe(GaussianNoise(configIndex: 0, width: 8, stddev: 1), batch: 2, training: true, rows: [6, 5])
        try a.forward()
        try b.forward()
        XCTAssertEqual(Array(a.output[0..<8]), Array(b.output[8..<16]))
        XCTAssertNotEqual(Array(a.output[0..<8]), Array(a.output[8..<16]))
    }
}
