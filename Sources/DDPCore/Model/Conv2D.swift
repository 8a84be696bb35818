import _CBLAS

/// Where a convolution's kernel lands on its input: the shapes, the kernel's steps and the
/// zero padding, computed once by `Conv2DSpec.geometry(input:)` with TensorFlow's formulas
/// (see there).
public struct ConvGeometry: Sendable, Equatable {
    public let input: ImageShape
    public let output: ImageShape
    public let kernelHeight, kernelWidth: Int
    public let strideHeight, strideWidth: Int
    public let dilationHeight, dilationWidth: Int
    /// Zero rows above and zero columns left of the image; 'same' puts an odd extra pixel of
    /// padding below or right, as TensorFlow does, so it needs no field of its own.
    public let padTop, padLeft: Int

    /// Values of one unfolded patch, (kh, kw, in) channels-last: the GEMM's inner dimension.
    public var patchSize: Int { kernelHeight * kernelWidth * input.channels }
    /// Output pixels per sample: patches per sample.
    public var positions: Int { output.height * output.width }
    /// The output columns whose kernel lies wholly inside the image's columns (ox·s − padLeft ≥ 0
    /// and ox·s − padLeft + d·(kw − 1) < width): unfold copies them without a bounds test.
    public var interiorColumns: Range<Int> {
        let span = dilationWidth * (kernelWidth - 1) + 1, room = input.width + padLeft - span
        let low = min((padLeft + strideWidth - 1) / strideWidth, output.width)
        let high = room < 0 ? 0 : min(room / strideWidth + 1, output.width)
        return low..<max(high, low)
    }
    /// 1×1 with stride 1 (so no padding either, and dilation moves nothing): each input pixel's
    /// channels are already its patch, so the layer multiplies the input rows directly.
    public var isPointwise: Bool { kernelHeight == 1 && kernelWidth == 1 && strideHeight == 1 && strideWidth == 1 }
}

/// 2-D convolution over channels-last images with torch.nn.Conv2d's arithmetic (the
/// cross-correlation y[n, oy, ox, f] = b[f] + Σ_{ky, kx, c} W[f, ky, kx, c]·x[n, oy·s + ky·d − pad, …, c],
/// zeros outside the image) and Keras's Conv2D configuration.
///
/// Why im2col and one GEMM: each output pixel is the dot product of its input patch with each
/// filter, so with the patches of a batch unfolded into the rows of `columns`
/// (rows = batch·OH·OW, K = kh·kw·in, each row (kh, kw, in) channels-last, so a kernel row's
/// pixels are one contiguous run of the input row when the dilation is 1) the whole layer is
/// Y (rows × out) = columns · Wᵀ, one `cblas_sgemm` with W stored (out, kh, kw, in) as an
/// (out, K) matrix. Backward is two more GEMMs: dW += dYᵀ·columns (the forward's columns, kept
/// in training) and dcolumns = dY·W, which col2im scatter-adds back onto the input pixels the
/// patches came from (patches overlap, so one pixel collects from several rows). The file
/// holds the kernel as torch's [out, in, kh, kw] (`ExportLayout.convKernel`).
///
/// The batch runs in chunks of whole samples whose patches and outputs take about
/// `defaultChunkFloats` (a quarter of a 2 MiB L2): unfold a chunk, multiply it while it is
/// still in cache, add the bias while the outputs are, and in backward turn each chunk's
/// dcolumns into dX while they are. In training the chunks unfold into their place in
/// `columns` (kept for dW); in inference all into its first chunk. With few input channels
/// (a one-channel image's first layer) the patches are stored transposed, (K, rows), where
/// unfolding is a memcpy per output row instead of a few values per patch (`unfoldTransposed`).
///
/// Measured 2026-12-07 on an AMD EPYC Zen 5 VM (family 26 model 2, 2 vCPUs, 2 MiB L2 each, the
/// second core busy with other builds), Debian's OpenBLAS 0.3.21 with its Cooperlake kernels, OPENBLAS_NUM_THREADS=1,
/// batch 128, fastest of 30 runs, as a multiple of the bare GEMMs of the same sizes each in one
/// call (`Conv2DTests.testBenchmarkAgainstBareGEMMs`, DDP_BENCH=1, a release build):
/// - 28×28×1 → 32, 3×3 same (the peer CNN's conv1, the first layer: no dX): forward 0.70–0.76 ms,
///   1.0–1.4× its GEMM (unfolding 0.15 ms); backward 0.67–0.69 ms, 0.4–0.5× the bare dW GEMM
///   (per chunk of 4 samples M·N·K stays under 10⁶, presumably where OpenBLAS takes its
///   small-matrix kernels);
/// - 14×14×32 → 64, 3×3 same (conv2): forward 7.0–7.2 ms, 1.04–1.10× its GEMM (unfolding
///   0.5 ms); backward with dX 11.3–12.3 ms, 0.98–1.09× the dW and dX GEMMs (col2im 0.5–0.65 ms).
///
/// Chunks of 1 to 4 samples timed alike; 8 or more made conv1's backward 2–3× slower.
/// oneDNN's convolution primitives (Debian's libdnnl-dev 2.6.3, what torch's CPU convolutions
/// run; `benchmarks/dnnl_conv.cpp`) run conv2 1.5–1.7× faster than these GEMMs on an AMD Zen 4
/// core, but only in their blocked layouts: for channels-last activations 2.6 has reference
/// kernels alone (conv2's forward 9.5 s). Inside torch, with its reorders, they give the peer CNN
/// 0.57× ddp's samples/s on Zen 5 and 0.70× on Zen 4 (docs/PERFORMANCE.md, 'The CNN on an AMD
/// Zen 4 VM, and oneDNN's convolutions').
///
/// Weight noise (`weight_noise: σ`), frozen layers and the bias as `Dense`: W̃ = W + σ·ε per
/// training step keyed by (seed, global step, layer, index), dW accumulates into W's gradient,
/// dX uses W̃; a frozen layer computes no dW, db; the first layer (`inputGradient == nil`)
/// computes no dX.
public final class Conv2D: Layer {
    public let configIndex: Int
    public let geometry: ConvGeometry
    public let useBias: Bool
    public let trainable: Bool
    public var displayName: String { "Conv2D" }
    public var inputWidth: Int { geometry.input.featureCount }
    public var outputWidth: Int { geometry.output.featureCount }
    public let parameterSpecs: [ParameterSpec]
    /// σ of the kernel noise; 0 = none.
    public let weightNoise: Float
    /// Whether a chunk's patches are stored transposed, (K, rows): for few input channels
    /// (kernel rows under 16 values, a one-channel first layer's), see `unfoldTransposed`.
    let transposedPatches: Bool
    /// Samples per chunk (see the type's comment); fixed at init so tests can force several.
    let chunkSamples: Int
    /// Floats of unfolded patches and outputs a chunk aims at: 512 KiB, a quarter of a 2 MiB L2.
    static let defaultChunkFloats = 128 * 1024

