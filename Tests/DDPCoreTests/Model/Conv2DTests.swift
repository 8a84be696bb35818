import Foundation
import XCTest
import _CBLAS
@testable import DDPCore

/// Conv2D: its backward pass against central differences over the geometries that take
/// different paths (same and valid padding, the odd padding pixel of a stride-2 'same', dilation,
/// 1×1, a kernel larger than the input, a stride larger than the kernel, chunks of samples),
/// forward values by hand and against torch (both gradients too), the spec's shapes, parse
/// errors and the [out, in, kh, kw] export. `testBenchmarkAgainstBareGEMMs` times the layer
/// against its bare GEMMs when DDP_BENCH=1 (run it in a release build).
final class Conv2DTests: XCTestCase {
    typealias Pair = Conv2DSpec.Pair

    /// One convolution to build: its input image, spec and batch.
    private struct Case {
        var label: String
        var input: ImageShape
        var filters: Int
        var kernel: Pair
        var strides = Pair(1, 1)
        var padding = Conv2DSpec.Padding.valid
        var dilation = Pair(1, 1)
        var batch = 2
        var useBias = true
        var chunkSamples: Int? = nil

        var spec: Conv2DSpec {
            Conv2DSpec(filters: filters, kernelSize: kernel, strides: strides, padding: padding, dilationRate: dilation, useBias: useBias)
        }
    }

    private func layer(_ c: Case, weightNoise: Float = 0, trainable: Bool = true, configIndex: Int = 0) throws -> Conv2D {
        Conv2D(configIndex: configIndex, geometry: try c.spec.geometry(input: .image(c.input)), useBias: c.useBias,
               kernelInitializer: .zeros, biasInitializer: .zeros, kernelRegularizer: nil, biasRegularizer: nil,
               weightNoise: weightNoise, trainable: trainable, chunkSamples: c.chunkSamples)
    }

    /// A probe of the case's layer with random parameters, inputs and upstream gradient.
    private func probe(_ c: Case, seed: UInt64, weightNoise: Float = 0, trainable: Bool = true) throws -> LayerProbe {
        let probe = LayerProbe(try layer(c, weightNoise: weightNoise, trainable: trainable), batch: c.batch)
        var random = TestRandom(seed: seed)
        store(random.array(probe.parameterCount, -1, 1), into: probe.parameters)
        fill(probe, inputs: random.array(c.batch * probe.layer.inputWidth, -2, 2), seed: seed + 1)
        return probe
    }

    /// The geometries whose index arithmetic differs; each with several channels in and out.
    private var gradientCases: [Case] {
        let image = { (h: Int, w: Int, c: Int) in ImageShape(height: h, width: w, channels: c) }
        return [
            Case(label: "3×3 same", input: image(5, 5, 2), filters: 3, kernel: Pair(3, 3), padding: .same),
            Case(label: "3×3 valid", input: image(6, 5, 2), filters: 3, kernel: Pair(3, 3)),
            Case(label: "stride 2 same, even input", input: image(6, 6, 2), filters: 2, kernel: Pair(3, 3), strides: Pair(2, 2), padding: .same),
            Case(label: "stride 2 same, odd input", input: image(7, 5, 2), filters: 2, kernel: Pair(3, 3), strides: Pair(2, 2), padding: .same),
            Case(label: "dilation 2 valid", input: image(7, 6, 2), filters: 2, kernel: Pair(3, 2), dilation: Pair(2, 2)),
            Case(label: "dilation 2 same", input: image(5, 4, 3), filters: 2, kernel: Pair(3, 3), padding: .same, dilation: Pair(2, 1)),
            Case(label: "1×1", input: image(3, 4, 3), filters: 4, kernel: Pair(1, 1), batch: 3),
            Case(label: "1×1 stride 2", input: image(5, 4, 3), filters: 2, kernel: Pair(1, 1), strides: Pair(2, 2)),
            Case(label: "5×5 kernel on a 3×3 input, same", input: image(3, 3, 2), filters: 2, kernel: Pair(5, 5), padding: .same),
            Case(label: "4×4 kernel on a 3×3 input, same", input: image(3, 3, 2), filters: 2, kernel: Pair(4, 4), padding: .same),
            Case(label: "stride 3 over a 2×2 kernel", input: image(8, 7, 2), filters: 2, kernel: Pair(2, 2), strides: Pair(3, 3)),
            Case(label: "stride 3 over a 2×2 kernel, same", input: image(8, 7, 2), filters: 2, kernel: Pair(2, 2), strides: Pair(3, 3), padding: .same),
            Case(label: "2×3 kernel, strides 1×2, same", input: image(5, 6, 2), filters: 3, kernel: Pair(2, 3), strides: Pair(1, 2), padding: .same),
            Case(label: "one sample per chunk", input: image(4, 4, 2), filters: 3, kernel: Pair(3, 3), padding: .same, batch: 3, chunkSamples: 1),
            Case(label: "no bias", input: image(4, 4, 2), filters: 2, kernel: Pair(2, 2), useBias: false),
            Case(label: "6 channels: kernel rows of 18 values", input: image(5, 5, 6), filters: 2, kernel: Pair(3, 3), padding: .same),
        ]
    }

