import XCTest
@testable import DDPCore

/// `ddp cv`'s folds: a partition of the training samples, stratified as scikit-learn's
/// StratifiedKFold allocates them, and its mean ± std.
final class CrossValidationFoldsTests: XCTestCase {
    /// Every sample is validated by exactly one fold and trained on by every other.
    func assertPartition(_ folds: CrossValidationFolds, samples: Int, file: StaticString = #filePath, line: UInt = #line) {
        var seen = [Int](repeating: 0, count: samples)
        for fold in 0..<folds.count {
            let validation = folds.validationRows(fold), training = folds.trainingRows(fold)
            XCTAssertFalse(validation.isEmpty, "fold \(fold) validates on nothing", file: file, line: line)
            XCTAssertEqual(Set(validation).union(training), Set(0..<samples), file: file, line: line)
            XCTAssertTrue(Set(validation).isDisjoint(with: training), file: file, line: line)
            for row in validation { seen[row] += 1 }
        }
        XCTAssertEqual(seen, [Int](repeating: 1, count: samples), "each sample in exactly one validation fold", file: file, line: line)
    }

    func testKFoldPartitionsWithScikitLearnsFoldSizes() throws {
        for (samples, k) in [(10, 3), (100, 7), (5, 5), (2, 2)] {
            let folds = try CrossValidationFolds.kFold(samples: samples, folds: k, seed: 3)
            assertPartition(folds, samples: samples)
            // KFold: the first n mod K folds hold ⌊n/K⌋ + 1 samples.
            let sizes = (0..<k).map { folds.validationRows($0).count }
            XCTAssertEqual(sizes, (0..<k).map { samples / k + ($0 < samples % k ? 1 : 0) }, "n=\(samples), K=\(k)")
        }
        // Shuffled: not the unshuffled consecutive blocks.
        let folds = try CrossValidationFolds.kFold(samples: 100, folds: 4, seed: 3)
        XCTAssertNotEqual(folds.validationRows(0), Array(0..<25))
    }

    func testStratifiedFoldsKeepEveryClassWithinOneSampleAcrossFolds() throws {
        // Three imbalanced classes, interleaved in data order.
        var labels: [Float] = []
        for i in 0..<61 { labels.append(i % 5 == 0 ? 2 : (i % 3 == 0 ? 1 : 0)) }
        for k in [2, 3, 5, 7] {
            let folds = try CrossValidationFolds.make(labels: labels, loss: .crossEntropy, folds: k, seed: 11)
            XCTAssertEqual(folds.rule, .stratified)
            assertPartition(folds, samples: labels.count)
            for label in Set(labels) {
                let perFold = (0..<k).map { fold in folds.validationRows(fold).filter { labels[$0] == label }.count }
                XCTAssertLessThanOrEqual(perFold.max()! - perFold.min()!, 1, "class \(label), K=\(k): \(perFold)")
                XCTAssertEqual(perFold.reduce(0, +), labels.filter { $0 == label }.count)
            }
            let sizes = (0..<k).map { folds.validationRows($0).count }
            XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "K=\(k): \(sizes)")
        }
    }

    /// The allocation scikit-learn's StratifiedKFold computes for 10 samples of class 0 and 7 of
    /// class 1 with K = 3: `np.bincount(np.sort(y)[i::3])` for i = 0, 1, 2 is [4, 2], [3, 3], [3, 2].
    func testStratifiedAllocationIsScikitLearns() throws {
        let labels: [Float] = [1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0]
        let folds = try CrossValidationFolds.make(labels: labels, loss: .binaryCrossEntropy(fromLogits: true), folds: 3, seed: 5)
        let counts = (0..<3).map { fold in [Float(0), 1].map { label in folds.validationRows(fold).filter { labels[$0] == label }.count } }
        XCTAssertEqual(counts, [[4, 2], [3, 3], [3, 2]])
    }

    func testTheSeedFixesTheFoldsAndAnotherSeedChangesThem() throws {
        let labels = (0..<200).map { Float($0 % 4) }
        let a = try CrossValidationFolds.make(labels: labels, loss: .crossEntropy, folds: 5, seed: 42)
        XCTAssertEqual(a, try CrossValidationFolds.make(labels: labels, loss: .crossEntropy, folds: 5, seed: 42))
        XCTAssertNotEqual(a, try CrossValidationFolds.make(labels: labels, loss: .crossEntropy, folds: 5, seed: 43))
    }

    func testRegressionAndSoftLabelsUsePlainKFold() throws {
        let targets: [Float] = (0..<30).map { Float($0) * 0.37 }
        XCTAssertEqual(try CrossValidationFolds.make(labels: targets, loss: .meanSquaredError, folds: 4, seed: 1).rule, .kFold)
        let soft: [Float] = (0..<30).map { Float($0 % 3) / 2 }
        XCTAssertEqual(try CrossValidationFolds.make(labels: soft, loss: .binaryCrossEntropy(fromLogits: true), folds: 4, seed: 1).rule, .kFold)
    }

    func testBadFoldCountsAreRefusedWithTheReason() {
        let labels: [Float] = [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "no error" } catch { return (error as? DDPError)?.message ?? "\(error)" }
        }
        XCTAssertTrue(message { try CrossValidationFolds.make(labels: labels, loss: .crossEntropy, folds: 1, seed: 0) }
            .contains("--folds must be at least 2"))
        XCTAssertTrue(message { try CrossValidationFolds.make(labels: labels, loss: .meanSquaredError, folds: 11, seed: 0) }
            .contains("--folds 11 is more than the 10 training samples"))
        XCTAssertTrue(message { try CrossValidationFolds.make(labels: labels, loss: .crossEntropy, folds: 3, seed: 0) }
            .contains("more than the 2 samples of class 1, the smallest class"))
        XCTAssertNoThrow(try CrossValidationFolds.make(labels: labels, loss: .crossEntropy, folds: 2, seed: 0))
    }

    func testAFoldTrainsOnTheOtherFoldsAndRefitsTheNormalization() throws {
        let yaml = """
            data: {train: {format: moons, samples: 12}, normalize: standardize}
            model: {inputs: 2, layers: [{type: dense, units: 2}]}
            optimizer: {type: sgd}
            """
        let config = try TrainingConfig.parse(yaml: yaml)
        let data = try RunData(config: config)
        let folds = try CrossValidationFolds.make(labels: data.train.labels, loss: config.loss, folds: 3, seed: 0)
        let fold = try data.fold(1, of: folds, config: config)
        let rows = folds.trainingRows(1)
        XCTAssertEqual(fold.train.count, rows.count)
        XCTAssertEqual(fold.validation?.count, folds.validationRows(1).count)
        XCTAssertNil(fold.test)
        for (position, row) in rows.enumerated() {
            XCTAssertEqual(fold.train.labels[position], data.train.labels[row])
            for column in 0..<2 { XCTAssertEqual(fold.train.feature(row: position, column: column), data.train.feature(row: row, column: column)) }
        }
        // standardize is fitted on the fold's training rows: their mean of the first feature, not the whole set's.
        let mean = rows.map { Double(data.train.feature(row: $0, column: 0)) }.reduce(0, +) / Double(rows.count)
        XCTAssertEqual(Double(fold.transform.shift[0]), -mean * Double(fold.transform.scale[0]), accuracy: 1e-5)
    }
}