    private var weight: UnsafeMutablePointer<Float>!
    private var weightGradient: UnsafeMutablePointer<Float>?
    private var bias: UnsafeMutablePointer<Float>?
    private var biasGradient: UnsafeMutablePointer<Float>?
    /// W̃ of the current training step, (out, K); allocated in `reserve` when σ > 0.
    private var noisyKernel: UnsafeMutablePointer<Float>?
    /// Unfolded patches, (maxBatch·OH·OW, K); empty for a pointwise layer.
    private var columns = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    /// dcolumns of one chunk, (chunkSamples·OH·OW, K); empty for a pointwise layer.
    private var columnGradient = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    /// One chunk's column sums of dY, added into db per chunk (shorter Float sums than one
    /// running sum over every row of the batch).
    private let biasPartial: UnsafeMutableBufferPointer<Float>

    public init(configIndex: Int, geometry: ConvGeometry, useBias: Bool,
                kernelInitializer: Initializer, biasInitializer: Initializer,
                kernelRegularizer: Penalty?, biasRegularizer: Penalty?, weightNoise: Float = 0,
                kernelConstraint: WeightConstraint? = nil, biasConstraint: WeightConstraint? = nil,
                trainable: Bool = true, chunkSamples: Int? = nil) {
        self.configIndex = configIndex
        self.geometry = geometry
        self.useBias = useBias
        self.trainable = trainable
        self.weightNoise = weightNoise
        let g = geometry, filters = g.output.channels
        transposedPatches = !g.isPointwise && g.kernelWidth * g.input.channels < 16
        self.chunkSamples = max(chunkSamples ?? Self.defaultChunkFloats / max(g.positions * (g.patchSize + filters), 1), 1)
        // Keras's fans for a conv kernel: fan_in = kh·kw·in, fan_out = kh·kw·out (torch's
        // initializer and bias bound use the same fan_in).
        let fanIn = g.patchSize, fanOut = g.kernelHeight * g.kernelWidth * filters
        var specs = [ParameterSpec(name: "weight", shape: [filters, g.kernelHeight, g.kernelWidth, g.input.channels],
                                   role: .kernel, initializer: kernelInitializer, regularizer: kernelRegularizer,
                                   constraint: kernelConstraint, fanIn: fanIn, fanOut: fanOut,
                                   exportLayout: .convKernel(out: filters, kernelHeight: g.kernelHeight,
                                                             kernelWidth: g.kernelWidth, in: g.input.channels))]
        if useBias {
            specs.append(ParameterSpec(name: "bias", shape: [filters], role: .bias, initializer: biasInitializer,
                                       regularizer: biasRegularizer, constraint: biasConstraint, fanIn: fanIn, fanOut: fanOut))
        }
        parameterSpecs = specs
        biasPartial = .allocate(capacity: filters)
        biasPartial.initialize(repeating: 0)
    }

