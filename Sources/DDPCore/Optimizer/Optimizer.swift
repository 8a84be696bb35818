#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Which parameters an optimizer's weight_decay (and LARS's trust ratio) applies to. The
/// default takes kernels only, not biases and not BatchNorm's γ/β (the usual practice, and
/// LARS's paper's; torch decays whatever it is given).
public enum DecayScope: String, Sendable, CaseIterable {
    case kernels, all
}

/// The config's `optimizer` section.
public struct OptimizerConfig: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case sgd, adam, adamw, rmsprop, lamb, lars }
    public var kind: Kind
    public var learningRate: Float
    public var weightDecay: Float = 0
    public var decay: DecayScope = .kernels
    public var momentum: Float = 0
    public var dampening: Float = 0
    public var nesterov = false
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    /// RMSprop's smoothing constant α (torch's `alpha`, Keras's `rho`).
    public var alpha: Float = 0.99
    /// RMSprop: normalize by the gradient's estimated variance instead of its second moment.
    public var centered = false
    /// LARS's trust coefficient η (You et al. 2017, eq. 6; the paper's 0.001).
    public var trustCoefficient: Float = 0.001
    /// LARS: the tensors the trust ratio scales; the others take plain momentum SGD steps.
    public var adapt: DecayScope = .kernels
    /// Gradient clipping by global L2 norm (torch.nn.utils.clip_grad_norm_); nil = off.
    public var clipNorm: Float?
    /// `scale_lr`: how `lr` follows the global batch (see `scaledLearningRate`).
    public var scaleLR: LearningRateScaling = .none
    /// `base_batch`: the global batch `lr` was tuned for, under `scale_lr: linear`.
    public var baseBatch = 256

    public enum LearningRateScaling: String, Sendable, CaseIterable { case none, linear }

    /// The defaults of `kind`'s reference: LAMB's ε is Keras's 1e-7, LARS's momentum the paper's 0.9.
    public init(kind: Kind, learningRate: Float) {
        self.kind = kind
        self.learningRate = learningRate
        if kind == .lamb { epsilon = 1e-7 }
        if kind == .lars { momentum = 0.9 }
    }

    /// The lr a run trains with at `globalBatch`: `lr`, or under `scale_lr: linear` the linear
    /// scaling rule of Goyal et al. 2017 (§2.1, "when the minibatch size is multiplied by k,
    /// multiply the learning rate by k"): lr × globalBatch / base_batch. The schedule, its
    /// warmup and reduce_on_plateau start from it.
    public func scaledLearningRate(globalBatch: Int) -> Float {
        scaleLR == .linear ? learningRate * Float(globalBatch) / Float(baseBatch) : learningRate
    }

    /// The run header's line for a scaled lr, e.g. "lr 0.016 = 0.001 × 4096 / 256
    /// (optimizer.scale_lr: linear)"; nil when the lr is not scaled.
    public func scalingDescription(globalBatch: Int) -> String? {
        guard scaleLR == .linear else { return nil }
        return "lr \(scaledLearningRate(globalBatch: globalBatch)) = \(learningRate) × \(globalBatch) / \(baseBatch) (optimizer.scale_lr: linear)"
    }
}

