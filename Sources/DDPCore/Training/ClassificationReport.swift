/// What `ddp eval` reports for a classifier beyond accuracy: the confusion matrix (rows the
/// true class, columns the predicted one, scikit-learn's `confusion_matrix` convention) and,
/// per class, precision TP/(TP + FP), recall TP/(TP + FN) and F1 2PR/(P + R) with their macro
/// means (scikit-learn's `classification_report`; a class never predicted, or never present,
/// gets 0 where the ratio is 0/0, as its `zero_division=0`).
public struct ClassificationReport: Sendable, Equatable {
    public struct PerClass: Sendable, Equatable, Encodable {
        public var precision: Double
        public var recall: Double
        public var f1: Double
        /// Samples whose true class this is.
        public var support: Int
    }

    public let confusion: [[Int]]
    public let classes: [PerClass]
    public var macroPrecision: Double { mean(\.precision) }
    public var macroRecall: Double { mean(\.recall) }
    public var macroF1: Double { mean(\.f1) }

    public init(confusion: [[Int]]) {
        self.confusion = confusion
        let count = confusion.count
        classes = (0..<count).map { c in
            let truePositives = Double(confusion[c][c])
            let predicted = Double((0..<count).reduce(0) { $0 + confusion[$1][c] })
            let actual = confusion[c].reduce(0, +)
            let precision = predicted > 0 ? truePositives / predicted : 0
            let recall = actual > 0 ? truePositives / Double(actual) : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            return PerClass(precision: precision, recall: recall, f1: f1, support: actual)
        }
    }

    private func mean(_ value: KeyPath<PerClass, Double>) -> Double {
        classes.isEmpty ? 0 : classes.map { $0[keyPath: value] }.reduce(0, +) / Double(classes.count)
    }
}

/// The config's `metrics`: which validation figures an epoch adds to val_loss and val_accuracy,
/// each computed over the whole validation set across ranks (counts summed, then the ratios):
/// macro precision, recall and F1 from the confusion matrix (`ClassificationReport`), and top-k
/// accuracy, the share of samples whose label's logit has fewer than k logits above it
/// (Keras's top_k_categorical_accuracy counts ties with the k-th as in, as this does).
public struct ValidationMetrics: Sendable, Equatable {
    public var precision = false
    public var recall = false
    public var f1 = false
    public var topK: Int?

    public init() {}

    public var needsConfusion: Bool { precision || recall || f1 }
}