    deinit {
        noisyKernel?.deallocate()
        columns.deallocate()
        columnGradient.deallocate()
        biasPartial.deallocate()
    }

    private var kernelCount: Int { geometry.output.channels * geometry.patchSize }

    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>?,
                     buffers: UnsafeMutablePointer<Float>) {
        weight = parameters
        weightGradient = trainable ? gradients : nil
        if useBias {
            bias = parameters + kernelCount
            biasGradient = weightGradient.map { $0 + kernelCount }
        }
    }

    /// The patches of `maxBatch` samples (kept from forward for dW) and one chunk's dcolumns;
    /// W̃ with weight noise. A pointwise layer needs neither buffer.
    public func reserve(maxBatch: Int) {
        if weightNoise > 0 && noisyKernel == nil {
            noisyKernel = .allocate(capacity: kernelCount)
            noisyKernel!.initialize(repeating: 0, count: kernelCount)
        }
        guard !geometry.isPointwise else { return }
        let rowFloats = geometry.positions * geometry.patchSize
        if columns.count < maxBatch * rowFloats {
            columns.deallocate()
            columns = .allocate(capacity: maxBatch * rowFloats)
            columns.initialize(repeating: 0)
        }
        if columnGradient.count < chunkSamples * rowFloats {
            columnGradient.deallocate()
            columnGradient = .allocate(capacity: chunkSamples * rowFloats)
            columnGradient.initialize(repeating: 0)
        }
    }

    /// The kernel this step multiplies by: W̃, drawn here, in training with σ > 0; else W.
    /// Every rank draws W̃ even with no sample in the step, so the draw never depends on the batch.
    private func stepKernel(_ context: StepContext, draw: Bool) -> UnsafePointer<Float> {
        guard context.training, weightNoise > 0 else { return UnsafePointer(weight) }
        guard let noisyKernel else { preconditionFailure("Conv2D \(configIndex): weight_noise needs reserve(maxBatch:) before training") }
        if draw {
            WeightNoise.draw(weight, into: noisyKernel, count: kernelCount, sigma: weightNoise, context: context, layer: configIndex)
        }
        return UnsafePointer(noisyKernel)
    }

    /// Per chunk of samples: unfold its patches, Y = columns·W̃ᵀ, then + b.
    public func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                        batch: Int, context: StepContext) throws {
        let kernel = stepKernel(context, draw: true)
        guard batch > 0 else { return }
        let g = geometry, k = g.patchSize, filters = g.output.channels
        precondition(g.isPointwise || columns.count >= (context.rowOffset + batch) * g.positions * k,
                     "Conv2D \(configIndex): forward of \(batch) samples needs reserve(maxBatch:) for them")
        var first = 0
        while first < batch {
            let count = min(chunkSamples, batch - first), rows = count * g.positions
            let patches: UnsafePointer<Float>
            if g.isPointwise {
                patches = input + first * inputWidth
            } else {
                let place = columns.baseAddress! + (context.training ? (context.rowOffset + first) * g.positions * k : 0)
                if transposedPatches {
                    unfoldTransposed(input + first * inputWidth, samples: count, into: place)
                } else {
                    unfold(input + first * inputWidth, samples: count, into: place)
                }
                patches = UnsafePointer(place)
            }
            let y = output + first * outputWidth
            cblas_sgemm(CblasRowMajor, transposedPatches ? CblasTrans : CblasNoTrans, CblasTrans, Int32(rows), Int32(filters), Int32(k),
                        1, patches, Int32(transposedPatches ? rows : k), kernel, Int32(k), 0, y, Int32(filters))
            if let bias { Self.addBias(bias, to: y, rows: rows, width: filters) }
            first += count
        }
    }

    /// Per chunk of samples: dW (out, K) += dYᵀ·columns; db += Σ_rows dY; dX = col2im(dY·W̃).
    /// Reads the columns the training forward of this batch kept.
    public func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                         outputGradient: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
                         batch: Int, context: StepContext) throws {
        let g = geometry, k = g.patchSize, filters = g.output.channels
        guard batch > 0 else {
            if context.overwritesGradients {
                weightGradient?.update(repeating: 0, count: filters * k)
                biasGradient?.update(repeating: 0, count: filters)
            }
            return
        }
        let kernel = inputGradient == nil ? nil : stepKernel(context, draw: false)
        var first = 0
        while first < batch {
            let count = min(chunkSamples, batch - first), rows = count * g.positions
            let dy = UnsafePointer(outputGradient + first * outputWidth)
            let patches = g.isPointwise ? input + first * inputWidth
                : UnsafePointer(columns.baseAddress! + (context.rowOffset + first) * g.positions * k)
            // The first chunk overwrites the gradients when the caller asks (`StepContext.overwritesGradients`).
            let overwrite = first == 0 && context.overwritesGradients
            if let weightGradient {
                cblas_sgemm(CblasRowMajor, CblasTrans, transposedPatches ? CblasTrans : CblasNoTrans, Int32(filters), Int32(k), Int32(rows),
                            1, dy, Int32(filters), patches, Int32(transposedPatches ? rows : k), overwrite ? 0 : 1, weightGradient, Int32(k))
            }
            if let biasGradient {
                if overwrite { biasGradient.update(repeating: 0, count: filters) }
                addColumnSums(of: dy, rows: rows, into: biasGradient)
            }
            if let inputGradient, let kernel {
                let dx = inputGradient + first * inputWidth
                let target = g.isPointwise ? dx : columnGradient.baseAddress!
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(k), Int32(filters),
                            1, dy, Int32(filters), kernel, Int32(k), 0, target, Int32(k))
                if !g.isPointwise {
                    dx.update(repeating: 0, count: count * inputWidth)
                    fold(UnsafePointer(target), samples: count, into: dx)
                }
            }
            first += count
        }
    }

    /// y[row, j] += b[j].
    private static func addBias(_ bias: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        for row in 0..<rows {
            let out = y + row * width
            for j in 0..<width { out[j] += bias[j] }
        }
    }

    /// db[j] += Σ_rows dy[row, j], summed per chunk in `biasPartial` first.
    private func addColumnSums(of dy: UnsafePointer<Float>, rows: Int, into db: UnsafeMutablePointer<Float>) {
        let width = geometry.output.channels, partial = biasPartial.baseAddress!
        partial.update(repeating: 0, count: width)
        for row in 0..<rows {
            let values = dy + row * width
            for j in 0..<width { partial[j] += values[j] }
        }
        for j in 0..<width { db[j] += partial[j] }
    }

    /// The kernel positions kx whose input column x0 + kx·d lies in [0, width): kx ∈ low..<high
    /// (empty when none does).
    @inline(__always)
    private static func inside(start x0: Int, dilation d: Int, kernel: Int, extent width: Int) -> (low: Int, high: Int) {
        let low = x0 >= 0 ? 0 : min((d - 1 - x0) / d, kernel)
        let high = x0 >= width ? 0 : min((width - x0 + d - 1) / d, kernel)
        return (low, max(high, low))
    }

    /// im2col: the (kh, kw, in) patch of each output pixel of `samples` images, one row of K
    /// values per pixel in (sample, oy, ox) order, zeros where the kernel reaches the padding.
    /// One output row's patches at a time (a few KiB, in L1), kernel row by kernel row: over
    /// the interior columns, whose kernel rows lie wholly inside the image, a kernel row is one
    /// run of kw·in adjacent input values (dilation 1) copied without a bounds test
    /// (`copyRuns`); the border columns go kernel pixel by kernel pixel (`unfoldBorder`).
    func unfold(_ input: UnsafePointer<Float>, samples: Int, into columns: UnsafeMutablePointer<Float>) {
        let g = geometry, channels = g.input.channels, k = g.patchSize
        let run = g.kernelWidth * channels, step = g.strideWidth * channels, interior = g.interiorColumns
        var row = columns
        for sample in 0..<samples {
            let image = input + sample * inputWidth
            for oy in 0..<g.output.height {
                for ky in 0..<g.kernelHeight {
                    let y = oy * g.strideHeight - g.padTop + ky * g.dilationHeight
                    let target = row + ky * run
                    guard y >= 0 && y < g.input.height else {
                        for ox in 0..<g.output.width { zero(target + ox * k, run) }
                        continue
                    }
                    let line = image + y * g.input.width * channels
                    for ox in 0..<interior.lowerBound { unfoldBorder(line, column: ox, into: target + ox * k) }
                    if g.dilationWidth == 1 {
                        copyRuns(from: line + (interior.lowerBound * g.strideWidth - g.padLeft) * channels, step: step,
                                 to: target + interior.lowerBound * k, count: interior.count, run: run)
                    } else {
                        for ox in interior { unfoldBorder(line, column: ox, into: target + ox * k) }
                    }
                    for ox in interior.upperBound..<g.output.width { unfoldBorder(line, column: ox, into: target + ox * k) }
                }
                row += g.output.width * k
            }
        }
    }

    /// im2col into the transposed layout, (K, rows): value j of every patch of the chunk in one
    /// row, in (sample, oy, ox) order. For few input channels a patch's kernel rows are runs of
    /// a few values each, while here each (ky, kx, channel) is a shifted copy of the image: per
    /// output row one run of OW values (one memcpy at one channel and stride 1), zeros where
    /// it reaches the padding. The GEMMs read the patches transposed.
    func unfoldTransposed(_ input: UnsafePointer<Float>, samples: Int, into columns: UnsafeMutablePointer<Float>) {
        let g = geometry, channels = g.input.channels, rows = samples * g.positions, width = g.output.width
        let step = g.strideWidth * channels
        for ky in 0..<g.kernelHeight {
            for kx in 0..<g.kernelWidth {
                let offset = kx * g.dilationWidth - g.padLeft          // input column ox·s + offset
                let low = offset >= 0 ? 0 : min((g.strideWidth - 1 - offset) / g.strideWidth, width)
                let high = offset >= g.input.width ? 0 : min((g.input.width - offset + g.strideWidth - 1) / g.strideWidth, width)
                let xs = low..<max(high, low)
                for c in 0..<channels {
                    var target = columns + ((ky * g.kernelWidth + kx) * channels + c) * rows
                    for sample in 0..<samples {
                        let image = input + sample * inputWidth + c
                        for oy in 0..<g.output.height {
                            let y = oy * g.strideHeight - g.padTop + ky * g.dilationHeight
                            if y < 0 || y >= g.input.height || xs.isEmpty {
                                zero(target, width)
                            } else {
                                zero(target, xs.lowerBound)
                                let source = image + (y * g.input.width + xs.lowerBound * g.strideWidth + offset) * channels
                                if step == 1 {
                                    copy(source, to: target + xs.lowerBound, count: xs.count)
                                } else {
                                    for i in 0..<xs.count { target[xs.lowerBound + i] = source[i * step] }
                                }
                                zero(target + xs.upperBound, width - xs.upperBound)
                            }
                            target += width
                        }
                    }
                }
            }
        }
    }

    /// One kernel row of output column `ox`'s patch from the input row `line`: zeros where it
    /// reaches the padding, each kernel pixel's channels (a run of them at dilation 1) elsewhere.
    @inline(__always)
    private func unfoldBorder(_ line: UnsafePointer<Float>, column ox: Int, into target: UnsafeMutablePointer<Float>) {
        let g = geometry, channels = g.input.channels, d = g.dilationWidth
        let x0 = ox * g.strideWidth - g.padLeft
        let xs = Self.inside(start: x0, dilation: d, kernel: g.kernelWidth, extent: g.input.width)
        zero(target, xs.low * channels)
        if d == 1 {
            copy(line + (x0 + xs.low) * channels, to: target + xs.low * channels, count: (xs.high - xs.low) * channels)
        } else {
            for kx in xs.low..<xs.high { copy(line + (x0 + kx * d) * channels, to: target + kx * channels, count: channels) }
        }
        zero(target + xs.high * channels, (g.kernelWidth - xs.high) * channels)
    }

    /// col2im, unfold's adjoint: adds each row of `columns` back onto the input pixels its patch
    /// came from (`images` must start at zero); the padding's entries are dropped. The same
    /// order as `unfold`: the interior columns' kernel rows as runs, without bounds tests.
    func fold(_ columns: UnsafePointer<Float>, samples: Int, into images: UnsafeMutablePointer<Float>) {
        let g = geometry, channels = g.input.channels, k = g.patchSize
        let run = g.kernelWidth * channels, step = g.strideWidth * channels, interior = g.interiorColumns
        var row = columns
        for sample in 0..<samples {
            let image = images + sample * inputWidth
            for oy in 0..<g.output.height {
                for ky in 0..<g.kernelHeight {
                    let y = oy * g.strideHeight - g.padTop + ky * g.dilationHeight
                    guard y >= 0 && y < g.input.height else { continue }
                    let source = row + ky * run, line = image + y * g.input.width * channels
                    for ox in 0..<interior.lowerBound { foldBorder(source + ox * k, column: ox, into: line) }
                    if g.dilationWidth == 1 {
                        addRuns(from: source + interior.lowerBound * k, to: line + (interior.lowerBound * g.strideWidth - g.padLeft) * channels,
                                step: step, count: interior.count, run: run)
                    } else {
                        for ox in interior { foldBorder(source + ox * k, column: ox, into: line) }
                    }
                    for ox in interior.upperBound..<g.output.width { foldBorder(source + ox * k, column: ox, into: line) }
                }
                row += g.output.width * k
            }
        }
    }

    /// `unfoldBorder`'s adjoint: adds one kernel row of a patch onto the input row `line`.
    @inline(__always)
    private func foldBorder(_ source: UnsafePointer<Float>, column ox: Int, into line: UnsafeMutablePointer<Float>) {
        let g = geometry, channels = g.input.channels, d = g.dilationWidth
        let x0 = ox * g.strideWidth - g.padLeft
        let xs = Self.inside(start: x0, dilation: d, kernel: g.kernelWidth, extent: g.input.width)
        if d == 1 {
            add(source + xs.low * channels, to: line + (x0 + xs.low) * channels, count: (xs.high - xs.low) * channels)
        } else {
            for kx in xs.low..<xs.high { add(source + kx * channels, to: line + (x0 + kx * d) * channels, count: channels) }
        }
    }

    /// `count` runs of `run` values, the i-th from source + i·step to target + i·K (one kernel
    /// row of consecutive patches). A short run (a one-channel image's kernel row is kw values)
    /// goes value position by value position down the patches, as strided loops: run by run
    /// it would be a memcpy call per few values.
    @inline(__always)
    private func copyRuns(from source: UnsafePointer<Float>, step: Int, to target: UnsafeMutablePointer<Float>, count: Int, run: Int) {
        let k = geometry.patchSize
        if run >= 16 {
            for i in 0..<count { copy(source + i * step, to: target + i * k, count: run) }
            return
        }
        for j in 0..<run {
            var from = source + j, to = target + j
            for _ in 0..<count {
                to.pointee = from.pointee
                from += step
                to += k
            }
        }
    }

    /// `copyRuns`' adjoint: adds the runs at source + i·K onto target + i·step (which overlap
    /// where the stride is smaller than the kernel).
    @inline(__always)
    private func addRuns(from source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, step: Int, count: Int, run: Int) {
        let k = geometry.patchSize
        if run >= 16 {
            for i in 0..<count { add(source + i * k, to: target + i * step, count: run) }
            return
        }
        for j in 0..<run {
            var from = source + j, to = target + j
            for _ in 0..<count {
                to.pointee += from.pointee
                from += k
                to += step
            }
        }
    }

    /// Short runs as a loop; longer ones as memcpy.
    @inline(__always)
    private func copy(_ source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, count: Int) {
        if count >= 16 {
            target.update(from: source, count: count)
        } else {
            for i in 0..<count { target[i] = source[i] }
        }
    }

    @inline(__always)
    private func zero(_ target: UnsafeMutablePointer<Float>, _ count: Int) {
        for i in 0..<count { target[i] = 0 }
    }

    @inline(__always)
    private func add(_ source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { target[i] += source[i] }
    }
}