/// One optimizer over the network's flat parameter buffer, with torch.optim semantics exactly:
///
/// SGD (torch.optim.SGD):      g ← g + wd·p;  b ← g (first step) or μ·b + (1 − dampening)·g;
///                             g ← g + μ·b (nesterov) or b;  p ← p − lr·g
/// Adam (torch.optim.Adam):    g ← g + wd·p  (coupled: L2 through the gradient)
/// AdamW (torch.optim.AdamW):  p ← p·(1 − lr·wd)  (decoupled, before the moment update)
/// then, for both:             m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²
///                             p ← p − (lr/(1 − β₁ᵗ)) · m / (√v/√(1 − β₂ᵗ) + ε)
/// RMSprop (torch.optim.RMSprop, Hinton's lecture 6e rule with torch's ε outside the root):
///                             g ← g + wd·p;  v ← αv + (1 − α)g²;
///                             centered: ḡ ← ḡ + (1 − α)(g − ḡ) (torch's lerp), d = √(v − ḡ²) + ε;
///                             else d = √v + ε;
///                             momentum μ > 0: b ← μb + g/d, p ← p − lr·b;  else p ← p − lr·g/d
///                             v in the second moment; ḡ or b in the first (both at once,
///                             centered with momentum, would need a third buffer: refused)
/// LAMB (Keras 3's keras.optimizers.Lamb, You et al. 2019), per tensor, t = step:
///                             p ← p − p·wd·lr  (decoupled, before the update: Keras's base optimizer)
///                             m ← m + (g − m)(1 − β₁);  v ← v + (g² − v)(1 − β₂)
///                             u = (m/(1 − β₁ᵗ)) / (√(v/(1 − β₂ᵗ)) + ε)
///                             r = ‖p‖/‖u‖ (1 where either norm is 0);  p ← p − (r·lr)·u
/// LARS (You et al. 2017, "Large Batch Training of Convolutional Networks", Algorithm 1 with
/// eq. 6's trust coefficient η; β = wd where decay applies, else 0), per tensor:
///                             λ = η‖p‖/(‖g‖ + β‖p‖ + ε) (1 where either norm is 0, or where
///                             `adapt` leaves the tensor out: biases and BatchNorm by default)
///                             b ← μb + lr·λ·(g + βp);  p ← p − b
///
/// It runs on the combined gradient (after the allreduce, or on this rank's slice after the
/// reduce-scatter), so every rank's update of a parameter is the same. It owns one contiguous
/// `range` of the flat parameter buffer (all of it, or one slice) and moments for that range
/// only: it sees parameters, gradients and moments of a range, nothing of how the gradients
/// were combined. The layout says which of its elements weight decay applies to.
///
/// LAMB and LARS scale each tensor's step by a ratio of norms over the whole tensor, which an
/// optimizer over a slice sees only part of. Over the whole buffer `apply` computes them
/// itself; over a slice the sync takes the step in halves and sums the norms' shares over the
/// ranks between them (`addLARSShares` or `beginLAMBStep`, then `finishLayerwiseStep`).
public final class Optimizer {
    public let config: OptimizerConfig
    /// The slice of the flat parameter buffer this optimizer updates.
    public let range: Range<Int>
    public let count: Int
    /// First moment (Adam) or momentum buffer (SGD); `capacity` floats, the first `count` used.
    public let firstMoment: UnsafeMutableBufferPointer<Float>
    /// Second moment (Adam); empty for SGD, which keeps none (its checkpoints hold zeros there,
    /// so every checkpoint has the same tensors).
    public let secondMoment: UnsafeMutableBufferPointer<Float>
    public var keepsSecondMoment: Bool { Self.keepsSecondMoment(config.kind) }
    private static func keepsSecondMoment(_ kind: OptimizerConfig.Kind) -> Bool { kind != .sgd && kind != .lars }
    /// Holds both moments (see `HugePageFloats` for why not two plain allocations).
    private let moments: HugePageFloats
    /// Steps taken so far (torch's `state['step']`).
    public var step: Int = 0
    /// The momentum of this step where a schedule cycles it (one_cycle): SGD's and RMSprop's
    /// momentum, Adam's β₁ (bias correction included, as torch reads the group's betas each
    /// step); nil = the config's.
    public var scheduledMomentum: Float?
    /// Ranges relative to `range.lowerBound` that weight_decay applies to.
    private let decayRanges: [Range<Int>]
    /// LAMB and LARS: the trust ratios' per-tensor sums hold 2 × `tensorCount` doubles, the
    /// first half Σp² per trainable tensor, the second Σu² (LAMB) or Σg² (LARS).
    public var isLayerwise: Bool { config.kind == .lamb || config.kind == .lars }
    public let tensorCount: Int
    /// The trainable tensors' parts inside `range`, in buffer order.
    private let tensorParts: [TensorPart]
    /// `apply` over the whole buffer: where it sums the norms itself.
    private let wholeSums: UnsafeMutableBufferPointer<Double>
    /// The range is every trainable parameter: `apply` may take LAMB's and LARS's norms alone.
    private let coversEveryTensor: Bool

    /// One trainable tensor's part of the range.
    struct TensorPart {
        /// Relative to `range.lowerBound`.
        let span: Range<Int>
        /// The tensor's index among the layout's trainable tensors (its place in the sums).
        let tensor: Int
        /// With `pieceGrid`: the part's index among every tensor's pieces (its place in the
        /// piece sums); else the tensor's.
        let slot: Int
        let decayed: Bool
        /// LARS: the trust ratio scales it (`adapt`).
        let adapted: Bool
    }

