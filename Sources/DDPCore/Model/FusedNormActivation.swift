/// BatchNorm → ReLU → Dropout run as one pass over the rows (also BatchNorm → ReLU, and ReLU →
/// Dropout, which covers a dense layer with `activation: relu` before a dropout). `Network`
/// fuses such a run of its layers when none of them has an activity regularizer and the
/// BatchNorm is trainable (a frozen one runs on its own); `layers`, tensor names, checkpoints
/// and `ddp summary` still show the separate layers, whose parameters and state it uses.
///
/// Separately each layer is its own pass over (batch × width) floats with its own output
/// buffer; fused, each row goes:
///
///     forward:  v = γ·x̂ + β (BatchNorm's formula, into one row of scratch that stays in L1),
///               y = relu(v)·keep, keep = 0 or 1/(1 − rate) from the Dropout layer's mask draw;
///               m = −1 where v ≤ 0 (ReLU passes no gradient), else keep, stored per element
///     backward: g = 0 where m < 0, else dy·m (Dropout's then ReLU's backward), written over dy
///               in the loop that sums BatchNorm's Σg and Σg·x̂; then the dx loop
///
/// x̂ is not stored: backward recomputes (x − μ)·(1/√(σ² + ε)) from the BatchNorm's input,
/// which the network keeps. Every element goes through the same float operations in the same
/// order as in the separate layers (BatchNorm's own `TrainingAffine`, `GradientSums` and
/// `InputGradientFormula`), the mask comes from the same `CounterRandom` draw keyed by the
/// Dropout layer's config index, and the BatchNorm runs the same two collectives (forward
/// Σx, Σx², n; backward Σg, Σg·x̂), so fused and separate layers give bit-identical outputs,
/// gradients and running statistics (FusedNormActivationTests).
///
/// Measured on the default config (configs/fashion-mnist.yaml), 2-core dev VM, 2026-11-23:
/// (measurement in the next commit).
final class FusedNormActivation {
    /// Indices in `Network.layers` of the first and the last layer it stands for.
    let first: Int
    let last: Int
    let width: Int
    let norm: BatchNorm?
    let dropout: Dropout?
    /// −1 where the pre-activation was ≤ 0, else the dropout factor (1 without dropout in
    /// training), per element of the last forward, (batch, width).
    private var mask = UnsafeMutableBufferPointer<Float>(start: nil, count: 0)
    /// One row of BatchNorm output between the two halves of the row loop.
    private let row: UnsafeMutableBufferPointer<Float>

    private init(first: Int, last: Int, width: Int, norm: BatchNorm?, dropout: Dropout?) {
        self.first = first
        self.last = last
        self.width = width
        self.norm = norm
        self.dropout = dropout
        row = .allocate(capacity: width)
        row.initialize(repeating: 0)
    }

    deinit {
        mask.deallocate()
        row.deallocate()
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
        let width = self.width, mask = self.mask.baseAddress!, preActivation = row.baseAddress!
        var training: BatchNorm.TrainingAffine?, inference: BatchNorm.InferenceAffine?
        if let norm {
            if context.training {
                training = try norm.prepareTraining(input, batch: batch, context: context)
            } else {
                inference = norm.prepareInference()
            }
        }
        let rate = dropout?.rate ?? 0
        let dropping = context.training && rate > 0
        let keepScale: Float = rate >= 1 ? 0 : 1 / (1 - rate)
        let seed = context.seed, epoch = UInt64(context.epoch), layer = UInt64(dropout?.configIndex ?? 0)
        for row in 0..<batch {
            let x = input + row * width, y = output + row * width, m = mask + row * width
            var v = x
            if let training {
                for j in 0..<width { preActivation[j] = training.scaleAndShift(training.normalize(x[j], j), j) }
                v = UnsafePointer(preActivation)
            } else if let inference {
                for j in 0..<width { preActivation[j] = inference.apply(x[j], j) }
                v = UnsafePointer(preActivation)
            }
            if dropping {
                let rowKey = CounterRandom.bits(seed, .dropout, epoch, UInt64(context.sampleRows[row]), layer)
                for j in 0..<width {
                    let keep: Float = CounterRandom.uniform(rowKey: rowKey, unit: j) < rate ? 0 : keepScale
                    y[j] = (v[j] <= 0 ? 0 : v[j]) * keep
                    m[j] = v[j] <= 0 ? -1 : keep
                }
            } else {
                for j in 0..<width {
                    y[j] = v[j] <= 0 ? 0 : v[j]
                    m[j] = v[j] <= 0 ? -1 : 1
                }
            }
        }
    }

    /// After a training forward on the same input. dy is overwritten with g = dL/d(BatchNorm
    /// output) when there is a BatchNorm.
    func backward(input: UnsafePointer<Float>, outputGradient dy: UnsafeMutablePointer<Float>,
                  inputGradient dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) throws {
        let width = self.width, mask = UnsafePointer(self.mask.baseAddress!)
        guard let norm else {
            guard let dx else { return }
            for i in 0..<batch * width { dx[i] = mask[i] < 0 ? 0 : dy[i] * mask[i] }
            return
        }
        let affine = norm.trainingAffine
        let sums = norm.beginGradientSums()
        for row in 0..<batch {
            let o = row * width
            for j in 0..<width {
                let g = mask[o + j] < 0 ? 0 : dy[o + j] * mask[o + j]
                dy[o + j] = g
                sums.add(g, affine.normalize(input[o + j], j), j)
            }
        }
        guard let formula = try norm.finishGradientSums(inputGradient: dx != nil, context: context), let dx else { return }
        for row in 0..<batch {
            let o = row * width
            for j in 0..<width { dx[o + j] = formula.apply(dy[o + j], affine.normalize(input[o + j], j), j) }
        }
    }
}
