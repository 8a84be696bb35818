#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Training objectives, matching torch.nn's reductions when divided by the batch size:
/// - `crossEntropy`: softmax cross-entropy from logits with integer labels
///   (torch.nn.CrossEntropyLoss = keras SparseCategoricalCrossentropy(from_logits=True)):
///   ℓ = logsumexp(z) − z_y. With label smoothing ε, exactly
///   torch.nn.CrossEntropyLoss(label_smoothing=ε): the target is (1 − ε)·onehot(y) + ε/C, so
///   ℓ = (1 − ε)·(lse − z_y) + ε·(1/C)·Σ_k (lse − z_k) and dℓ/dz_j = p_j − (1 − ε)·[j = y] − ε/C.
/// - `binaryCrossEntropy(fromLogits: true)`: torch.nn.BCEWithLogitsLoss,
///   ℓ = max(z, 0) − z·y + log(1 + e^{−|z|}).
/// - `binaryCrossEntropy(fromLogits: false)`: torch.nn.BCELoss on probabilities,
///   ℓ = −(y·log p + (1 − y)·log(1 − p)) with each log clamped to ≥ −100 as torch does.
///   With label smoothing ε (either form), Keras's BinaryCrossentropy(label_smoothing=ε): the
///   target becomes y·(1 − ε) + ε/2 in the loss and its gradient; accuracy still counts the
///   prediction against y itself.
/// - `meanSquaredError`: torch.nn.MSELoss, the mean over output units of (ŷ − y)².
///
/// `Loss.crossEntropy` and `Loss.binaryCrossEntropy(fromLogits:)` as values are the unsmoothed
/// losses (ε = 0); as patterns (`case .crossEntropy:`) they match any ε.
public enum Loss: Sendable, Equatable {
    case crossEntropy(labelSmoothing: Float)
    case binaryCrossEntropy(fromLogits: Bool, labelSmoothing: Float)
    case meanSquaredError

    /// Cross-entropy without label smoothing.
    public static let crossEntropy = Loss.crossEntropy(labelSmoothing: 0)

    /// Binary cross-entropy without label smoothing.
    public static func binaryCrossEntropy(fromLogits: Bool) -> Loss {
        .binaryCrossEntropy(fromLogits: fromLogits, labelSmoothing: 0)
    }

    /// Whether accuracy is meaningful for this loss.
    public var hasAccuracy: Bool {
        if case .meanSquaredError = self { return false }
        return true
    }

    /// Whether the model predicts a class index out of one logit per class (softmax), rather
    /// than one value per sample.
    public var isCategorical: Bool {
        if case .crossEntropy = self { return true }
        return false
    }

    /// The config's name for this loss, for messages.
    /// The loss with its options, as a checkpoint records it: a resume under another loss
    /// (whose val_loss early stopping would compare with this one's) is refused.
    public var signature: String {
        switch self {
        case .crossEntropy(let smoothing): "cross_entropy label_smoothing=\(smoothing)"
        case .binaryCrossEntropy(let fromLogits, let smoothing): "binary_crossentropy from_logits=\(fromLogits) label_smoothing=\(smoothing)"
        case .meanSquaredError: "mse"
        }
    }

    public var name: String {
        switch self {
        case .crossEntropy: return "cross_entropy"
        case .binaryCrossEntropy: return "binary_crossentropy"
        case .meanSquaredError: return "mse"
        }
    }

    /// The classes a confusion matrix has: the logits' count for cross-entropy, 2 for binary
    /// cross-entropy with one output; nil where a sample has no single predicted class (mse,
    /// binary cross-entropy over several outputs).
    public func confusionClasses(width: Int) -> Int? {
        switch self {
        case .crossEntropy: width
        case .binaryCrossEntropy: width == 1 ? 2 : nil
        case .meanSquaredError: nil
        }
    }

    /// The classes `loss.class_weight` weighs: cross-entropy's logits, binary cross-entropy's
    /// two; nil for mse, which has none.
    public func weightedClasses(width: Int) -> Int? {
        switch self {
        case .crossEntropy: width
        case .binaryCrossEntropy: 2
        case .meanSquaredError: nil
        }
    }

    /// The class whose `loss.class_weight` a sample with `label` takes: the label itself for
    /// cross-entropy, label > 0.5 for binary cross-entropy (so a soft label 0.7 is class 1),
    /// the one rule `evaluate` and the trainer's batch weight sum share.
    @inline(__always)
    public func weightClass(label: Float) -> Int {
        if case .binaryCrossEntropy = self { return label > 0.5 ? 1 : 0 }
        return Int(label)
    }

    /// The class one row of outputs predicts, as `evaluate` counts accuracy: the first largest
    /// logit, or logit > 0 (probability > 0.5) for binary cross-entropy.
    public func predictedClass(_ row: UnsafePointer<Float>, width: Int) -> Int {
        switch self {
        case .crossEntropy:
            var maximum = -Float.infinity, best = 0
            for j in 0..<width where row[j] > maximum { maximum = row[j]; best = j }
            return best
        case .binaryCrossEntropy(let fromLogits, _): return row[0] > (fromLogits ? 0 : 0.5) ? 1 : 0
        case .meanSquaredError: return 0
        }
    }