    // MARK: Gradients against central differences

    func testGradientsMatchCentralDifferences() throws {
        for (index, c) in gradientCases.enumerated() {
            try checkLayer(try probe(c, seed: 10 + UInt64(index)), c.label)
        }
    }

    /// Weight noise: forward and backward use W̃ = W + σε for the step (the same ε in every
    /// finite-difference forward), dW goes to W and dX uses W̃.
    func testWeightNoiseGradients() throws {
        let c = Case(label: "noise", input: ImageShape(height: 5, width: 5, channels: 2), filters: 3, kernel: Pair(3, 3), padding: .same)
        let probe = try probe(c, seed: 3, weightNoise: 0.5)
        probe.context.globalStep = 9
        try checkLayer(probe, "conv2d with weight noise")
        let noisy = copyOf(probe.output.baseAddress!, count: c.batch * probe.layer.outputWidth)
        probe.context.training = false
        try probe.forward()
        let clean = copyOf(probe.output.baseAddress!, count: noisy.count)
        XCTAssertGreaterThan(zip(noisy, clean).map { abs($0 - $1) }.max()!, 0.1, "training must use W̃, inference W")
    }

    /// Frozen: dX as before, no dW or db. First layer (no dX asked for): the same dW and db.
    func testFrozenAndFirstLayer() throws {
        let c = Case(label: "frozen", input: ImageShape(height: 5, width: 4, channels: 2), filters: 3, kernel: Pair(3, 3),
                     strides: Pair(2, 1), padding: .same, batch: 3)
        let trained = try probe(c, seed: 21), frozen = try probe(c, seed: 21, trainable: false)
        try trained.backward()
        try frozen.backward()
        let inputCount = c.batch * trained.layer.inputWidth
        XCTAssertEqual(Array(frozen.inputGradient.prefix(inputCount)), Array(trained.inputGradient.prefix(inputCount)))
        XCTAssertTrue(frozen.gradients.prefix(frozen.parameterCount).allSatisfy { $0 == 0 }, "a frozen layer computes no dW, db")
        XCTAssertEqual(frozen.layer.trainable, false)

        let expected = Array(trained.gradients.prefix(trained.parameterCount))
        trained.gradients.update(repeating: 0)
        try trained.forward()
        for i in 0..<c.batch * trained.layer.outputWidth { trained.outputGradient[i] = trained.upstream[i] }
        try trained.layer.backward(input: UnsafePointer(trained.input.baseAddress!), output: UnsafePointer(trained.output.baseAddress!),
                                   outputGradient: trained.outputGradient.baseAddress!, inputGradient: nil,
                                   batch: c.batch, context: trained.context)
        XCTAssertEqual(Array(trained.gradients.prefix(trained.parameterCount)), expected)
    }

    /// Chunks of one sample give what one chunk gives (to rounding: BLAS may block other sizes
    /// differently, and dW sums the chunks in turn); inference, which unfolds every chunk into the same place, gives the training output.
    func testChunksAndInferenceAgree() throws {
        let whole = Case(label: "whole", input: ImageShape(height: 6, width: 5, channels: 3), filters: 4, kernel: Pair(3, 3),
                         padding: .same, batch: 4)
        var chunked = whole
        chunked.chunkSamples = 1
        let a = try probe(whole, seed: 31), b = try probe(chunked, seed: 31)
        try a.backward()
        try b.backward()
        let outputs = whole.batch * a.layer.outputWidth, inputs = whole.batch * a.layer.inputWidth
        let first: [Float] = Array(a.output.prefix(outputs)) + Array(a.inputGradient.prefix(inputs)) + Array(a.gradients.prefix(a.parameterCount))
        let second: [Float] = Array(b.output.prefix(outputs)) + Array(b.inputGradient.prefix(inputs)) + Array(b.gradients.prefix(b.parameterCount))
        for (x, y) in zip(first, second) { XCTAssertEqual(x, y, accuracy: 1e-5 * max(1, abs(x))) }
        let training = Array(b.output.prefix(outputs))
        b.context.training = false
        try b.forward()
        XCTAssertEqual(Array(b.output.prefix(outputs)), training)
    }

