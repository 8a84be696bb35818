/// BatchNorm → ReLU → Dropout → MaxPooling2D run as one pass over the rows (also any two or
/// three of them with the ReLU, as ReLU → Dropout after a dense layer's inline ReLU, or ReLU →
/// MaxPooling2D after a conv's). `Network` fuses such a run of its layers when none of them has
/// an activity regularizer and the BatchNorm is trainable (a frozen one runs on its own); `layers`, tensor names, checkpoints
/// and `ddp summary` still show the separate layers, whose parameters and state it uses.
///
/// Separately each layer is its own pass over (batch × width) floats with its own output
/// buffer; fused, each row goes through L1 once:
///
///     forward:  x̂ = (x − μ)/√(σ² + ε), v = γ·x̂ + β into one row of scratch,
///               y = relu(v)·keep, keep = 0 or 1/(1 − rate) from the Dropout layer's mask draw
///     backward: g = dy·k where y > 0, else 0 (Dropout's then ReLU's backward: y > 0 exactly
///               where v > 0 and the unit was kept, and every kept unit has the same factor k),
///               written over dy row by row in the loop that sums BatchNorm's Σg and Σg·x̂;
///               then the dx loop; x̂ recomputed from x in both, with forward's operations
///     with a max pool: forward pools each sample's y row right after writing it (in cache);
///               backward builds each sample's dy row in cache (zeroed, the pooled gradient
///               scattered onto the winners) and writes g into dx, whose formula runs in place
///
/// It keeps neither x̂ nor a mask: forward writes y alone, and backward reads x and y, which
/// the network keeps anyway, so the CNN's first block (128 × 28 × 28 × 32 floats) needs two
/// full-size buffers fewer (25.7 MB). Its time per step, one process on an AMD Zen 5 VM
/// (2026-12-07, Cooperlake kernels, separate runs): forward 2.65 → 2.15 ms, backward 2.39 →
/// 2.70 ms (x̂ is computed twice there), 5.0 → 4.9 ms together.
///
/// The ReLU and mask stages are SIMD selects, not branches: the sign of v is a coin flip that a
/// branch predictor loses (a first, branching version made backward 3× slower than the separate
/// layers). Every element goes through the same float operations in the same order as in the
/// separate layers (BatchNorm's own `TrainingAffine`, `GradientSums` and
/// `InputGradientFormula`), the mask comes from the same `CounterRandom` draw keyed by the
/// Dropout layer's config index, and the BatchNorm runs the same two collectives (forward
/// Σx, Σx², n; backward Σg, Σg·x̂), so fused and separate layers give bit-identical outputs,
/// gradients and running statistics (FusedNormActivationTests).
///
/// Fused against separate layers, byte-identical weights: np = 1 1.020×, np = 2 1.032×
/// (docs/PERFORMANCE.md, 'Fused BatchNorm → ReLU → Dropout (FusedNormActivation)').
final class FusedNormActivation {
    /// Indices in `Network.layers` of the first and the last layer it stands for.
    let first: Int
    let last: Int
    let width: Int
    /// The BatchNorm's features per row: `width`, or an image's channels (each sample row is
    /// then height × width rows of channels for the normalization, one row for the rest).
    let channels: Int
    let norm: BatchNorm?
    let dropout: Dropout?
    /// A max pooling right after the run, fused too: forward pools each sample's row while it
    /// is in cache, backward scatters each sample's pooled gradient into a zeroed row and masks
    /// it there, instead of a full-size zeroed buffer read back from memory. `poolIndex` is its
    /// place in `Network.layers`; the run's own output (`last`) is still written, for backward.
    let pool: MaxPooling2D?
    let poolIndex: Int?
    /// The last training forward's normalization (μ and 1/√(σ² + ε) per channel, γ, β), from
    /// which backward recomputes x̂.
    private var lastAffine: BatchNorm.TrainingAffine?
    /// The factor of a kept unit in the last forward: 1/(1 − rate) when it dropped, else 1.
    private var keptFactor: Float = 1
    /// One row of BatchNorm output, and one of dropout factors, between the stages of the row
    /// loop (they stay in L1).
    private let row: UnsafeMutableBufferPointer<Float>
    private let keepRow: UnsafeMutableBufferPointer<Float>