    /// For `batch` rows of `output` (batch, width) and `labels` (batch): returns the sum of
    /// per-sample losses and the number of correct predictions. When `gradient` is given it
    /// receives `gradientScale`·d(Σ losses)/d(output), (batch, width). The trainer passes
    /// 1/(global batch size), so backward yields the gradient of the global mean loss (torch's
    /// mean reduction) and the allreduced sum needs no further scaling.
    ///
    /// With `classWeights` (w_c per class; `loss.class_weight`), torch's
    /// CrossEntropyLoss(weight: w) and, per sample, BCE's weight w_y: each sample's loss and
    /// gradient are multiplied by its label's weight (with label smoothing, cross-entropy's
    /// smoothing term weights each class's log-probability by w_c instead:
    /// ℓ = (1 − ε)·w_y·(lse − z_y) + (ε/C)·Σ_c w_c·(lse − z_c), torch's formula), and
    /// `weightSum` returns Σ w_y, the mean's denominator; the trainer passes 1/(the global
    /// batch's Σ w_y) as `gradientScale`. Without weights `weightSum` is the row count.
    public func evaluate(output: UnsafePointer<Float>, labels: UnsafePointer<Float>, batch: Int, width: Int,
                         gradient: UnsafeMutablePointer<Float>?, gradientScale: Float = 1,
                         classWeights: UnsafePointer<Float>? = nil) -> (lossSum: Double, correct: Double, weightSum: Double) {
        var lossSum = 0.0, correct = 0.0, weightSum = 0.0
        switch self {
        case .crossEntropy(let smoothing):
            // Target weights: 1 − ε + ε/C on the label, ε/C elsewhere (they sum to 1).
            let offTarget = smoothing / Float(width), onTarget = 1 - smoothing
            var allWeights: Float = 0
            if let classWeights { for j in 0..<width { allWeights += classWeights[j] } }
            for row in 0..<batch {
                let z = output + row * width
                let label = Int(labels[row])
                var maximum = -Float.infinity, best = 0
                for j in 0..<width where z[j] > maximum { maximum = z[j]; best = j }
                if best == label { correct += 1 }
                guard let classWeights else {
                    // gapSum = Σ_k (max − z_k), so Σ_k (lse − z_k) = C·log(sum) + gapSum: no cancellation.
                    var sum: Float = 0, gapSum: Float = 0
                    for j in 0..<width {
                        sum += expf(z[j] - maximum)
                        gapSum += maximum - z[j]
                    }
                    let logSumExp = maximum + logf(sum)
                    let nll = logSumExp - z[label]
                    lossSum += smoothing == 0 ? Double(nll)
                        : Double(onTarget * nll + offTarget * (Float(width) * logf(sum) + gapSum))
                    weightSum += 1
                    if let gradient {
                        let g = gradient + row * width
                        for j in 0..<width { g[j] = (expf(z[j] - logSumExp) - offTarget) * gradientScale }
                        g[label] -= onTarget * gradientScale
                    }
                    continue
                }
                // Weighted: Σ_c w_c·(lse − z_c) = W·log(sum) + Σ_c w_c·(max − z_c).
                var sum: Float = 0, weightedGap: Float = 0
                for j in 0..<width {
                    sum += expf(z[j] - maximum)
                    weightedGap += classWeights[j] * (maximum - z[j])
                }
                let logSumExp = maximum + logf(sum), weight = classWeights[label]
                let nll = logSumExp - z[label]
                lossSum += smoothing == 0 ? Double(weight * nll)
                    : Double(onTarget * weight * nll + offTarget * (allWeights * logf(sum) + weightedGap))
                weightSum += Double(weight)
                if let gradient {
                    // dℓ/dz_j = p_j·((1 − ε)·w_y + (ε/C)·W) − (ε/C)·w_j − (1 − ε)·w_y·[j = y]
                    let g = gradient + row * width, pull = onTarget * weight + offTarget * allWeights
                    for j in 0..<width { g[j] = (expf(z[j] - logSumExp) * pull - offTarget * classWeights[j]) * gradientScale }
                    g[label] -= onTarget * weight * gradientScale
                }
            }
        case .binaryCrossEntropy(let fromLogits, let smoothing):
            for row in 0..<batch {
                let label = labels[row]
                let y = smoothing == 0 ? label : label * (1 - smoothing) + 0.5 * smoothing
                let weight = classWeights.map { $0[weightClass(label: label)] } ?? 1
                let scale = gradientScale * weight / Float(width)
                // Unweighted, each value goes straight into the sum (the order the MLP's figures
                // were measured with); weighted, a row's values are summed before w_y multiplies.
                var rowLoss = 0.0
                for j in 0..<width {
                    let index = row * width + j
                    let value = output[index]
                    if fromLogits {
                        let term = Double(max(value, 0) - value * y + log1pf(expf(-abs(value))))
                        if classWeights == nil { lossSum += term } else { rowLoss += term }
                        if (value > 0 ? 1 : 0) == label { correct += 1 }
                        gradient?[index] = (Activation.sigmoid(value) - y) * scale
                    } else {
                        let logP = max(logf(value), -100), logNotP = max(logf(1 - value), -100)
                        let term = Double(-(y * logP + (1 - y) * logNotP))
                        if classWeights == nil { lossSum += term } else { rowLoss += term }
                        if (value > 0.5 ? 1 : 0) == label { correct += 1 }
                        // d/dp of −(y log p + (1−y) log(1−p)), with torch's clamp of the
                        // denominators at 1e-12 so p ∈ {0, 1} gives a finite gradient.
                        gradient?[index] = (value - y) / max(value * (1 - value), 1e-12) * scale
                    }
                }
                if classWeights != nil { lossSum += Double(weight) * rowLoss }
                weightSum += Double(weight)
            }
            correct /= Double(width)
            lossSum /= Double(width)
        case .meanSquaredError:
            let scale = 1 / Float(width), gradientFactor = 2 * scale * gradientScale
            for row in 0..<batch {
                for j in 0..<width {
                    let index = row * width + j
                    let difference = output[index] - labels[row]
                    lossSum += Double(difference * difference * scale)
                    gradient?[index] = gradientFactor * difference
                }
            }
            weightSum = Double(batch)
        }
        return (lossSum, correct, weightSum)
    }
}
