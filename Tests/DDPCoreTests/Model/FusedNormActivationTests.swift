import XCTest
@testable import DDPCore

/// The fused BatchNorm → ReLU → Dropout pass (`FusedNormActivation`) against the same layers run
/// one by one: outputs, every gradient, the running statistics and the collectives must be
/// exactly the same, in training and inference, at several batch sizes.
final class FusedNormActivationTests: XCTestCase {
    /// Records each allreduce (element type and length) and sums as if a second rank held the
    /// same rows (every sum doubles), so the synchronized statistics are not the local ones.
    final class TwinRankCommunicator: Communicator {
        var calls: [String] = []
        var rank: Int { 0 }
        var size: Int { 2 }
        func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
            calls.append("float \(buffer.count)")
            for i in buffer.indices { buffer[i] *= 2 }
        }
        func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
            calls.append("double \(buffer.count)")
            for i in buffer.indices { buffer[i] *= 2 }
        }
        func allgather(_ buffer: UnsafeMutableBufferPointer<Float>, block: Int) throws { XCTFail("not used") }
        func gather(bytes block: UnsafeRawBufferPointer, into full: UnsafeMutableRawPointer?, root: Int) throws { XCTFail("not used") }
        func scatter(_ full: UnsafePointer<Float>?, into block: UnsafeMutableBufferPointer<Float>, root: Int) throws { XCTFail("not used") }
        func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws { XCTFail("not used") }
        func barrier() throws { XCTFail("not used") }
        func abort(code: Int32) -> Never { fatalError("abort \(code)") }
        var collectiveTime: Duration { .zero }
        func nodeSharedFloats(_ count: Int) throws -> UnsafeMutablePointer<Float>? { nil }
    }

    /// The default config's shape: dense(no bias) → BatchNorm → ReLU → Dropout, twice. Widths
    /// that are not multiples of 8 exercise the loops' tails.
    func testDefaultShapeMatchesSeparateLayers() throws {
        try assertFusedMatchesSeparate(inputs: 7, [
            Layers.dense(13, useBias: false), Layers.batchNorm(), Layers.activation(.relu), Layers.dropout(0.3),
            Layers.dense(11, useBias: false), Layers.batchNorm(momentum: 0.2), Layers.activation(.relu), Layers.dropout(0.5),
            Layers.dense(3),
        ], fused: [1...3, 5...7])
    }

    /// BatchNorm → ReLU as the first layers (no input gradient, no backward collective), and a
    /// dense layer's inline ReLU before a dropout (expanded layers 3 and 4).
    func testShorterRunsMatchSeparateLayers() throws {
        try assertFusedMatchesSeparate(inputs: 11, [
            Layers.batchNorm(), Layers.activation(.relu), Layers.dense(9, .relu), Layers.dropout(0.4),
            Layers.dense(10), Layers.batchNorm(), Layers.activation(.relu), Layers.dropout(0), Layers.dense(3),
        ], fused: [0...1, 3...4, 6...8])
    }

    /// A frozen BatchNorm runs on its own (inference mode; its ReLU and dropout still fuse), and
    /// an activity penalty inside a run keeps the run apart.
    func testFrozenBatchNormAndActivityPenaltyAreNotFused() throws {
        try assertFusedMatchesSeparate(inputs: 6, [
            Layers.dense(10), Layers.batchNorm(trainable: false), Layers.activation(.relu), Layers.dropout(0.2),
            Layers.dense(10), Layers.batchNorm(), Layers.activation(.relu, activity: Penalty(l1: 0.01)), Layers.dropout(0.3),
            Layers.dense(3),
        ], fused: [2...3])
    }

    /// On an image, BatchNorm normalizes per channel (BatchNorm2d) while ReLU and dropout work on
    /// the whole sample row: the fused pass must walk both the same way. A conv first, so the
    /// run's input gradient (and its backward collective) is wanted.
    func testImageChannelsMatchSeparateLayers() throws {
        let image = ImageShape(height: 3, width: 2, channels: 5)
        try assertFusedMatchesSeparate(inputShape: .image(image), [
            LayerConfig(Conv2DSpec(filters: 5, kernelSize: .init(2, 2), padding: .same)),
            Layers.batchNorm(), Layers.activation(.relu), Layers.dropout(0.3),
            LayerConfig(FlattenSpec()), Layers.dense(3),
        ], fused: [1...3])
    }

    /// A max pooling after the run joins it (each sample pooled while in cache, its gradient
    /// scattered into a row and masked there): with BatchNorm and dropout, and after a conv's
    /// inline ReLU alone, with `same` padding on an odd image and overlapping windows.
    func testMaxPoolingAfterTheRunMatchesSeparateLayers() throws {
        let image = ImageShape(height: 5, width: 3, channels: 9)
        let pool = { (size: Int, stride: Int) in
            LayerConfig(MaxPooling2DSpec(window: PoolWindow(height: size, width: size, strideHeight: stride, strideWidth: stride, padding: .same)))
        }
        try assertFusedMatchesSeparate(inputShape: .image(image), [
            LayerConfig(Conv2DSpec(filters: 9, kernelSize: .init(2, 2), padding: .same)),
            Layers.batchNorm(), Layers.activation(.relu), Layers.dropout(0.3), pool(2, 2),
            LayerConfig(Conv2DSpec(filters: 4, kernelSize: .init(2, 2), padding: .same, activation: .relu)), pool(3, 1),
            LayerConfig(FlattenSpec()), Layers.dense(3),
        ], fused: [1...4, 6...7])
    }

    private func assertFusedMatchesSeparate(inputs: Int, _ layers: [LayerConfig], fused expected: [ClosedRange<Int>],
                                            file: StaticString = #filePath, line: UInt = #line) throws {
        try assertFusedMatchesSeparate(inputShape: .features(inputs), layers, fused: expected, file: file, line: line)
    }

    private func assertFusedMatchesSeparate(inputShape: FeatureShape, _ layers: [LayerConfig], fused expected: [ClosedRange<Int>],
                                            file: StaticString = #filePath, line: UInt = #line) throws {
        let config = ModelConfig(inputShape: inputShape, layers: layers)
        let inputs = inputShape.count
        let maxBatch = 9, classes = 3
        let fused = try Network(config: config, fusing: true)
        let separate = try Network(config: config, fusing: false)
        XCTAssertEqual(fused.fusedRuns, expected, "fused runs", file: file, line: line)
        XCTAssertEqual(separate.fusedRuns, [], file: file, line: line)
        XCTAssertEqual(fused.tensors.map(\.name), separate.tensors.map(\.name), file: file, line: line)
        var random = TestRandom(seed: 23)
        // Non-trivial γ and β (BatchNorm starts at 1 and 0) and running statistics.
        let parameters = random.array(fused.parameterCount, -1, 1)
        let state = random.array(fused.state.count, 0.5, 1.5)
        let networks = [fused, separate]
        let communicators = [TwinRankCommunicator(), TwinRankCommunicator()]
        let contexts = communicators.map { StepContext(communicator: $0, maxBatch: maxBatch) }
        for network in networks {
            network.reserve(maxBatch: maxBatch)
            network.initialize(seed: 5)
            store(parameters, into: network.parameters)
            store(state, into: network.state)
        }
        for (step, batch) in [maxBatch, maxBatch - 1, 2, maxBatch, 5].enumerated() {
            let x = random.array(batch * inputs, -2, 2)
            let labels = (0..<batch).map { _ in Float(random.next() % UInt64(classes)) }
            var trainingOutputs: [[Float]] = [], inferenceOutputs: [[Float]] = []
            for (network, context) in zip(networks, contexts) {
                context.training = true
                context.seed = 42
                context.epoch = step
                for row in 0..<batch { context.sampleRows[row] = Int32(1000 + 37 * row + step) }
                store(x, into: network.input)
                network.zeroGradients()
                try network.forward(batch: batch, context: context)
                trainingOutputs.append(copyOf(network.output, count: batch * classes))
                _ = labels.withUnsafeBufferPointer {
                    Loss.crossEntropy.evaluate(output: network.output, labels: $0.baseAddress!, batch: batch, width: classes,
                                               gradient: network.outputGradient)
                }
                try network.backward(batch: batch, context: context)
                // One SGD step, the same arithmetic on both, so later steps run on new weights.
                for i in 0..<network.trainableCount { network.parameters[i] -= 0.1 * network.gradients[i] }
                context.training = false
                try network.forward(batch: batch, context: context)
                inferenceOutputs.append(copyOf(network.output, count: batch * classes))
            }
            let label = "step \(step), batch \(batch)"
            XCTAssertEqual(trainingOutputs[0], trainingOutputs[1], "training output, \(label)", file: file, line: line)
            XCTAssertEqual(inferenceOutputs[0], inferenceOutputs[1], "inference output, \(label)", file: file, line: line)
            XCTAssertEqual(Array(fused.gradients), Array(separate.gradients), "gradients, \(label)", file: file, line: line)
            XCTAssertEqual(Array(fused.parameters), Array(separate.parameters), "parameters, \(label)", file: file, line: line)
            XCTAssertEqual(Array(fused.state), Array(separate.state), "running statistics, \(label)", file: file, line: line)
            XCTAssertEqual(fused.batchNorms.map(\.batchesTracked), separate.batchNorms.map(\.batchesTracked), file: file, line: line)
            XCTAssertNotEqual(trainingOutputs[0], inferenceOutputs[0], "dropout and batch statistics act in training", file: file, line: line)
        }
        // The comparison can fail: the weights moved.
        XCTAssertNotEqual(Array(fused.parameters), parameters, file: file, line: line)
        XCTAssertEqual(communicators[0].calls, communicators[1].calls, "the same collectives, same sizes", file: file, line: line)
    }
}