    private init(first: Int, last: Int, width: Int, norm: BatchNorm?, dropout: Dropout?, pool: MaxPooling2D?) {
        self.first = first
        self.last = last
        self.width = width
        channels = norm?.channels ?? width
        self.norm = norm
        self.dropout = dropout
        self.pool = pool
        poolIndex = pool == nil ? nil : last + 1
        row = .allocate(capacity: width)
        row.initialize(repeating: 0)
        keepRow = .allocate(capacity: width)
        keepRow.initialize(repeating: 1)
    }

    deinit {
        row.deallocate()
        keepRow.deallocate()
    }

    /// The fused run that starts at `layers[index]`, if one does: [BatchNorm] → ReLU →
    /// [Dropout] → [MaxPooling2D] with at least two of the four, no activity penalty among them,
    /// and a trainable BatchNorm.
    static func run(in layers: [Layer], at index: Int, activityPenalties: [Penalty?]) -> FusedNormActivation? {
        var next = index
        var norm: BatchNorm?
        if let batchNorm = layers[next] as? BatchNorm {
            guard batchNorm.trainable else { return nil }
            norm = batchNorm
            next += 1
        }
        guard next < layers.count, let relu = layers[next] as? Activation, relu.function == .relu else { return nil }
        next += 1
        var dropout: Dropout?
        if next < layers.count, let layer = layers[next] as? Dropout {
            dropout = layer
            next += 1
        }
        var pool: MaxPooling2D?
        if next < layers.count, let layer = layers[next] as? MaxPooling2D, activityPenalties[next] == nil {
            pool = layer
        }
        guard norm != nil || dropout != nil || pool != nil,
              activityPenalties[index..<next].allSatisfy({ $0 == nil }) else { return nil }
        return FusedNormActivation(first: index, last: next - 1, width: relu.inputWidth, norm: norm, dropout: dropout, pool: pool)
    }

    /// Nothing per batch: the pass keeps no mask and no x̂ (backward recomputes both, see the
    /// type's comment).
    func reserve(maxBatch: Int) {}

