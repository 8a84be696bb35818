import Foundation
import XCTest
import DDPCore
import DDPReport
@testable import DDPExperiments

/// The variants `ddp compare` and `ddp cv` train: names and overrides from configs × sweeps,
/// seeds for repeats, and a variant trained into its run directory.
final class ComparisonVariantTests: XCTestCase {
    static let moonsYAML = """
        seed: 3
        data:
          train: {format: moons, samples: 120, noise: 0.2}
          validation_split: 0.25
          normalize: standardize
        model:
          inputs: 2
          layers:
            - {type: dense, units: 16, activation: relu, kernel_regularizer: {l1: 0.001}}
            - {type: dense, units: 1}
        loss: {type: binary_crossentropy, from_logits: true}
        optimizer: {type: adam, lr: 0.02}
        training: {epochs: 30, batch_size: 16}
        checkpoint: {every_epochs: 0, keep: 1}
        """

    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ComparisonVariantTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDown() {
        if let root { try? FileManager.default.removeItem(at: root) }
        super.tearDown()
    }

    func writeConfig() throws -> String {
        let path = root.appendingPathComponent("tiny.yaml").path
        try AtomicFile.write(Self.moonsYAML, to: path)
        return path
    }

    func testSweepsMultiplyIntoNamedVariantsAndEachTrainsItsRun() throws {
        let variants = try ComparisonVariant.variants(configs: [try writeConfig()], overrides: ["training.epochs=6"],
                                                      sweeps: ["model.layers.0.kernel_regularizer.l1=0,0.05"])
        XCTAssertEqual(variants.map(\.name), ["tiny-l1=0", "tiny-l1=0.05"])
        XCTAssertEqual(variants[1].overrides, ["training.epochs=6", "model.layers.0.kernel_regularizer.l1=0.05"])
        XCTAssertEqual(variants[1].sweep, ["model.layers.0.kernel_regularizer.l1=0.05"])
        let training = ComparisonTraining(variants: variants, outputDirectory: root.appendingPathComponent("compare").path)
        try training.trainInTurn()
        for variant in variants {
            let metrics = try RunMetrics.load(path: training.directory(variant) + "/metrics.jsonl")
            XCTAssertEqual(metrics.end?.epochsRun, 6, variant.name)
        }
    }

    func testRepeatsNameEachSeedAndSetIt() throws {
        let variants = try ComparisonVariant.variants(configs: [try writeConfig()])
        let repeated = try ComparisonVariant.repeated(variants, repeats: 3)
        XCTAssertEqual(repeated.map(\.name), ["tiny/seed-3", "tiny/seed-4", "tiny/seed-5"])
        XCTAssertEqual(repeated.map(\.config.seed), [3, 4, 5])
        XCTAssertEqual(repeated[2].overrides, ["seed=5"])
        XCTAssertEqual(try ComparisonVariant.repeated(variants, repeats: 1).map(\.name), ["tiny"])
    }

    func testSweepSyntaxErrors() {
        XCTAssertThrowsError(try ComparisonVariant.parseSweep("optimizer.lr"))
        XCTAssertThrowsError(try ComparisonVariant.parseSweep("optimizer.lr="))
        XCTAssertEqual(try ComparisonVariant.parseSweep("optimizer.lr=0.1, 0.01").values, ["0.1", "0.01"])
    }
}