    /// An optimizer over every trainable parameter.
    public convenience init(config: OptimizerConfig, layout: ParameterLayout) {
        self.init(config: config, layout: layout, range: 0..<layout.trainableCount, capacity: layout.trainableCount)
    }

    /// The deterministic mode's pieces (`pieceGrid`): every trainable tensor cut at the multiples
    /// of the grid, in buffer order, as (tensor index, absolute span); empty without a grid.
    public let pieces: [(tensor: Int, span: Range<Int>)]

    /// An optimizer over `range` of the flat parameter buffer, with moment buffers of `capacity`
    /// (≥ range.count) floats: the sharded update gathers equal-sized blocks from every rank.
    /// `pieceGrid` (the deterministic mode, whose blocks are multiples of it): LAMB's and LARS's
    /// per-tensor sums are taken per piece, a tensor cut at the grid's multiples, whatever the
    /// range; the sync adds the pieces in order (`tensorSums(fromPieces:into:)`), so the norms
    /// do not depend on where the ranks' blocks end.
    public init(config: OptimizerConfig, layout: ParameterLayout, range: Range<Int>, capacity: Int, pieceGrid: Int? = nil) {
        precondition(capacity >= range.count, "Optimizer: capacity \(capacity) below the range's \(range.count) floats")
        self.config = config
        self.range = range
        count = range.count
        let second = Self.keepsSecondMoment(config.kind)
        moments = HugePageFloats(counts: second ? [capacity, capacity] : [capacity])
        firstMoment = moments.parts[0]
        secondMoment = second ? moments.parts[1] : UnsafeMutableBufferPointer(start: nil, count: 0)
        tensorCount = layout.trainableTensors.reduce(0) { count, _ in count + 1 }
        // Each trainable tensor whole, or cut at the grid's multiples.
        var spans: [(tensor: Int, span: Range<Int>)] = []
        for (index, slot) in layout.trainableTensors.enumerated() {
            var lower = slot.offset
            while lower < slot.offset + slot.count {
                let upper = pieceGrid.map { min((lower / $0 + 1) * $0, slot.offset + slot.count) } ?? slot.offset + slot.count
                spans.append((index, lower..<upper))
                lower = upper
            }
        }
        pieces = pieceGrid == nil ? [] : spans
        let roles = layout.trainableTensors.map(\.role)
        let parts = spans.enumerated().compactMap { index, piece -> TensorPart? in
            let lower = max(piece.span.lowerBound, range.lowerBound), upper = min(piece.span.upperBound, range.upperBound)
            guard lower < upper else { return nil }
            let role = roles[piece.tensor]
            return TensorPart(span: (lower - range.lowerBound)..<(upper - range.lowerBound), tensor: piece.tensor,
                              slot: pieceGrid == nil ? piece.tensor : index,
                              decayed: config.decay == .all || role == .kernel,
                              adapted: config.adapt == .all || role == .kernel)
        }
        tensorParts = parts
        coversEveryTensor = range == 0..<layout.trainableCount
        wholeSums = .allocate(capacity: 2 * tensorCount)
        wholeSums.initialize(repeating: 0)
        // The decayed parts, adjacent ones merged: one loop run per contiguous stretch.
        var ranges: [Range<Int>] = []
        for part in parts where part.decayed {
            let local = part.span
            if let last = ranges.last, last.upperBound == local.lowerBound {
                ranges[ranges.count - 1] = last.lowerBound..<local.upperBound
            } else {
                ranges.append(local)
            }
        }
        decayRanges = ranges
    }

    deinit { wholeSums.deallocate() }