    // MARK: Forward values

    /// x = 1…9 (3×3, one channel), W = [[1, 2], [3, 4]], b = 0.5.
    func testHandComputedForward() throws {
        func run(_ padding: Conv2DSpec.Padding) throws -> [Float] {
            let c = Case(label: "hand", input: ImageShape(height: 3, width: 3, channels: 1), filters: 1, kernel: Pair(2, 2),
                         padding: padding, batch: 1)
            let probe = LayerProbe(try layer(c), batch: 1)
            store([1, 2, 3, 4, 0.5], into: probe.parameters)
            store((1...9).map(Float.init), into: probe.input)
            try probe.forward()
            return copyOf(probe.output.baseAddress!, count: probe.layer.outputWidth)
        }
        // valid: 1·1 + 2·2 + 3·4 + 4·5 = 37, then 47, 67, 77.
        XCTAssertEqual(try run(.valid), [37.5, 47.5, 67.5, 77.5])
        // same: the one padding row and column go below and right (TensorFlow), so the last
        // column sees x[·, 2] and zeros: 3·1 + 6·3 = 21; the corner 9·1 = 9.
        // Row 2 sees x[2, ·] alone: 7·1 + 8·2 = 23, 8·1 + 9·2 = 26, 9·1 = 9; column 2 of row 1: 6·1 + 9·3 = 33.
        XCTAssertEqual(try run(.same), [37.5, 47.5, 21.5, 67.5, 77.5, 33.5, 23.5, 26.5, 9.5])
    }

    /// Two channels in, two filters out, on one pixel: the kernel is stored (out, kh, kw, in).
    func testChannelsLastKernelOrder() throws {
        let c = Case(label: "order", input: ImageShape(height: 1, width: 2, channels: 2), filters: 2, kernel: Pair(1, 2), batch: 1)
        let probe = LayerProbe(try layer(c), batch: 1)
        // W[f, 0, kx, ch]: f 0 = [[1, 10], [100, 1000]], f 1 = [[2, 20], [200, 2000]]; no bias value.
        store([1, 10, 100, 1000, 2, 20, 200, 2000, 0, 0], into: probe.parameters)
        store([1, 2, 3, 4], into: probe.input)        // pixel 0: (1, 2); pixel 1: (3, 4)
        try probe.forward()
        XCTAssertEqual(copyOf(probe.output.baseAddress!, count: 2), [4321, 8642] as [Float])    // 1·1 + 2·10 + 3·100 + 4·1000; twice that
    }

    // MARK: Against torch