    /// input: the first layer's input, output: the last layer's output, both (batch, width);
    /// `pooled`: the pool's output, when the run has one.
    func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, pooled: UnsafeMutablePointer<Float>? = nil,
                 batch: Int, context: StepContext) throws {
        let width = self.width, preActivation = row.baseAddress!, keep = keepRow.baseAddress!
        var training: BatchNorm.TrainingAffine?, inference: BatchNorm.InferenceAffine?
        if let norm {
            if context.training {
                training = try norm.prepareTraining(input, rows: batch * norm.positions, context: context)
            } else {
                inference = norm.prepareInference()
            }
        }
        lastAffine = training
        let rate = dropout?.rate ?? 0
        let dropping = context.training && rate > 0
        let keepScale: Float = rate >= 1 ? 0 : 1 / (1 - rate)
        keptFactor = dropping ? keepScale : 1
        let seed = context.seed, epoch = UInt64(context.epoch), layer = UInt64(dropout?.configIndex ?? 0)
        if !dropping { keepRow.update(repeating: 1) }
        for row in 0..<batch {
            let x = input + row * width
            var v = x
            if let training {
                for at in stride(from: 0, to: width, by: channels) {
                    training.apply(row: x + at, output: preActivation + at, width: channels)
                }
                v = UnsafePointer(preActivation)
            } else if let inference {
                for at in stride(from: 0, to: width, by: channels) {
                    inference.apply(row: x + at, output: preActivation + at, width: channels)
                }
                v = UnsafePointer(preActivation)
            }
            if dropping {
                let rowKey = CounterRandom.bits(seed, .dropout, epoch, UInt64(context.sampleRows[row]), layer)
                CounterRandom.keepFactors(rowKey: rowKey, count: width, rate: rate, scale: keepScale, into: keep)
            }
            Self.reluTimesKeep(v, keep, output + row * width, width)
            if let pool, let pooled { pool.forward(sample: row, output + row * width, pooled) }
        }
    }

    /// y = relu(v)·keep, eight lanes at a time: selects, not branches (the sign of v is a coin
    /// flip a branch predictor loses).
    private static func reluTimesKeep(_ v: UnsafePointer<Float>, _ keep: UnsafePointer<Float>,
                                      _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        let end = count - count % 8
        var i = 0
        while i < end {
            let value = load8(v + i)
            store8(value.replacing(with: 0, where: value .<= 0) * load8(keep + i), y + i)
            i += 8
        }
        while i < count {
            y[i] = (v[i] <= 0 ? 0 : v[i]) * keep[i]
            i += 1
        }
    }

    /// g = dy·k where y > 0, else 0 (Dropout's then ReLU's backward): y > 0 exactly where the
    /// pre-activation was positive and the unit kept, and every kept unit's factor is the same
    /// k (1/(1 − rate), or 1 without dropout). Eight lanes at a time.
    private static func maskedGradient(_ dy: UnsafePointer<Float>, _ y: UnsafePointer<Float>, factor k: Float,
                                       _ g: UnsafeMutablePointer<Float>, _ count: Int) {
        let end = count - count % 8
        var i = 0
        let factor = SIMD8<Float>(repeating: k)
        while i < end {
            store8((load8(dy + i) * factor).replacing(with: 0, where: load8(y + i) .<= 0), g + i)
            i += 8
        }
        while i < count { g[i] = y[i] <= 0 ? 0 : dy[i] * k; i += 1 }
    }

    /// After a training forward on the same input, whose output `output` is. dy is the
    /// gradient of the run's output, or of the pool's with a pool. With a BatchNorm, g =
    /// dL/d(BatchNorm output) is written over dy (without a pool) or into dx (with one; dx's
    /// formula then runs in place).
    func backward(input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient dy: UnsafeMutablePointer<Float>,
                  inputGradient dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) throws {
        let width = self.width, factor = keptFactor
        /// Row `row`'s g: dy's row, or the pooled gradient scattered into `target` and masked there.
        func gradientRow(_ row: Int, into target: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
            let o = row * width
            guard let pool else {
                Self.maskedGradient(dy + o, output + o, factor: factor, target, width)
                return target
            }
            target.update(repeating: 0, count: width)
            pool.backward(sample: row, outputGradient: dy, into: target)
            Self.maskedGradient(target, output + o, factor: factor, target, width)
            return target
        }
        guard let norm else {
            if let dx { for row in 0..<batch { _ = gradientRow(row, into: dx + row * width) } }
            return
        }
        guard let affine = lastAffine else { preconditionFailure("FusedNormActivation: backward without a training forward") }
        // g's home: over dy without a pool; with one, dx (or one row of scratch when no dx is wanted).
        let gradients = pool == nil ? dy : dx
        for group in 0..<norm.beginGradientSums(context: context) {
            let (sums, samples) = norm.gradientSums(group: group, batch: batch, context: context)
            for row in samples {
                let o = row * width
                let g = gradientRow(row, into: gradients.map { $0 + o } ?? self.row.baseAddress!)
                for at in stride(from: 0, to: width, by: channels) { sums.add(row: g + at, input: input + o + at, affine: affine) }
            }
        }
        guard let formula = try norm.finishGradientSums(inputGradient: dx != nil, context: context), let dx, let gradients else { return }
        for at in stride(from: 0, to: batch * width, by: channels) {
            formula.apply(row: gradients + at, input: input + at, affine: affine, inputGradient: dx + at, width: channels)
        }
    }
}