    /// Applies one update with learning rate `lr` to `parameters` from `gradients` (which it may
    /// modify): both hold at least `count` floats, the optimizer's range (the whole buffer, or
    /// this rank's slice of the parameters and its reduced gradient).
    public func apply(parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeMutableBufferPointer<Float>, lr: Float) {
        precondition(parameters.count >= count && gradients.count >= count,
                     "Optimizer.apply: \(parameters.count) parameters and \(gradients.count) gradients for a range of \(count)")
        step += 1
        guard count > 0 else { return }
        let p = parameters.baseAddress!, g = gradients.baseAddress!
        let wd = config.weightDecay
        if wd != 0 && (config.kind == .sgd || config.kind == .adam || config.kind == .rmsprop) {
            for range in decayRanges { for i in range { g[i] += wd * p[i] } }
        }
        switch config.kind {
        case .sgd: sgd(p, g, lr: lr)
        case .adam, .adamw: adam(p, GradientSource(g), lr: lr, copyTo: nil)
        case .rmsprop: rmsprop(p, g, lr: lr)
        case .lamb, .lars:
            precondition(coversEveryTensor && pieces.isEmpty,
                         "Optimizer.apply: \(config.kind) over a slice or in pieces needs the ranks' norm shares (addLARSShares, beginLAMBStep)")
            let sums = wholeSums.baseAddress!
            wholeSums.update(repeating: 0)
            if config.kind == .lamb {
                lambMoments(p, GradientSource(g), update: g, lr: lr, sums: sums)
            } else {
                addLARSShares(parameters: p, gradients: g, into: sums)
            }
            layerwiseUpdate(p, g, lr: lr, sums: sums, gradientScale: 1)
        }
    }

    // MARK: LAMB and LARS over a slice

    /// Where LAMB's and LARS's shares go: one per tensor, or with a piece grid one per piece;
    /// `addLARSShares` and `beginLAMBStep` take 2 × slotCount doubles.
    public var slotCount: Int { pieces.isEmpty ? tensorCount : pieces.count }

    /// The per-tensor sums (2 × tensorCount doubles, zeroed here) from the pieces' (2 ×
    /// pieces.count), added in piece order: the same at any np.
    public func tensorSums(fromPieces pieceSums: UnsafePointer<Double>, into sums: UnsafeMutablePointer<Double>) {
        sums.update(repeating: 0, count: 2 * tensorCount)
        for (index, piece) in pieces.enumerated() {
            sums[piece.tensor] += pieceSums[index]
            sums[tensorCount + piece.tensor] += pieceSums[pieces.count + index]
        }
    }

    /// LARS, before the step (it changes nothing): adds this range's share of Σp² and Σg² per
    /// adapted tensor (or piece) into `sums` (2 × slotCount doubles), for the sums over all ranks.
    public func addLARSShares(parameters: UnsafePointer<Float>, gradients: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Double>) {
        precondition(config.kind == .lars, "Optimizer.addLARSShares: \(config.kind) is not LARS")
        for part in tensorParts where part.adapted {
            sums[part.slot] += squaredNorm(parameters, part.span)
            sums[slotCount + part.slot] += squaredNorm(gradients, part.span)
        }
    }

    /// LAMB's first half of a step: the moments (the step is counted here), the update u stored
    /// to `update` (which may be the gradients' own array) for the second half; adds this
    /// range's share of Σp² (of the decayed parameters, which the second half stores) and Σu²
    /// per tensor (or piece) into `sums` (2 × slotCount doubles).
    public func beginLAMBStep(parameters: UnsafePointer<Float>, gradients: GradientSource, update: UnsafeMutablePointer<Float>,
                              lr: Float, sums: UnsafeMutablePointer<Double>) {
        precondition(config.kind == .lamb, "Optimizer.beginLAMBStep: \(config.kind) is not LAMB")
        step += 1
        lambMoments(parameters, gradients, update: update, lr: lr, sums: sums)
    }

    /// The step of LAMB (second half: `gradients` is where the first stored u) or LARS from
    /// `sums` over whole tensors. `gradientScale`: LARS's Σg² was taken before the gradients were
    /// scaled by this (clipping). Given `copyTo`, each updated parameter is also stored there
    /// in the same pass (as Adam's `apply(_:gradients:copyTo:lr:)`).
    public func finishLayerwiseStep(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, lr: Float,
                                    sums: UnsafePointer<Double>, gradientScale: Float, copyTo mirror: UnsafeMutablePointer<Float>? = nil) {
        precondition(isLayerwise, "Optimizer.finishLayerwiseStep: \(config.kind) has no trust ratio")
        if config.kind == .lars { step += 1 }
        layerwiseUpdate(parameters, gradients, lr: lr, sums: sums, gradientScale: gradientScale, copyTo: mirror)
    }

