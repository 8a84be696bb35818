import Foundation
import XCTest
@testable import DDPCore

/// Precision, recall and F1 from a confusion matrix, worked by hand as scikit-learn's
/// classification_report gives them, and the evaluator's matrix summed across ranks.
final class ClassificationReportTests: XCTestCase {
    func testPerClassAndMacroFiguresByHand() {
        // Rows: true class; columns: predicted. Class 2 is never predicted.
        let report = ClassificationReport(confusion: [[5, 1, 0],
                                                      [2, 3, 0],
                                                      [1, 1, 0]])
        // Class 0: TP 5, predicted 8, actual 6 → P 5/8, R 5/6, F1 2·(5/8)(5/6)/(5/8 + 5/6) = 10/14.
        XCTAssertEqual(report.classes[0].precision, 5.0 / 8, accuracy: 1e-12)
        XCTAssertEqual(report.classes[0].recall, 5.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(report.classes[0].f1, 10.0 / 14, accuracy: 1e-12)
        XCTAssertEqual(report.classes[0].support, 6)
        // Class 1: TP 3, predicted 5, actual 5 → 0.6 each.
        XCTAssertEqual(report.classes[1].f1, 0.6, accuracy: 1e-12)
        // Class 2: never predicted, so precision 0/0 → 0 (zero_division=0), recall 0, F1 0.
        XCTAssertEqual(report.classes[2], .init(precision: 0, recall: 0, f1: 0, support: 2))
        XCTAssertEqual(report.macroPrecision, (5.0 / 8 + 0.6 + 0) / 3, accuracy: 1e-12)
        XCTAssertEqual(report.macroRecall, (5.0 / 6 + 0.6 + 0) / 3, accuracy: 1e-12)
        XCTAssertEqual(report.macroF1, (10.0 / 14 + 0.6 + 0) / 3, accuracy: 1e-12)
    }

    /// The evaluator counts (label, prediction) on every rank's rows and sums them: 1, 2 and 3
    /// ranks give one process's matrix, whose entries add up to the dataset and whose diagonal
    /// is the accuracy's count.
    func testEvaluatorConfusionMatrixIsTheSameAtAnyRankCount() throws {
        let yaml = """
            seed: 3
            data: {train: {format: moons, samples: 90, noise: 0.3}}
            model: {inputs: 2, layers: [{type: dense, units: 8, activation: relu}, {type: dense, units: 2}]}
            loss: cross_entropy
            optimizer: {type: sgd}
            """
        let config = try TrainingConfig.parse(yaml: yaml)
        var matrices: [[[Int]]] = []
        for ranks in 1...3 {
            let results = Results<([[Int]], Double)>(count: ranks)
            try ThreadCommunicator.run(ranks: ranks) { communicator in
                let (network, _) = try makeNetworkAndSync(config: config, communicator: communicator)
                network.initialize(seed: 5)
                let data = try communicator.loadData(config: config)
                let context = StepContext(communicator: communicator, maxBatch: Evaluator.chunk(for: config.model))
                let evaluator = Evaluator(network: network, loss: config.loss, context: context)
                let result = try evaluator.evaluate(data.train, transform: data.transform, countConfusion: true, topK: 1)
                XCTAssertEqual(result.topKAccuracy, result.accuracy, "top-1 is the accuracy (no ties among random logits)")
                let again = try evaluator.evaluate(data.train, transform: data.transform, topK: 2)
                XCTAssertEqual(again.topKAccuracy, 1, "top-C is every sample")
                XCTAssertNil(again.confusion, "counted only when asked")
                results.set(communicator.rank, (try XCTUnwrap(result.confusion), try XCTUnwrap(result.accuracy)))
            }
            let (matrix, accuracy) = try results.all()[0]
            XCTAssertEqual(matrix.flatMap { $0 }.reduce(0, +), 90, "np=\(ranks): every sample once")
            XCTAssertEqual(Double(matrix[0][0] + matrix[1][1]) / 90, accuracy, accuracy: 1e-12, "np=\(ranks): the diagonal is the accuracy")
            matrices.append(matrix)
        }
        XCTAssertEqual(matrices[1], matrices[0])
        XCTAssertEqual(matrices[2], matrices[0])
    }

    /// `metrics: [precision, recall, f1, {top_k_accuracy: k}]`: each epoch's record carries the
    /// validation figures asked for, and only those; bad entries are refused naming the entry.
    func testEpochRecordsCarryTheValidationMetricsAskedFor() throws {
        let yaml = """
            seed: 4
            data: {train: {format: moons, samples: 96, noise: 0.3}, validation_split: 0.25}
            model: {inputs: 2, layers: [{type: dense, units: 8, activation: relu}, {type: dense, units: 2}]}
            loss: cross_entropy
            optimizer: {type: adam, lr: 0.02}
            training: {epochs: 3, batch_size: 16}
            checkpoint: {every_epochs: 0, keep: 1}
            """
        let directory = NSTemporaryDirectory() + "ddp-metrics-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = try TrainingConfig.parse(yaml: yaml, overrides: ["metrics=[accuracy, recall, f1, {top_k_accuracy: 2}]"])
        var options = TrainOptions(runDirectory: directory)
        options.quiet = true
        let outcome = try Trainer(config: config, data: try RunData(config: config), communicator: LocalCommunicator(), options: options).run()
        for record in outcome.epochs {
            XCTAssertEqual(record.valTopKAccuracy, 1, "top-2 of 2 classes is every sample")
            let recall = try XCTUnwrap(record.valRecall), f1 = try XCTUnwrap(record.valF1)
            XCTAssert((0...1).contains(recall) && (0...1).contains(f1))
            XCTAssertNil(record.valPrecision, "not asked for")
        }
        let metrics = try String(contentsOfFile: directory + "/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"val_f1\":") && metrics.contains("\"val_top_k_accuracy\":1"), metrics)
        let refused: [(String, String)] = [
            ("metrics=[{top_k_accuracy: 3}]", "top_k_accuracy with k = 3 exceeds the model's 2 classes"),
            ("metrics=[{top_k_accuracy: 0}]", "metrics[0].top_k_accuracy: expected an integer k ≥ 1"),
            ("metrics=[auc]", "metrics[0]: 'auc' is not one of accuracy, precision, recall, f1, top_k_accuracy"),
            ("metrics=f1", "metrics: expected a list"),
        ]
        for (override, message) in refused {
            XCTAssertThrowsError(try TrainingConfig.parse(yaml: yaml, overrides: [override]), override) {
                XCTAssertTrue("\($0)".contains(message), "\(override): \($0)")
            }
        }
        XCTAssertThrowsError(try TrainingConfig.parse(yaml: yaml, overrides: ["loss=mse", "metrics=[f1]"])) {
            XCTAssertTrue("\($0)".contains("need a classifier"), "\($0)")
        }
    }
}
