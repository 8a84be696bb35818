import XCTest
@testable import DDPCore

/// The gradient sync's layout of the network's memory: blocks, padding and tail are the
/// sync's; the network sees only its parameters and gradients.
final class SyncBuffersTests: XCTestCase {
    private let layers = [Layers.dense(7), Layers.dense(5, trainable: false), Layers.dense(3)]

    /// 3·7 + 7 + 5·3 + 3 = 46 trainable floats, 7·5 + 5 = 40 frozen after them.
    func testBlocksArePaddedToCacheLinesAndTheTailFollowsThem() throws {
        let network = try makeNetwork(inputs: 3, layers)
        XCTAssertEqual(network.trainableCount, 46)
        XCTAssertEqual(network.parameterCount, 86)
        let one = try SyncBuffers(layout: network.layout, shards: 1, tail: 5)
        XCTAssertEqual(one.block, 46)
        XCTAssertEqual(one.reductionBuffer.count, 51)
        XCTAssertEqual(one.tail, one.reductionBuffer.baseAddress! + 46)
        XCTAssertEqual(one.paddedParameters.count, 86)
        let four = try SyncBuffers(layout: network.layout, shards: 4, tail: 0)
        XCTAssertEqual(four.block, 16, "⌈46 / 4⌉ = 12, rounded up to 16 floats")
        XCTAssertEqual(four.paddedGradients.count, 64)
        XCTAssertEqual(four.reductionBuffer.count, 64)
        XCTAssertEqual(four.paddedParameters.count, 86, "the padding of the trainable blocks overlaps the frozen tensors")
        XCTAssertTrue(four.reductionBuffer.allSatisfy { $0 == 0 } && four.paddedParameters.allSatisfy { $0 == 0 })
    }

    /// The network computes in the sync's memory: its gradients are the reduction buffer's
    /// start, its parameters the padded buffer's, and zeroing the gradients leaves the padding
    /// and the tail alone.
    func testTheNetworkComputesInTheSyncsMemory() throws {
        let (network, sync) = try AllreduceSync.make(model: ModelConfig(inputs: 3, layers: layers),
                                                     optimizer: OptimizerConfig(kind: .adam, learningRate: 0.01),
                                                     communicator: LocalCommunicator())
        XCTAssertEqual(sync.optimizer.count, 46)
        network.reserve(maxBatch: 4)
        network.initialize(seed: 3)
        store([0.5, -1, 2, 1, 0, -0.5, 0.25, 3, -2, 1, 1, 1], into: network.input)
        let context = makeContext(maxBatch: 4, training: true)
        try network.forward(batch: 4, context: context)
        for i in 0..<12 { network.outputGradient[i] = Float(i % 5) - 2 }
        try network.backward(batch: 4, context: context)
        XCTAssertGreaterThan(network.gradients.map(abs).max() ?? 0, 0)
        let totals = try sync.reduce(lossSum: 1.5, samples: 4, correct: 2, nonFinite: false, stop: false)
        XCTAssertEqual(totals.lossSum, 1.5)
        XCTAssertEqual(totals.samples, 4)
        let before = Array(network.parameters)
        try sync.update(lr: 0.01)
        XCTAssertNotEqual(Array(network.parameters.prefix(46)), Array(before.prefix(46)), "the trainable prefix trained")
        XCTAssertEqual(Array(network.parameters.suffix(40)), Array(before.suffix(40)), "the frozen tensors did not")
    }
}