    private func layerwiseUpdate(_ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, lr: Float, sums: UnsafePointer<Double>,
                                 gradientScale: Float, copyTo mirror: UnsafeMutablePointer<Float>? = nil) {
        for part in tensorParts {
            let parameterNorm = sums[part.tensor].squareRoot(), otherNorm = sums[tensorCount + part.tensor].squareRoot()
            if config.kind == .lamb {
                lambUpdate(p, g, part, lr: lr, ratio: parameterNorm > 0 && otherNorm > 0 ? Float(parameterNorm / otherNorm) : 1,
                           copyTo: mirror)
            } else {
                let beta = part.decayed ? config.weightDecay : 0
                let gradientNorm = otherNorm * Double(gradientScale)
                var trust: Float = 1
                if part.adapted && parameterNorm > 0 && gradientNorm > 0 {
                    trust = Float(Double(config.trustCoefficient) * parameterNorm
                                  / (gradientNorm + Double(beta) * parameterNorm + Double(config.epsilon)))
                }
                larsUpdate(p, g, part.span, lr: lr, trust: trust, beta: beta, copyTo: mirror)
            }
        }
    }

    /// Σx² over `span`: eight Float lanes over each `squaresChunk` elements, the chunks added in
    /// Double. (Double lanes throughout cost a conversion call per eight elements: Swift's
    /// SIMD8<Double>(SIMD8<Float>) is not inlined.)
    private func squaredNorm(_ x: UnsafePointer<Float>, _ span: Range<Int>) -> Double {
        var sum = 0.0
        var i = span.lowerBound
        let vectorEnd = span.upperBound - span.count % 8
        while i < vectorEnd {
            var lanes = SIMD8<Float>(repeating: 0)
            let chunkEnd = min(i + Self.squaresChunk, vectorEnd)
            while i < chunkEnd {
                let value = load8(x + i)
                lanes += value * value
                i += 8
            }
            sum += Double(lanes.sum())
        }
        while i < span.upperBound { sum += Double(x[i]) * Double(x[i]); i += 1 }
        return sum
    }

    /// Elements per Float partial sum of squares: short enough that its rounding stays near
    /// float epsilon relative, long enough that the Double adds cost nothing.
    static let squaresChunk = 512

    /// LAMB's moments over every tensor part, in Keras's operation order, storing u to `update`,
    /// and the shares of Σp² and Σu² in `sums`. Keras decays p first and takes ‖p‖ of the decayed
    /// values: here they are decayed in registers for the norm and stored by `lambUpdate`, which
    /// decays them again the same way (the same float operations, so the same bits), rather than
    /// stored in this pass and read back. Summing the ranks' gradient slots as it reads them,
    /// this pass and `lambUpdate` read and write about 1.3 times the bytes of Adam's one pass
    /// (docs/PERFORMANCE.md, 'LAMB and LARS under the sharded update').
    private func lambMoments(_ p: UnsafePointer<Float>, _ g: GradientSource, update u: UnsafeMutablePointer<Float>, lr: Float,
                             sums: UnsafeMutablePointer<Double>) {
        let beta1 = scheduledMomentum ?? config.beta1, beta2 = config.beta2, eps = config.epsilon, wd = config.weightDecay
        let m = firstMoment.baseAddress!, v = secondMoment.baseAddress!
        let t = Float(step)
        let biasCorrection1 = 1 - powf(beta1, t), biasCorrection2 = 1 - powf(beta2, t)
        let oneMinusBeta1 = 1 - beta1, oneMinusBeta2 = 1 - beta2
        for part in tensorParts {
            let decay = part.decayed && wd != 0
            var parameterSum = 0.0, updateSum = 0.0
            let vectorEnd = part.span.upperBound - part.span.count % 8
            var i = part.span.lowerBound
            while i < vectorEnd {
                var parameterSquares = SIMD8<Float>(repeating: 0), updateSquares = SIMD8<Float>(repeating: 0)
                let chunkEnd = min(i + Self.squaresChunk, vectorEnd)
                while i < chunkEnd {
                    var parameter = load8(p + i)
                    if decay { parameter -= parameter * wd * lr }
                    let gradient = g.sum8(i)
                    var first = load8(m + i), second = load8(v + i)
                    first += (gradient - first) * oneMinusBeta1
                    second += (gradient * gradient - second) * oneMinusBeta2
                    let update = (first / biasCorrection1) / ((second / biasCorrection2).squareRoot() + eps)
                    store8(first, m + i)
                    store8(second, v + i)
                    store8(update, u + i)
                    parameterSquares += parameter * parameter
                    updateSquares += update * update
                    i += 8
                }
                parameterSum += Double(parameterSquares.sum())
                updateSum += Double(updateSquares.sum())
            }
            while i < part.span.upperBound {
                var parameter = p[i]
                if decay { parameter -= parameter * wd * lr }
                let gradient = g.sum(i)
                m[i] += (gradient - m[i]) * oneMinusBeta1
                v[i] += (gradient * gradient - v[i]) * oneMinusBeta2
                u[i] = (m[i] / biasCorrection1) / ((v[i] / biasCorrection2).squareRoot() + eps)
                parameterSum += Double(parameter) * Double(parameter)
                updateSum += Double(u[i]) * Double(u[i])
                i += 1
            }
            sums[part.slot] += parameterSum
            sums[slotCount + part.slot] += updateSum
        }
    }