/// `type: conv2d`: a Keras Conv2D (channels-last) / torch nn.Conv2d, with an optional inline
/// activation. Keys and defaults are Keras's: `filters`, `kernel_size` (an integer or
/// [height, width]), `strides: 1`, `padding: valid`, `dilation_rate: 1`, `use_bias: true`,
/// `activation`, the initializers (glorot_uniform, zeros; `torch` is nn.Conv2d's
/// kaiming_uniform(a = √5), U(±1/√fan_in) with fan_in = kh·kw·in, for the bias too),
/// regularizers, constraints and `weight_noise` as a dense layer's.
public struct Conv2DSpec: KernelLayerSpec, Equatable {
    static let typeName = "conv2d"

    /// A height and a width: a kernel size, strides or a dilation rate.
    public struct Pair: Sendable, Equatable, CustomStringConvertible {
        public var height: Int
        public var width: Int
        public init(_ height: Int, _ width: Int) { self.height = height; self.width = width }
        public var description: String { "\(height)×\(width)" }
    }

    /// Keras's padding: `valid` (none: the kernel stays inside the image) or `same` (zeros
    /// around it so that the output is ⌈input/stride⌉ on each axis).
    public enum Padding: String, Sendable, CaseIterable {
        case valid, same
    }

    public var filters: Int
    public var kernelSize: Pair
    public var strides = Pair(1, 1)
    public var padding = Padding.valid
    public var dilationRate = Pair(1, 1)
    public var activation = ActivationFunction.linear
    public var useBias = true
    public var kernelInitializer = Initializer.glorotUniform
    public var biasInitializer = Initializer.zeros
    public var kernelRegularizer: Penalty?
    public var biasRegularizer: Penalty?
    public var kernelConstraint: WeightConstraint?
    public var biasConstraint: WeightConstraint?
    /// σ of the additive Gaussian kernel noise in training (0 = none).
    public var weightNoise: Float = 0