    /// Forward output, dX, dW and db of several configurations against torch.nn.functional.conv2d
    /// in float64, with TensorFlow's 'same' padding made explicit (asymmetric where TensorFlow's
    /// is) through F.pad; where the padding is symmetric, torch's own `padding=k//2` must agree.
    func testMatchesTorch() throws {
        let python = try InteropPython.require(["torch"])
        let image = { (h: Int, w: Int, c: Int) in ImageShape(height: h, width: w, channels: c) }
        let cases = [
            Case(label: "3×3 same", input: image(6, 5, 3), filters: 4, kernel: Pair(3, 3), padding: .same, batch: 3),
            Case(label: "stride 2 same, even input", input: image(8, 6, 2), filters: 3, kernel: Pair(3, 3), strides: Pair(2, 2), padding: .same),
            Case(label: "stride 2 same, 4×4 kernel", input: image(7, 6, 2), filters: 3, kernel: Pair(4, 4), strides: Pair(2, 2), padding: .same),
            Case(label: "dilation 2 valid", input: image(9, 8, 2), filters: 3, kernel: Pair(3, 3), dilation: Pair(2, 2)),
            Case(label: "dilation 2 same, no bias", input: image(6, 6, 3), filters: 2, kernel: Pair(3, 3), padding: .same,
                 dilation: Pair(2, 2), useBias: false),
            Case(label: "stride 2×1 valid, 2×3 kernel", input: image(7, 7, 2), filters: 3, kernel: Pair(2, 3), strides: Pair(2, 1)),
            Case(label: "1×1", input: image(4, 3, 5), filters: 2, kernel: Pair(1, 1)),
            Case(label: "3×3 same, 8 channels, stride 2", input: image(6, 7, 8), filters: 5, kernel: Pair(3, 3), strides: Pair(2, 2),
                 padding: .same),
        ]
        var probes: [LayerProbe] = []
        var payload: [[String: Any]] = []
        for (index, c) in cases.enumerated() {
            let probe = try probe(c, seed: 50 + UInt64(index))
            try probe.backward()
            probes.append(probe)
            payload.append(torchCase(c, probe))
        }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: payload), as: UTF8.self)
        let (status, output) = try runPython(python, ["-c", Self.torchScript, json])
        XCTAssertEqual(status, 0, output)
        let line = try XCTUnwrap(output.split(separator: "\n").last, output)
        let results = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [[String: Any]], output)
        XCTAssertEqual(results.count, cases.count)
        for (c, (probe, result)) in zip(cases, zip(probes, results)) {
            let kernel = Array(probe.gradients.prefix(c.filters * c.kernel.height * c.kernel.width * c.input.channels))
            try assertClose(Array(probe.output.prefix(c.batch * probe.layer.outputWidth)), result["y"], "\(c.label): output")
            try assertClose(Array(probe.inputGradient.prefix(c.batch * probe.layer.inputWidth)), result["dx"], "\(c.label): dX")
            try assertClose(torchOrder(kernel, c), result["dw"], "\(c.label): dW")
            if c.useBias {
                try assertClose(Array(probe.gradients[kernel.count..<kernel.count + c.filters]), result["db"], "\(c.label): db")
            }
            XCTAssertNotEqual(result["symmetric_matches"] as? Bool, false, "\(c.label): torch's padding=k//2 differs")
        }
    }

    /// The stored (out, kh, kw, in) kernel in torch's (out, in, kh, kw) order.
    private func torchOrder(_ stored: [Float], _ c: Case) -> [Float] {
        let kh = c.kernel.height, kw = c.kernel.width, channels = c.input.channels
        var result: [Float] = []
        for f in 0..<c.filters {
            for ch in 0..<channels {
                for y in 0..<kh {
                    for x in 0..<kw { result.append(stored[((f * kh + y) * kw + x) * channels + ch]) }
                }
            }
        }
        return result
    }

    private func torchCase(_ c: Case, _ probe: LayerProbe) -> [String: Any] {
        let kernelCount = c.filters * c.kernel.height * c.kernel.width * c.input.channels
        return ["x": Array(probe.input.prefix(c.batch * probe.layer.inputWidth)).map(Double.init),
                "shape": [c.batch, c.input.height, c.input.width, c.input.channels],
                "w": torchOrder(Array(probe.parameters.prefix(kernelCount)), c).map(Double.init),
                "wshape": [c.filters, c.input.channels, c.kernel.height, c.kernel.width],
                "b": c.useBias ? Array(probe.parameters[kernelCount..<kernelCount + c.filters]).map(Double.init) : NSNull(),
                "dy": Array(probe.upstream.prefix(c.batch * probe.layer.outputWidth)).map(Double.init),
                "stride": [c.strides.height, c.strides.width], "dilation": [c.dilation.height, c.dilation.width],
                "padding": c.padding.rawValue]
    }

    /// Within 1e-5 of the largest magnitude of torch's values.
    private func assertClose(_ ours: [Float], _ theirs: Any?, _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let reference = try XCTUnwrap(theirs as? [Double], label, file: file, line: line)
        XCTAssertEqual(ours.count, reference.count, label, file: file, line: line)
        let scale = max(reference.map(abs).max() ?? 0, 1e-30)
        let worst = zip(ours, reference).map { abs(Double($0) - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, 1e-5, "\(label): worst difference \(worst) of \(scale)", file: file, line: line)
    }

    private static let torchScript = """
        import json, sys
        import torch
        import torch.nn.functional as F

        def pads(n, k, s, d, padding):
            # TensorFlow's 'same': output ceil(n/s); the odd extra pixel after.
            if padding == "valid":
                return 0, 0
            out = -(-n // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
            return total // 2, total - total // 2

        results = []
        for c in json.loads(sys.argv[1]):
            n, h, w, ch = c["shape"]
            x = torch.tensor(c["x"], dtype=torch.float64).reshape(n, h, w, ch).permute(0, 3, 1, 2).contiguous().requires_grad_()
            weight = torch.tensor(c["w"], dtype=torch.float64).reshape(c["wshape"]).requires_grad_()
            bias = torch.tensor(c["b"], dtype=torch.float64).requires_grad_() if c["b"] is not None else None
            kh, kw = c["wshape"][2:]
            (sh, sw), (dh, dw) = c["stride"], c["dilation"]
            top, bottom = pads(h, kh, sh, dh, c["padding"])
            left, right = pads(w, kw, sw, dw, c["padding"])
            y = F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride=(sh, sw), dilation=(dh, dw))
            symmetric = None
            if top == bottom and left == right:
                symmetric = bool(torch.allclose(y, F.conv2d(x, weight, bias, stride=(sh, sw), dilation=(dh, dw), padding=(top, left))))
            dy = torch.tensor(c["dy"], dtype=torch.float64).reshape(y.permute(0, 2, 3, 1).shape).permute(0, 3, 1, 2)
            (y * dy).sum().backward()
            results.append({"y": y.detach().permute(0, 2, 3, 1).reshape(-1).tolist(),
                            "dx": x.grad.permute(0, 2, 3, 1).reshape(-1).tolist(),
                            "dw": weight.grad.reshape(-1).tolist(),
                            "db": bias.grad.tolist() if bias is not None else None,
                            "symmetric_matches": symmetric})
        print(json.dumps(results))
        """

    // MARK: The spec

    /// Keras's output shapes: valid ⌊(n − d(k−1) − 1)/s⌋ + 1, same ⌈n/s⌉, with TensorFlow's padding split.
    func testGeometry() throws {
        func geometry(_ h: Int, _ w: Int, _ spec: Conv2DSpec) throws -> ConvGeometry {
            try spec.geometry(input: .image(ImageShape(height: h, width: w, channels: 3)))
        }
        let same = try geometry(28, 28, Conv2DSpec(filters: 32, kernelSize: Pair(3, 3), padding: .same))
        XCTAssertEqual([same.output.height, same.output.width, same.output.channels, same.padTop, same.padLeft], [28, 28, 32, 1, 1])
        let even = try geometry(6, 7, Conv2DSpec(filters: 1, kernelSize: Pair(3, 3), strides: Pair(2, 2), padding: .same))
        XCTAssertEqual([even.output.height, even.output.width, even.padTop, even.padLeft], [3, 4, 0, 1])  // totals 1 and 2
        let valid = try geometry(7, 9, Conv2DSpec(filters: 1, kernelSize: Pair(3, 2), strides: Pair(2, 3)))
        XCTAssertEqual([valid.output.height, valid.output.width], [3, 3])
        let dilated = try geometry(9, 9, Conv2DSpec(filters: 1, kernelSize: Pair(3, 3), dilationRate: Pair(3, 1)))
        XCTAssertEqual([dilated.output.height, dilated.output.width], [3, 7])
        let large = try geometry(3, 3, Conv2DSpec(filters: 1, kernelSize: Pair(6, 6), padding: .same))
        XCTAssertEqual([large.output.height, large.padTop], [3, 2])                              // total 5: 2 above, 3 below
        XCTAssertEqual(try Conv2DSpec(filters: 8, kernelSize: Pair(3, 3)).outputShape(input: .image(ImageShape(height: 5, width: 5, channels: 2))),
                       .image(ImageShape(height: 3, width: 3, channels: 8)))
    }

    func testShapeErrors() {
        let spec = Conv2DSpec(filters: 4, kernelSize: Pair(5, 5))
        assertDDPError(.config, containing: ["kernel 5×5 does not fit the input (None, 3, 3, 8) with padding: valid", "padding: same"]) {
            try spec.outputShape(input: .image(ImageShape(height: 3, width: 3, channels: 8)))
        }
        assertDDPError(.config, containing: ["kernel 3×3 (with dilation_rate 2×2 it spans 5×5)", "(None, 4, 9, 1)"]) {
            try Conv2DSpec(filters: 1, kernelSize: Pair(3, 3), dilationRate: Pair(2, 2))
                .outputShape(input: .image(ImageShape(height: 4, width: 9, channels: 1)))
        }
        assertDDPError(.config, containing: ["gets the flat features (None, 10)", "takes an image", "model.inputs: [height, width, channels]"]) {
            try spec.outputShape(input: .features(10))
        }
        // The model's message names the layer.
        let model = ModelConfig(inputShape: .image(ImageShape(height: 3, width: 3, channels: 1)),
                                layers: [LayerConfig(Conv2DSpec(filters: 2, kernelSize: Pair(2, 2))), LayerConfig(spec)])
        assertDDPError(.config, containing: ["model.layers[1] (conv2d): kernel 5×5 does not fit the input (None, 2, 2, 2)"]) {
            try model.shapes()
        }
    }

    func testCountsAndLayers() throws {
        let spec = Conv2DSpec(filters: 64, kernelSize: Pair(3, 3), padding: .same, activation: .relu)
        let input = FeatureShape.image(ImageShape(height: 14, width: 14, channels: 32))
        XCTAssertEqual(spec.parameterCount(input: input), 64 * 3 * 3 * 32 + 64)
        XCTAssertEqual(spec.workspacePerSample(input: input), 14 * 14 * 9 * 32)
        XCTAssertEqual(Conv2DSpec(filters: 4, kernelSize: Pair(1, 1)).workspacePerSample(input: input), 0, "1×1 multiplies its input")
        let layers = spec.makeLayers(configIndex: 2, input: input, frozen: false)
        XCTAssertEqual(layers.map(\.displayName), ["Conv2D", "Activation(relu)"])
        XCTAssertEqual(layers.map(\.outputWidth), [14 * 14 * 64, 14 * 14 * 64])
        let conv = try XCTUnwrap(layers[0] as? Conv2D)
        XCTAssertEqual(conv.parameterSpecs.map(\.name), ["weight", "bias"])
        XCTAssertEqual(conv.parameterSpecs.map(\.role), [.kernel, .bias])
        XCTAssertEqual(conv.parameterSpecs[0].shape, [64, 3, 3, 32])
        XCTAssertEqual(conv.parameterSpecs.map(\.fanIn), [288, 288])
        XCTAssertEqual(conv.parameterSpecs[0].fanOut, 9 * 64)
        XCTAssertEqual(conv.parameterSpecs[0].exportLayout?.fileShape, [64, 32, 3, 3])
    }

    /// A small valid config whose first layer is the given conv2d entry.
    private func parse(_ layer: String, inputs: String = "[6, 6, 2]") throws -> TrainingConfig {
        try TrainingConfig.parse(yaml: """
            data:
              train: {format: moons, samples: 64}
            model:
              inputs: \(inputs)
              layers:
                - \(layer)
            optimizer: {type: sgd, lr: 0.1}
            training: {epochs: 1, batch_size: 16}
            """)
    }

    func testParse() throws {
        let config = try parse("""
            {type: conv2d, filters: 4, kernel_size: [3, 2], strides: 2, padding: same, use_bias: false, activation: relu,
                   kernel_initializer: torch, kernel_regularizer: {l2: 0.01}, kernel_constraint: {max_norm: 2}, weight_noise: 0.1}
            """)
        let spec = try XCTUnwrap(config.model.layers[0].spec as? Conv2DSpec)
        var expected = Conv2DSpec(filters: 4, kernelSize: Pair(3, 2), strides: Pair(2, 2), padding: .same, activation: .relu, useBias: false)
        expected.kernelInitializer = .torch
        expected.kernelRegularizer = Penalty(l2: 0.01)
        expected.kernelConstraint = .maxNorm(2)
        expected.weightNoise = 0.1
        XCTAssertEqual(spec, expected)
        XCTAssertEqual(config.model.inputShape, .image(ImageShape(height: 6, width: 6, channels: 2)))
        let defaults = try XCTUnwrap(try parse("{type: conv2d, filters: 1, kernel_size: 3}").model.layers[0].spec as? Conv2DSpec)
        XCTAssertEqual(defaults, Conv2DSpec(filters: 1, kernelSize: Pair(3, 3)))
        XCTAssertEqual(defaults.kernelInitializer, .glorotUniform)
        XCTAssertEqual(defaults.biasInitializer, .zeros)
    }

    func testParseErrors() {
        let layer = "model.layers[0]"
        let cases: [(String, [String])] = [
            ("{type: conv2d, kernel_size: 3}", ["missing key '\(layer).filters'"]),
            ("{type: conv2d, filters: 0, kernel_size: 3}", ["\(layer).filters: expected an integer ≥ 1, got 0"]),
            ("{type: conv2d, filters: 2}", ["missing key '\(layer).kernel_size'"]),
            ("{type: conv2d, filters: 2, kernel_size: 0}", ["\(layer).kernel_size: expected an integer ≥ 1 or a list [height, width]", "'0'"]),
            ("{type: conv2d, filters: 2, kernel_size: [3, 3, 3]}", ["\(layer).kernel_size: expected", "a list"]),
            ("{type: conv2d, filters: 2, kernel_size: [3, x]}", ["\(layer).kernel_size: expected"]),
            ("{type: conv2d, filters: 2, kernel_size: 3, strides: -1}", ["\(layer).strides: expected"]),
            ("{type: conv2d, filters: 2, kernel_size: 3, padding: full}", ["\(layer).padding: 'full' is not one of valid, same"]),
            ("{type: conv2d, filters: 2, kernel_size: 3, strides: 2, dilation_rate: [1, 2]}",
             ["\(layer).dilation_rate", "Keras refuses a stride above 1 together with a dilation rate above 1"]),
            ("{type: conv2d, filters: 2, kernel_size: 3, activation: softmax}", ["\(layer).activation: softmax"]),
            ("{type: conv2d, filters: 2, kernel_size: 3, use_bias: false, bias_constraint: {non_neg: true}}",
             ["\(layer).bias_constraint: the layer has use_bias: false"]),
            ("{type: conv2d, filters: 2, kernel_size: 3, units: 4}", ["unknown key '\(layer).units'"]),
            ("{type: conv2d, filters: 2, kernel_size: 7}", ["\(layer) (conv2d): kernel 7×7 does not fit the input (None, 6, 6, 2)"]),
        ]
        for (entry, parts) in cases {
            assertDDPError(.config, containing: parts) { try self.parse(entry) }
        }
    }

    // MARK: Export

    /// The file holds torch's [out, in, kh, kw]; loading it restores the stored (out, kh, kw, in)
    /// values exactly.
    func testExportImportRoundTrip() throws {
        let input = FeatureShape.image(ImageShape(height: 5, width: 4, channels: 3))
        let spec = Conv2DSpec(filters: 2, kernelSize: Pair(3, 2), padding: .same)
        let network = try Network(config: ModelConfig(inputShape: input, layers: [LayerConfig(spec)]))
        var random = TestRandom(seed: 77)
        store(random.array(network.parameterCount, -1, 1), into: network.parameters)
        let tensors = network.exportTensors()
        XCTAssertEqual(tensors.map(\.name), ["0.weight", "0.bias"])
        XCTAssertEqual(tensors.map(\.shape), [[2, 3, 3, 2], [2]])
        let stored = Array(network.parameters)
        let c = Case(label: "export", input: ImageShape(height: 5, width: 4, channels: 3), filters: 2, kernel: Pair(3, 2))
        XCTAssertEqual(tensors[0].floats(), torchOrder(Array(stored.prefix(36)), c))
        XCTAssertEqual(tensors[1].floats(), Array(stored.suffix(2)))

        let copy = try Network(config: ModelConfig(inputShape: input, layers: [LayerConfig(spec)]))
        try copy.importTensors(Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0) }), file: "conv.safetensors")
        XCTAssertEqual(Array(copy.parameters), stored)
    }

    // MARK: Speed (DDP_BENCH=1)

    /// Forward and backward at the peer CNN's convolutions (batch 128: 28×28×1 → 32 and
    /// 14×14×32 → 64, 3×3 same), against the bare GEMMs of the same sizes in one call each.
    /// Run with OPENBLAS_NUM_THREADS=1 in a release build:
    /// `DDP_BENCH=1 OPENBLAS_NUM_THREADS=1 swift test -c release -Xswiftc -enable-testing --filter Conv2DTests/testBenchmark`.
    func testBenchmarkAgainstBareGEMMs() throws {
        guard ProcessInfo.processInfo.environment["DDP_BENCH"] == "1" else { throw XCTSkip("set DDP_BENCH=1 to time Conv2D") }
        let batch = 128
        print("Conv2D benchmark: OpenBLAS \(BLASKernels.current ?? "?") kernels, OPENBLAS_NUM_THREADS="
              + (ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] ?? "unset"))
        for (name, image, filters) in [("conv1", ImageShape(height: 28, width: 28, channels: 1), 32),
                                       ("conv2", ImageShape(height: 14, width: 14, channels: 32), 64)] {
            let c = Case(label: name, input: image, filters: filters, kernel: Pair(3, 3), padding: .same, batch: batch)
            let g = try c.spec.geometry(input: .image(image))
            let gemm = Conv2DBench.bareGEMMs(rows: batch * g.positions, k: g.patchSize, filters: filters)
            print(String(format: "%@ bare GEMMs: forward %.3f ms, dW %.3f ms, dX %.3f ms", name, gemm.forward, gemm.weights, gemm.input))
            let chunks: [Int?] = ProcessInfo.processInfo.environment["DDP_BENCH_CHUNKS"].map {
                $0.split(separator: ",").map { Int($0) }
            } ?? [nil]
            for chunk in chunks {
                var timed = c
                timed.chunkSamples = chunk
                let probe = try probe(timed, seed: 1)
                let t = try Conv2DBench.layer(probe)
                let chunkText = chunk.map { "\($0)" } ?? "default \((probe.layer as! Conv2D).chunkSamples)"
                let conv = probe.layer as! Conv2D, samples = conv.chunkSamples
                let columns = UnsafeMutablePointer<Float>.allocate(capacity: samples * g.positions * g.patchSize)
                defer { columns.deallocate() }
                let unfold = Conv2DBench.fastest {
                    var first = 0
                    while first < batch {
                        let count = min(samples, batch - first)
                        let input = probe.input.baseAddress! + first * conv.inputWidth
                        if conv.transposedPatches {
                            conv.unfoldTransposed(input, samples: count, into: columns)
                        } else {
                            conv.unfold(input, samples: count, into: columns)
                        }
                        first += count
                    }
                }
                let fold = Conv2DBench.fastest {
                    var first = 0
                    while first < batch {
                        let count = min(samples, batch - first)
                        conv.fold(columns, samples: count, into: probe.inputGradient.baseAddress! + first * conv.inputWidth)
                        first += count
                    }
                }
                print(String(format: "%@ chunk %@: unfold %.3f ms, fold %.3f ms", name, "\(samples)", unfold, fold))
                print(String(format: "%@ chunk %@: forward %.3f ms (%.2f× its GEMM), backward %.3f ms (%.2f× dW + dX), "
                             + "first-layer backward %.3f ms (%.2f× dW)",
                             name, chunkText, t.forward, t.forward / gemm.forward, t.backward, t.backward / (gemm.weights + gemm.input),
                             t.firstLayerBackward, t.firstLayerBackward / gemm.weights))
            }
        }
    }
}