    /// LAMB's p ← (p − p·wd·lr) − (r·lr)·u over `part`, u where `lambMoments` stored it.
    private func lambUpdate(_ p: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, _ part: TensorPart, lr: Float, ratio: Float,
                            copyTo mirror: UnsafeMutablePointer<Float>?) {
        let stepSize = ratio * lr, wd = config.weightDecay, decay = part.decayed && wd != 0
        let span = part.span
        let vectorEnd = span.upperBound - span.count % 8
        var i = span.lowerBound
        while i < vectorEnd {
            var parameter = load8(p + i)
            if decay { parameter -= parameter * wd * lr }
            parameter -= stepSize * load8(u + i)
            store8(parameter, p + i)
            if let mirror { store8(parameter, mirror + i) }
            i += 8
        }
        while i < span.upperBound {
            var parameter = p[i]
            if decay { parameter -= parameter * wd * lr }
            p[i] = parameter - stepSize * u[i]
            mirror?[i] = p[i]
            i += 1
        }
    }

    /// LARS's b ← μb + lr·λ·(g + βp), p ← p − b over `span`.
    private func larsUpdate(_ p: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ span: Range<Int>, lr: Float, trust: Float,
                            beta: Float, copyTo mirror: UnsafeMutablePointer<Float>?) {
        let momentum = scheduledMomentum ?? config.momentum, localRate = lr * trust
        let b = firstMoment.baseAddress!
        let vectorEnd = span.upperBound - span.count % 8
        var i = span.lowerBound
        while i < vectorEnd {
            let parameter = load8(p + i)
            let velocity = momentum * load8(b + i) + localRate * (load8(g + i) + beta * parameter)
            store8(velocity, b + i)
            store8(parameter - velocity, p + i)
            if let mirror { store8(parameter - velocity, mirror + i) }
            i += 8
        }
        while i < span.upperBound {
            b[i] = momentum * b[i] + localRate * (g[i] + beta * p[i])
            p[i] -= b[i]
            mirror?[i] = p[i]
            i += 1
        }
    }

    /// Whether `apply(_:gradients:copyTo:lr:)` can run this optimizer: Adam, or AdamW (whose
    /// decay acts on the parameters); not SGD and not Adam's coupled decay, which add to the
    /// gradient before the update.
    public var updatesFromSummedSlots: Bool {
        config.kind == .adamw || (config.kind == .adam && config.weightDecay == 0)
    }

    /// Adam's update with the gradient read as it goes: element i's gradient is
    /// `gradients.sum(i)` (a sum of several arrays, added in a fixed order, so the result is
    /// bit-identical to that sum stored first and `apply(parameters:gradients:lr:)`). The
    /// parameters are updated in place and, given `copyTo`, each also stored there in the same
    /// pass.
    public func apply(_ parameters: UnsafeMutablePointer<Float>, gradients: GradientSource, copyTo: UnsafeMutablePointer<Float>?,
                      lr: Float) {
        precondition(updatesFromSummedSlots, "Optimizer.apply(_:gradients:copyTo:lr:): \(config.kind) adds to the gradient first")
        step += 1
        guard count > 0 else { return }
        adam(parameters, gradients, lr: lr, copyTo: copyTo)
    }