    public init(filters: Int, kernelSize: Pair, strides: Pair = Pair(1, 1), padding: Padding = .valid,
                dilationRate: Pair = Pair(1, 1), activation: ActivationFunction = .linear, useBias: Bool = true) {
        self.filters = filters
        self.kernelSize = kernelSize
        self.strides = strides
        self.padding = padding
        self.dilationRate = dilationRate
        self.activation = activation
        self.useBias = useBias
    }

    static func parse(_ entry: inout ConfigSection) throws -> Conv2DSpec {
        guard let filters = try entry.int("filters") else { throw DDPError(.config, "missing key '\(entry.key("filters"))'") }
        guard filters >= 1 else { throw DDPError(.config, "\(entry.key("filters")): expected an integer ≥ 1, got \(filters)") }
        guard let kernelSize = try pair(&entry, "kernel_size", default: nil) else {
            throw DDPError(.config, "missing key '\(entry.key("kernel_size"))'")
        }
        var spec = Conv2DSpec(filters: filters, kernelSize: kernelSize, strides: try pair(&entry, "strides", default: 1)!,
                              padding: try entry.choice("padding", default: Padding.valid),
                              dilationRate: try pair(&entry, "dilation_rate", default: 1)!,
                              activation: try entry.choice("activation", default: ActivationFunction.linear),
                              useBias: try entry.bool("use_bias", default: true))
        if max(spec.strides.height, spec.strides.width) > 1 && max(spec.dilationRate.height, spec.dilationRate.width) > 1 {
            throw DDPError(.config, "\(entry.key("dilation_rate")): \(spec.dilationRate) with strides \(spec.strides): "
                           + "Keras refuses a stride above 1 together with a dilation rate above 1; use one of them")
        }
        if spec.activation == .softmax {
            throw DDPError(.config, "\(entry.key("activation")): softmax here would normalize every pixel and channel "
                           + "of a sample at once (Keras's is over the channels alone); put it after a flatten and a dense layer")
        }
        try spec.parseKernelKeys(&entry)
        return spec
    }