/// The benchmark's timings, in milliseconds: the fastest of repeated runs, since other load on
/// the host only ever slows a run down.
private enum Conv2DBench {
    static func fastest(_ repeats: Int = 30, _ body: () throws -> Void) rethrows -> Double {
        try body()
        var best = Double.infinity
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return best
    }

    static func bareGEMMs(rows: Int, k: Int, filters: Int) -> (forward: Double, weights: Double, input: Double) {
        var random = TestRandom(seed: 2)
        let a = random.array(rows * k, -1, 1), w = random.array(filters * k, -1, 1), dy = random.array(rows * filters, -1, 1)
        var y = [Float](repeating: 0, count: rows * filters), dw = [Float](repeating: 0, count: filters * k)
        var dx = [Float](repeating: 0, count: rows * k)
        let (m, n, kk) = (Int32(rows), Int32(filters), Int32(k))
        let forward = fastest {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, kk, 1, a, kk, w, kk, 0, &y, n)
        }
        let weights = fastest {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, kk, m, 1, dy, n, a, kk, 1, &dw, kk)
        }
        let input = fastest {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, kk, n, 1, dy, n, w, kk, 0, &dx, kk)
        }
        return (forward, weights, input)
    }

    static func layer(_ probe: LayerProbe) throws -> (forward: Double, backward: Double, firstLayerBackward: Double) {
        let layer = probe.layer, batch = probe.batch
        let input = UnsafePointer(probe.input.baseAddress!), output = probe.output.baseAddress!
        let forward = try fastest { try layer.forward(input, output, batch: batch, context: probe.context) }
        let backward = try fastest {
            try layer.backward(input: input, output: UnsafePointer(output), outputGradient: probe.upstream.baseAddress!,
                               inputGradient: probe.inputGradient.baseAddress!, batch: batch, context: probe.context)
        }
        let first = try fastest {
            try layer.backward(input: input, output: UnsafePointer(output), outputGradient: probe.upstream.baseAddress!,
                               inputGradient: nil, batch: batch, context: probe.context)
        }
        return (forward, backward, first)
    }
}