    /// Where the Adam loop reads element i's gradient: one array, or the sum of `terms` arrays
    /// `stride` floats apart (the ranks' slots), added in rank order (as `ThreadCommunicator`
    /// and MPI's shared-memory reductions do), or with `folded` in `VirtualShards`' tree, the
    /// deterministic mode's sum, the same at any np (for 1 or 2 terms the two agree).
    public struct GradientSource {
        let base: UnsafePointer<Float>
        let stride: Int
        let terms: Int
        let folded: Bool

        public init(_ base: UnsafePointer<Float>, stride: Int = 0, terms: Int = 1, folded: Bool = false) {
            self.base = base
            self.stride = stride
            self.terms = terms
            self.folded = folded
        }

        /// Elements i … i + 7.
        @inline(__always) func sum8(_ i: Int) -> SIMD8<Float> {
            switch terms {
            case 1: return load8(base + i)
            case 2: return load8(base + i) + load8(base + stride + i)
            default:
                if folded { return fold8(i, first: 0, step: 1, count: terms) }
                var sum = load8(base + i)
                for term in 1..<terms { sum += load8(base + term * stride + i) }
                return sum
            }
        }

        @inline(__always) func sum(_ i: Int) -> Float {
            switch terms {
            case 1: return base[i]
            case 2: return base[i] + base[stride + i]
            default:
                if folded { return fold(i, first: 0, step: 1, count: terms) }
                var sum = base[i]
                for term in 1..<terms { sum += base[term * stride + i] }
                return sum
            }
        }

        /// The terms first, first + step, … (count of them) in `VirtualShards`' tree: those at
        /// even positions, then those at odd ones, recursively, added last.
        private func fold8(_ i: Int, first: Int, step: Int, count: Int) -> SIMD8<Float> {
            guard count > 1 else { return load8(base + first * stride + i) }
            return fold8(i, first: first, step: 2 * step, count: (count + 1) / 2)
                + fold8(i, first: first + step, step: 2 * step, count: count / 2)
        }

        private func fold(_ i: Int, first: Int, step: Int, count: Int) -> Float {
            guard count > 1 else { return base[first * stride + i] }
            return fold(i, first: first, step: 2 * step, count: (count + 1) / 2) + fold(i, first: first + step, step: 2 * step, count: count / 2)
        }
    }

    /// Adam over the whole range; AdamW's decoupled decay p ← p·(1 − lr·wd) rides the moment
    /// loop over the decayed ranges, instead of a pass of its own (which read and wrote every
    /// kernel again).
    private func adam(_ parameters: UnsafeMutablePointer<Float>, _ gradients: GradientSource, lr: Float,
                      copyTo mirror: UnsafeMutablePointer<Float>?) {
        let factor = config.kind == .adamw ? 1 - lr * config.weightDecay : 1
        var start = 0
        if factor != 1 {
            for range in decayRanges {
                adam(parameters, gradients, start..<range.lowerBound, lr: lr, decayFactor: 1, copyTo: mirror)
                adam(parameters, gradients, range, lr: lr, decayFactor: factor, copyTo: mirror)
                start = range.upperBound
            }
        }
        adam(parameters, gradients, start..<count, lr: lr, decayFactor: 1, copyTo: mirror)
    }

    /// RMSprop's update over the whole range, element by element in torch's operation order.
    private func rmsprop(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, lr: Float) {
        let alpha = config.alpha, rest = 1 - alpha, eps = config.epsilon, momentum = scheduledMomentum ?? config.momentum
        let v = secondMoment.baseAddress!, first = firstMoment.baseAddress!
        for i in 0..<count {
            let gradient = g[i]
            v[i] = v[i] * alpha + rest * gradient * gradient
            var denominator: Float
            if config.centered {
                first[i] += rest * (gradient - first[i])
                denominator = (v[i] - first[i] * first[i]).squareRoot()
            } else {
                denominator = v[i].squareRoot()
            }
            denominator += eps
            if momentum > 0 {
                first[i] = first[i] * momentum + gradient / denominator
                p[i] -= lr * first[i]
            } else {
                p[i] -= lr * (gradient / denominator)
            }
        }
    }