    /// Keras's int-or-pair keys (`kernel_size: 3` is 3×3, `[3, 5]` is 3 high and 5 wide), each
    /// at least 1 and at most 2³¹ − 1, so the geometry's products cannot overflow.
    private static func pair(_ entry: inout ConfigSection, _ name: String, default fallback: Int?) throws -> Pair? {
        let key = entry.key(name)
        ConfigKeyRecorder.current?.note(key, type: "integer ≥ 1, or list [height, width]", default: fallback.map { "\($0)" })
        guard let node = entry.node(name) else { return fallback.map { Pair($0, $0) } }
        let items = node.sequence.map(Array.init) ?? [node]
        let values = items.compactMap { $0.scalar.flatMap { Int($0.string.replacingOccurrences(of: "_", with: "")) } }
        guard items.count == (node.sequence == nil ? 1 : 2), values.count == items.count,
              values.allSatisfy({ (1...Int(Int32.max)).contains($0) }) else {
            throw DDPError(.config, "\(key): expected an integer ≥ 1 or a list [height, width] of them, got '\(ConfigSection.describe(node))'")
        }
        return Pair(values[0], values[values.count - 1])
    }

    public var sizeKey: String? { "filters" }
    public var hasParameters: Bool { true }
    public var inputKind: LayerInputKind { .image }

