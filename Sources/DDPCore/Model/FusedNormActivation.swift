/// BatchNorm → ReLU → Dropout run as one pass over the rows (also BatchNorm → ReLU, and ReLU →
/// Dropout, which covers a dense layer with `activation: relu` before a dropout). `Network`
/// fuses such a run of its layers when none of them has an activity regularizer and the
/// BatchNorm is trainable (a frozen one runs on its own); `layers`, tensor names, checkpoints
/// and `ddp summary` still show the separate layers, whose parameters and state it uses.
///
/// Separately each layer is its own pass over (batch × width) floats with its own output
/// buffer; fused, each row goes through L1 once:
///
///     forward:  x̂ = (x − μ)/√(σ² + ε) (kept for backward, as BatchNorm keeps it),
///               v = γ·x̂ + β into one row of scratch,
///               y = relu(v)·keep, keep = 0 or 1/(1 − rate) from the Dropout layer's mask draw,
///               m = −1 where v ≤ 0 (ReLU passes no gradient), else keep, stored per element
///     backward: g = 0 where m < 0, else dy·m (Dropout's then ReLU's backward), written over dy
///               row by row in the loop that sums BatchNorm's Σg and Σg·x̂; then the dx loop
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
    /// −1 where the pre-activation was ≤ 0, else the dropout factor (1 where nothing drops: no
    /// dropout, rate 0 or inference), per element of the last forward, (batch, width).
    private var mask = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    /// One row of BatchNorm output, and one of dropout factors, between the stages of the row
    /// loop (they stay in L1).
    private let row: UnsafeMutableBufferPointer<Float>
    private let keepRow: UnsafeMutableBufferPointer<Float>

    private init(first: Int, last: Int, width: Int, norm: BatchNorm?, dropout: Dropout?) {
        self.first = first
        self.last = last
        self.width = width
        channels = norm?.channels ?? width
        self.norm = norm
        self.dropout = dropout
        row = .allocate(capacity: width)
        row.initialize(repeating: 0)
        keepRow = .allocate(capacity: width)
        keepRow.initialize(repeating: 1)
    }

    deinit {
        mask.deallocate()
        row.deallocate()
        keepRow.deallocate()
    }

    /// The fused run that starts at `layers[index]`, if one does: [BatchNorm] → ReLU →
    /// [Dropout] with at least two of the three, no activity penalty among them, and a trainable
    /// BatchNorm.
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
        guard norm != nil || dropout != nil,
              activityPenalties[index..<next].allSatisfy({ $0 == nil }) else { return nil }
        return FusedNormActivation(first: index, last: next - 1, width: relu.inputWidth, norm: norm, dropout: dropout)
    }

    func reserve(maxBatch: Int) {
        mask.deallocate()
        mask = .allocate(capacity: max(maxBatch, 1) * width)
        mask.initialize(repeating: 1)
    }

    /// input: the first layer's input, output: the last layer's output, both (batch, width).
    func forward(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                 batch: Int, context: StepContext) throws {
        let width = self.width, mask = self.mask.baseAddress!, preActivation = row.baseAddress!, keep = keepRow.baseAddress!
        var training: BatchNorm.TrainingAffine?, inference: BatchNorm.InferenceAffine?
        if let norm {
            if context.training {
                training = try norm.prepareTraining(input, rows: batch * norm.positions, context: context)
            } else {
                inference = norm.prepareInference()
            }
        }
        let rate = dropout?.rate ?? 0
        let dropping = context.training && rate > 0
        let keepScale: Float = rate >= 1 ? 0 : 1 / (1 - rate)
        let seed = context.seed, epoch = UInt64(context.epoch), layer = UInt64(dropout?.configIndex ?? 0)
        if !dropping { keepRow.update(repeating: 1) }
        for row in 0..<batch {
            let x = input + row * width
            var v = x
            if let training, let norm {
                let xHat = norm.normalizedRows + row * width
                for at in stride(from: 0, to: width, by: channels) {
                    training.apply(row: x + at, normalized: xHat + at, output: preActivation + at, width: channels)
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
            Self.reluTimesKeep(v, keep, output + row * width, mask + row * width, width)
        }
    }

    /// y = relu(v)·keep and m = (v ≤ 0 ? −1 : keep), eight lanes at a time: selects, not
    /// branches (the sign of v is a coin flip a branch predictor loses).
    private static func reluTimesKeep(_ v: UnsafePointer<Float>, _ keep: UnsafePointer<Float>,
                                      _ y: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>, _ count: Int) {
        let end = count - count % 8
        var i = 0
        while i < end {
            let value = load8(v + i), factor = load8(keep + i)
            let cut = value .<= 0
            store8(value.replacing(with: 0, where: cut) * factor, y + i)
            store8(factor.replacing(with: -1, where: cut), m + i)
            i += 8
        }
        while i < count {
            y[i] = (v[i] <= 0 ? 0 : v[i]) * keep[i]
            m[i] = v[i] <= 0 ? -1 : keep[i]
            i += 1
        }
    }

    /// g = 0 where m < 0, else dy·m (Dropout's then ReLU's backward), eight lanes at a time.
    private static func maskedGradient(_ dy: UnsafePointer<Float>, _ m: UnsafePointer<Float>,
                                       _ g: UnsafeMutablePointer<Float>, _ count: Int) {
        let end = count - count % 8
        var i = 0
        while i < end {
            let gradient = load8(dy + i), factor = load8(m + i)
            store8((gradient * factor).replacing(with: 0, where: factor .< 0), g + i)
            i += 8
        }
        while i < count { g[i] = m[i] < 0 ? 0 : dy[i] * m[i]; i += 1 }
    }

    /// After a training forward on the same input. dy is overwritten with g = dL/d(BatchNorm
    /// output) when there is a BatchNorm.
    func backward(input: UnsafePointer<Float>, outputGradient dy: UnsafeMutablePointer<Float>,
                  inputGradient dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) throws {
        let width = self.width, mask = UnsafePointer(self.mask.baseAddress!)
        guard let norm else {
            if let dx { Self.maskedGradient(dy, mask, dx, batch * width) }
            return
        }
        let xHat = UnsafePointer(norm.normalizedRows)
        let sums = norm.beginGradientSums()
        for row in 0..<batch {
            let o = row * width
            Self.maskedGradient(dy + o, mask + o, dy + o, width)
            for at in stride(from: o, to: o + width, by: channels) { sums.add(row: dy + at, normalized: xHat + at) }
        }
        guard let formula = try norm.finishGradientSums(inputGradient: dx != nil, context: context), let dx else { return }
        for at in stride(from: 0, to: batch * width, by: channels) {
            formula.apply(row: dy + at, normalized: xHat + at, inputGradient: dx + at, width: channels)
        }
    }
}
