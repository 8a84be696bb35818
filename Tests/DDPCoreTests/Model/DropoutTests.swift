import Foundation
import XCTest
@testable import DDPCore

/// Dropout: its backward pass against central differences with a fixed mask; identity in
/// inference, scaling, masks keyed by sample, and the C mask draw against the scalar one.
final class DropoutTests: XCTestCase {
    // MARK: Gradients against central differences

    func testDropoutTrainingWithFixedMask() throws {
        let dropout = Dropout(configIndex: 2, width: 6, rate: 0.4)
        let probe = LayerProbe(dropout, batch: 4, training: true, seed: 9, epoch: 3, rows: [11, 5, 42, 7])
        var random = TestRandom(seed: 30)
        fill(probe, inputs: random.array(24, -2, 2), seed: 31)
        try checkLayer(probe, "dropout (training)")
        // The check is only meaningful if the mask has both dropped and kept units.
        let ratio = (0..<24).map { probe.inputGradient[$0] / probe.upstream[$0] }
        XCTAssertTrue(ratio.contains(0))
        XCTAssertTrue(ratio.contains { abs($0 - 1 / 0.6) < 1e-5 })
        XCTAssertTrue(ratio.allSatisfy { $0 == 0 || abs($0 - 1 / 0.6) < 1e-5 }, "\(ratio)")
    }

    // MARK: Behaviour

    /// The mask (output ÷ input with inputs of 1) of each batch row.
    private func dropoutMasks(rate: Float, width: Int, rows: [Int], seed: UInt64 = 42, epoch: Int = 0,
                              configIndex: Int = 1) throws -> [[Float]] {
        let probe = LayerProbe(Dropout(configIndex: configIndex, width: width, rate: rate), batch: rows.count,
                               training: true, seed: seed, epoch: epoch, rows: rows)
        probe.input.update(repeating: 1)
        try probe.forward()
        return (0..<rows.count).map { Array(probe.output[$0 * width..<($0 + 1) * width]) }
    }

    func testDropoutIsIdentityInInference() throws {
        let probe = LayerProbe(Dropout(configIndex: 0, width: 8, rate: 0.5), batch: 4, training: false)
        var random = TestRandom(seed: 1)
        store(random.array(32, -3, 3), into: probe.input)
        store(random.array(32, -1, 1), into: probe.upstream)
        try probe.backward()
        XCTAssertEqual(Array(probe.output), Array(probe.input))
        XCTAssertEqual(Array(probe.inputGradient), Array(probe.upstream))
    }

    func testDropoutScalesKeptUnitsAndPreservesTheMean() throws {
        let rate: Float = 0.3, width = 64, batch = 256
        let probe = LayerProbe(Dropout(configIndex: 0, width: width, rate: rate), batch: batch, training: true)
        var random = TestRandom(seed: 2)
        let inputs = random.array(width * batch, 0.5, 1.5)
        store(inputs, into: probe.input)
        try probe.forward()
        var dropped = 0, outputSum = 0.0, inputSum = 0.0
        for i in 0..<width * batch {
            let y = probe.output[i], x = inputs[i]
            if y == 0 {
                dropped += 1
            } else {
                // kept units are x/(1 − rate)
                XCTAssertEqual(Double(y), Double(x) / 0.7, accuracy: 1e-6 * Double(x))
            }
            outputSum += Double(y)
            inputSum += Double(x)
        }
        let fraction = Double(dropped) / Double(width * batch)
        XCTAssertEqual(fraction, 0.3, accuracy: 0.02)          // σ ≈ 0.0036
        XCTAssertEqual(outputSum / inputSum, 1, accuracy: 0.03) // the expected activation is unchanged
    }

    func testDropoutMaskFollowsTheSampleNotTheBatchPosition() throws {
        let a = try dropoutMasks(rate: 0.5, width: 64, rows: [10, 20, 30, 40])
        let b = try dropoutMasks(rate: 0.5, width: 64, rows: [40, 30, 99])
        XCTAssertEqual(a[3], b[0], "sample 40 at positions 3 and 0")
        XCTAssertEqual(a[2], b[1], "sample 30 at positions 2 and 1")
        XCTAssertNotEqual(a[3], a[2], "different samples get different masks")
        XCTAssertNotEqual(b[2], a[3])
        // A batch of one sample alone gets that sample's mask too.
        XCTAssertEqual(try dropoutMasks(rate: 0.5, width: 64, rows: [20])[0], a[1])
    }

    func testDropoutMaskChangesWithEpochSeedAndLayer() throws {
        let base = try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], epoch: 0)
        XCTAssertEqual(try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], epoch: 0), base, "deterministic")
        let nextEpoch = try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], epoch: 1)
        XCTAssertNotEqual(nextEpoch[0], base[0])
        XCTAssertNotEqual(nextEpoch[1], base[1])
        XCTAssertNotEqual(try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], seed: 43)[0], base[0])
        XCTAssertNotEqual(try dropoutMasks(rate: 0.5, width: 64, rows: [7, 8], configIndex: 2)[0], base[0])
    }

    /// The C row loop that the layers call (compiled per CPU: on this machine its AVX-512 or
    /// AVX2 clone) draws exactly what the scalar definition `uniform(rowKey:unit:)` does, at
    /// widths around the vector lengths and at the rates' edges.
    func testKeepFactorsMatchTheScalarDrawBitForBit() {
        let out = UnsafeMutablePointer<Float>.allocate(capacity: 301)
        defer { out.deallocate() }
        for width in [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 256, 300] {
            for rate: Float in [0, 0.3, 0.5, 0.999, 1] {
                for sample in 0..<4 {
                    let rowKey = CounterRandom.bits(42, .dropout, 3, UInt64(sample * 1_000_003), 5)
                    out.initialize(repeating: .nan, count: 301)
                    CounterRandom.keepFactors(rowKey: rowKey, count: width, rate: rate, scale: 2.5, into: out)
                    for unit in 0..<width {
                        let expected: Float = CounterRandom.uniform(rowKey: rowKey, unit: unit) < rate ? 0 : 2.5
                        XCTAssertEqual(out[unit].bitPattern, expected.bitPattern, "width \(width), rate \(rate), unit \(unit)")
                    }
                    XCTAssertTrue(out[width].isNaN, "nothing written past the row (width \(width))")
                }
            }
        }
    }

    func testDropoutInsideANetwork() throws {
        let network = try makeNetwork(inputs: 16, [Layers.dropout(0.5)], maxBatch: 2)
        network.input.update(repeating: 1)
        try network.forward(batch: 2, context: makeContext(maxBatch: 2, training: false))
        XCTAssertEqual(copyOf(network.output, count: 32), Array(repeating: 1, count: 32))
        try network.forward(batch: 2, context: makeContext(maxBatch: 2, training: true))
        let output = copyOf(network.output, count: 32)
        XCTAssertTrue(output.allSatisfy { $0 == 0 || $0 == 2 })
        XCTAssertTrue(output.contains(0) && output.contains(2))
    }
}
