/// `loss.class_weight`: a weight per class for imbalanced data, with torch's
/// CrossEntropyLoss(weight: w) semantics (see `Loss.evaluate`): each sample's loss counts w_y
/// times and a batch's mean divides by Σ w_y, so the scale of the loss does not move with
/// the weights. Keras's `fit(class_weight=…)` multiplies each sample's loss the same way but
/// divides by the number of samples, and applies to training only; here val_loss and test_loss
/// are weighted too (the same loss), so early stopping watches the objective that is trained.
public enum ClassWeight: Sendable, Equatable {
    /// `{0: 1.0, 3: 4.0}`: the classes listed take their weight, the others 1.
    case given([Int: Float])
    /// `balanced`: scikit-learn's n / (C · n_c) over the training set's labels, n_c the
    /// samples of class c.
    case balanced

    /// The per-class weights for `classes` classes (cross-entropy's logits, or 2 for binary
    /// cross-entropy) from the training labels `labels`.
    public func resolve(classes: Int, labels: [Float], origin: String) throws -> [Float] {
        switch self {
        case let .given(weights):
            // The parser has checked that every class named exists.
            let resolved = (0..<classes).map { weights[$0] ?? 1 }
            guard resolved.contains(where: { $0 > 0 }) else {
                throw DDPError(.config, "loss.class_weight: every class weighs 0, so no sample would count")
            }
            return resolved
        case .balanced:
            var counts = [Int](repeating: 0, count: classes)
            for label in labels {
                let index = Int(label)
                guard index >= 0, index < classes, Float(index) == label else {
                    throw DDPError(.data, "\(origin): label \(label) is not a class of the model's \(classes) (0 to \(classes - 1)); loss.class_weight: balanced counts classes")
                }
                counts[index] += 1
            }
            if let absent = counts.firstIndex(of: 0) {
                throw DDPError(.data, "\(origin): no training sample has class \(absent), so loss.class_weight: balanced cannot weight it (n / (C·n_c) with n_c = 0); give the weights as a mapping")
            }
            return counts.map { Float(Double(labels.count) / (Double(classes) * Double($0))) }
        }
    }
}