    /// One axis of the output, TensorFlow's (and torch's) formulas, with the kernel's span
    /// d·(k − 1) + 1:
    /// - valid: ⌊(n − span)/s⌋ + 1, no padding; nil when the span exceeds n.
    /// - same: ⌈n/s⌉, total padding max((out − 1)·s + span − n, 0), half of it (rounded down)
    ///   before, the rest after. With stride 1 and an odd kernel that is torch's padding = k//2.
    static func axis(_ n: Int, kernel k: Int, stride s: Int, dilation d: Int, padding: Padding) -> (length: Int, before: Int)? {
        let span = d * (k - 1) + 1
        switch padding {
        case .valid:
            return n >= span ? ((n - span) / s + 1, 0) : nil
        case .same:
            let length = (n + s - 1) / s
            return (length, max((length - 1) * s + span - n, 0) / 2)
        }
    }

    /// Where the kernel lands on `input`, or why it cannot: flat features, a kernel larger than
    /// the unpadded image, a patch or an output too large to index.
    public func geometry(input: FeatureShape) throws -> ConvGeometry {
        guard let image = input.image else {
            throw DDPError(.config, "gets the flat features \(input); a conv2d layer takes an image (height, width, channels): "
                           + "give the model one (model.inputs: [height, width, channels] or data.image_shape) "
                           + "and put no flatten or dense layer before it")
        }
        let k = kernelSize, s = strides, d = dilationRate
        guard let rows = Self.axis(image.height, kernel: k.height, stride: s.height, dilation: d.height, padding: padding),
              let columns = Self.axis(image.width, kernel: k.width, stride: s.width, dilation: d.width, padding: padding) else {
            let spans = d == Pair(1, 1) ? "" : " (with dilation_rate \(d) it spans "
                + "\(Pair(d.height * (k.height - 1) + 1, d.width * (k.width - 1) + 1)))"
            throw DDPError(.config, "kernel \(k)\(spans) does not fit the input \(input) with padding: valid; "
                           + "use padding: same or a smaller kernel_size")
        }
        let patch = saturatingProduct(k.height, k.width, image.channels)
        guard patch <= Int(Int32.max) else {
            throw DDPError(.config, "a kernel \(k) over \(image.channels) channels has \(patch) values, beyond the 2³¹ − 1 a GEMM takes")
        }
        let outputCount = saturatingProduct(rows.length, columns.length, filters)
        guard outputCount <= ImageShape.maximumFeatures else {
            throw DDPError(.config, "its output (None, \(rows.length), \(columns.length), \(filters)) holds more than "
                           + "2³¹ − 1 values per sample")
        }
        return ConvGeometry(input: image, output: ImageShape(height: rows.length, width: columns.length, channels: filters),
                            kernelHeight: k.height, kernelWidth: k.width, strideHeight: s.height, strideWidth: s.width,
                            dilationHeight: d.height, dilationWidth: d.width, padTop: rows.before, padLeft: columns.before)
    }