    private func sgd(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, lr: Float) {
        let momentum = scheduledMomentum ?? config.momentum
        guard momentum != 0 else {
            for i in 0..<count { p[i] -= lr * g[i] }
            return
        }
        let b = firstMoment.baseAddress!, keep = 1 - config.dampening
        let first = step == 1, nesterov = config.nesterov
        for i in 0..<count {
            b[i] = first ? g[i] : momentum * b[i] + keep * g[i]
            let direction = nesterov ? g[i] + momentum * b[i] : b[i]
            p[i] -= lr * direction
        }
    }

    /// The Adam moment and parameter update over `span` (relative to `range`), eight lanes at a
    /// time, after AdamW's decay p ← p·decayFactor (1 outside the decayed ranges and for Adam:
    /// multiplying by 1 is exact). Swift cannot prove that the four buffers do not alias, so it
    /// leaves the scalar loop unvectorized; written with SIMD8 the update ran 36 % → 9 % of a
    /// batch-64 Fashion-MNIST step (perf, 1 thread), and its square root is one vsqrtps only
    /// without C's math errno (Package.swift). Each lane does exactly the scalar operations, so
    /// results are bit-identical. `mirror`: see `apply(_:gradients:copyTo:lr:)`.
    private func adam(_ p: UnsafeMutablePointer<Float>, _ g: GradientSource, _ span: Range<Int>, lr: Float,
                      decayFactor: Float, copyTo mirror: UnsafeMutablePointer<Float>?) {
        let beta1 = scheduledMomentum ?? config.beta1, beta2 = config.beta2, eps = config.epsilon
        let m = firstMoment.baseAddress!, v = secondMoment.baseAddress!
        let t = Float(step)
        let biasCorrection2Root = (1 - powf(beta2, t)).squareRoot()
        let stepSize = lr / (1 - powf(beta1, t))
        let oneMinusBeta1 = 1 - beta1, oneMinusBeta2 = 1 - beta2
        let vectorEnd = span.upperBound - span.count % 8
        var i = span.lowerBound
        while i < vectorEnd {
            let gradient = g.sum8(i)
            var first = load8(m + i), second = load8(v + i)
            var parameter = load8(p + i) * decayFactor
            first = beta1 * first + oneMinusBeta1 * gradient
            second = beta2 * second + oneMinusBeta2 * gradient * gradient
            parameter -= stepSize * first / (second.squareRoot() / biasCorrection2Root + eps)
            store8(first, m + i)
            store8(second, v + i)
            store8(parameter, p + i)
            if let mirror { store8(parameter, mirror + i) }
            i += 8
        }
        while i < span.upperBound {
            var parameter = p[i] * decayFactor
            let gradient = g.sum(i)
            m[i] = beta1 * m[i] + oneMinusBeta1 * gradient
            v[i] = beta2 * v[i] + oneMinusBeta2 * gradient * gradient
            parameter -= stepSize * m[i] / (v[i].squareRoot() / biasCorrection2Root + eps)
            p[i] = parameter
            mirror?[i] = parameter
            i += 1
        }
    }

    /// Scales `gradients` so their global L2 norm is at most `maxNorm`, as
    /// torch.nn.utils.clip_grad_norm_: coefficient = maxNorm/(norm + 1e-6), applied only if < 1.
    /// Returns the norm before clipping.
    @discardableResult
    public static func clipByGlobalNorm(_ gradients: UnsafeMutableBufferPointer<Float>, maxNorm: Float) -> Float {
        let norm = Float(sumOfSquares(UnsafeBufferPointer(gradients)).squareRoot())
        scale(gradients, toNorm: maxNorm, from: norm)
        return norm
    }

    /// Σg² in Double: one rank's share of the squared global norm under the sharded update.
    public static func sumOfSquares(_ gradients: UnsafeBufferPointer<Float>) -> Double {
        var squares: Double = 0
        for value in gradients { squares += Double(value) * Double(value) }
        return squares
    }

    /// The scaling half of clip_grad_norm_, given the global norm. Returns the factor applied
    /// (1 when none was).
    @discardableResult
    public static func scale(_ gradients: UnsafeMutableBufferPointer<Float>, toNorm maxNorm: Float, from norm: Float) -> Float {
        let coefficient = maxNorm / (norm + 1e-6)
        guard coefficient < 1 else { return 1 }
        for i in gradients.indices { gradients[i] *= coefficient }
        return coefficient
    }
}
