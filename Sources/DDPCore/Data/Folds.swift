/// The k folds of a k-fold cross-validation (`ddp cv`): which fold validates each training
/// sample. Fold i validates on its samples and trains on every other fold's.
///
/// The split is a pure function of (labels, K, seed), so every rank computes the same folds
/// with no communication. Two rules, as scikit-learn's splitters with `shuffle=True` define
/// them (the random numbers differ: ours come from `CounterRandom`, keyed by the seed):
///
/// - **KFold** (mse, or labels that are not class indices): a seeded permutation of the
///   samples cut into K consecutive parts; the first n mod K parts hold ⌊n/K⌋ + 1 samples,
///   the others ⌊n/K⌋.
/// - **StratifiedKFold** (cross_entropy, binary_crossentropy with 0/1 labels): sklearn ≥ 0.24's
///   allocation. Sort the labels; position p of the sorted list goes to fold p mod K, so fold i
///   holds, of class c, the count of positions p ≡ i (mod K) in c's block of the sorted list.
///   Each class's samples then differ by at most one between folds, and so do the fold sizes.
///   Within a class the fold numbers are shuffled (seeded) and handed to its samples in data
///   order.
public struct CrossValidationFolds: Sendable, Equatable {
    public enum Rule: String, Sendable {
        case kFold = "KFold"
        case stratified = "StratifiedKFold"
    }

    public let count: Int
    public let rule: Rule
    /// `[samples]`: the fold (0-based) that validates each sample.
    public let foldOfSample: [Int]

    /// Folds for the training labels of a config whose loss is `loss`: stratified for
    /// classification, plain KFold otherwise.
    ///
    /// - Throws: K < 2; K above the sample count; stratified, K above the smallest class's
    ///   count (a fold would miss that class; scikit-learn's StratifiedKFold only warns there,
    ///   and raises only when K exceeds every class's count). `source` names the data in messages.
    public static func make(labels: [Float], loss: Loss, folds: Int, seed: UInt64, source: String = "data.train") throws -> CrossValidationFolds {
        try check(folds: folds, samples: labels.count, source: source)
        let classification: Bool
        switch loss {
        case .crossEntropy: classification = true
        case .binaryCrossEntropy: classification = labels.allSatisfy { $0 == 0 || $0 == 1 }
        case .meanSquaredError: classification = false
        }
        return classification ? try stratified(labels: labels, folds: folds, seed: seed, source: source)
                              : try kFold(samples: labels.count, folds: folds, seed: seed, source: source)
    }

    /// scikit-learn KFold(n_splits: folds, shuffle: true) over `samples` samples.
    public static func kFold(samples: Int, folds: Int, seed: UInt64, source: String = "data.train") throws -> CrossValidationFolds {
        try check(folds: folds, samples: samples, source: source)
        var order = Array(0..<samples)
        shuffle(&order, seed: seed, stream: 0)
        var foldOfSample = [Int](repeating: 0, count: samples)
        var position = 0
        for fold in 0..<folds {
            let size = samples / folds + (fold < samples % folds ? 1 : 0)
            for sample in order[position..<position + size] { foldOfSample[sample] = fold }
            position += size
        }
        return CrossValidationFolds(count: folds, rule: .kFold, foldOfSample: foldOfSample)
    }