    public func outputShape(input: FeatureShape) throws -> FeatureShape {
        .image(try geometry(input: input).output)
    }

    /// filters·kh·kw·in kernel values and a bias per filter.
    public func parameterCount(input: FeatureShape) -> Int {
        let channels = input.image?.channels ?? input.count
        return saturatingSum(saturatingProduct(filters, kernelSize.height, kernelSize.width, channels), useBias ? filters : 0)
    }

    /// The unfolded patches kept from forward for dW: OH·OW·kh·kw·in floats per sample (none
    /// for a pointwise layer, which multiplies its input). One chunk's dcolumns, at most
    /// `Conv2D.defaultChunkFloats` or one sample's patches, comes on top, whatever the batch.
    public func workspacePerSample(input: FeatureShape) -> Int {
        guard let g = try? geometry(input: input), !g.isPointwise else { return 0 }
        return saturatingProduct(g.positions, g.patchSize)
    }

    public func makeLayers(configIndex: Int, input: FeatureShape, frozen: Bool) -> [Layer] {
        guard let geometry = try? geometry(input: input) else {
            preconditionFailure("conv2d at model.layers[\(configIndex)]: makeLayers needs a shape outputShape(input:) accepted")
        }
        let conv = Conv2D(configIndex: configIndex, geometry: geometry, useBias: useBias,
                          kernelInitializer: kernelInitializer, biasInitializer: biasInitializer,
                          kernelRegularizer: kernelRegularizer, biasRegularizer: biasRegularizer, weightNoise: weightNoise,
                          kernelConstraint: kernelConstraint, biasConstraint: biasConstraint, trainable: !frozen)
        guard activation != .linear else { return [conv] }
        return [conv, Activation(configIndex: configIndex, function: activation, width: geometry.output.featureCount)]
    }
}