    /// scikit-learn StratifiedKFold(n_splits: folds, shuffle: true); each distinct label is a class.
    public static func stratified(labels: [Float], folds: Int, seed: UInt64, source: String = "data.train") throws -> CrossValidationFolds {
        try check(folds: folds, samples: labels.count, source: source)
        let classes = Array(Set(labels)).sorted()
        let classIndex = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        var members = [[Int]](repeating: [], count: classes.count)
        for (sample, label) in labels.enumerated() { members[classIndex[label]!].append(sample) }
        if let smallest = members.indices.min(by: { members[$0].count < members[$1].count }), members[smallest].count < folds {
            throw DDPError(.config, "--folds \(folds) is more than the \(counted(members[smallest].count, "sample")) of class \(formatLabel(classes[smallest])), the smallest class in \(source): stratified folds need every class in every fold (scikit-learn's StratifiedKFold only warns here); use at most \(members[smallest].count) folds")
        }
        var foldOfSample = [Int](repeating: 0, count: labels.count)
        var blockStart = 0          // where this class's block starts in the sorted labels
        for (index, samples) in members.enumerated() {
            // Positions blockStart ..< blockStart + n of the sorted labels go to fold p mod K.
            var foldNumbers = (blockStart..<blockStart + samples.count).map { $0 % folds }.sorted()
            shuffle(&foldNumbers, seed: seed, stream: UInt64(index) + 1)
            for (sample, fold) in zip(samples, foldNumbers) { foldOfSample[sample] = fold }
            blockStart += samples.count
        }
        return CrossValidationFolds(count: folds, rule: .stratified, foldOfSample: foldOfSample)
    }

    /// Rows that fold `fold` validates on, ascending.
    public func validationRows(_ fold: Int) -> [Int] { foldOfSample.indices.filter { foldOfSample[$0] == fold } }

    /// Rows that fold `fold` trains on (every other fold's), ascending.
    public func trainingRows(_ fold: Int) -> [Int] { foldOfSample.indices.filter { foldOfSample[$0] != fold } }

    static func check(folds: Int, samples: Int, source: String) throws {
        guard folds >= 2 else {
            throw DDPError(.config, "--folds must be at least 2 (one fold validates, the others train), got \(folds)")
        }
        guard folds <= samples else {
            throw DDPError(.config, "--folds \(folds) is more than the \(counted(samples, "training sample")) of \(source): every fold needs at least one")
        }
    }

    /// Fisher–Yates with `CounterRandom`'s shuffle stream. The first key word lies far above
    /// any epoch number (the batch order's key), so folds never share numbers with an epoch's order.
    static func shuffle(_ values: inout [Int], seed: UInt64, stream: UInt64) {
        guard values.count > 1 else { return }
        let domain: UInt64 = 0xF01D_5000_0000_0000 | stream
        for i in stride(from: values.count - 1, to: 0, by: -1) {
            let j = Int(CounterRandom.bits(seed, .shuffle, domain, UInt64(i)) % UInt64(i + 1))
            values.swapAt(i, j)
        }
    }

    static func formatLabel(_ label: Float) -> String {
        label == label.rounded() && abs(label) < 1e9 ? String(Int(label)) : String(label)
    }
}

extension Dataset {
    /// The rows `rows`, in that order, as a new Dataset holding its own copy (a fold's training
    /// or validation part; node-shared features are copied out of the window).
    public func subset(rows: [Int]) -> Dataset {
        let width = featureCount
        precondition(rows.allSatisfy { $0 >= 0 && $0 < count }, "Dataset.subset: a row outside 0..<\(count)")
        let storage: Storage = withFeatures(bytes: { all in
            var values = [UInt8](); values.reserveCapacity(rows.count * width)
            for row in rows { values.append(contentsOf: all[row * width ..< (row + 1) * width]) }
            return .bytes(values)
        }, floats: { all in
            var values = [Float](); values.reserveCapacity(rows.count * width)
            for row in rows { values.append(contentsOf: all[row * width ..< (row + 1) * width]) }
            return .floats(values)
        })
        var part = Dataset(count: rows.count, featureCount: width, storage: storage, labels: rows.map { labels[$0] }, origin: origin)
        part.imageShape = imageShape
        return part
    }
}

extension RunData {
    /// Fold `fold` of `folds` over `data.train`: trains on the other folds, validates on this one,
    /// no test split. Normalization is refitted on the fold's training part, as `RunData` always
    /// fits it on the training split alone.
    public func fold(_ fold: Int, of folds: CrossValidationFolds, config: TrainingConfig) throws -> RunData {
        precondition(folds.foldOfSample.count == train.count, "RunData.fold: folds for \(folds.foldOfSample.count) samples, data has \(train.count)")
        return try RunData(config: config, train: train.subset(rows: folds.trainingRows(fold)),
                           validation: train.subset(rows: folds.validationRows(fold)), test: nil)
    }
}
