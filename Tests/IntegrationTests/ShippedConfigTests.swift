import DDPCore
import Foundation
import XCTest

/// The shipped configs do what README.md says they do, end to end, with the real binary.
final class ShippedConfigTests: IntegrationTestCase {
    static let configs = Integration.packageRoot + "/configs"

    /// The default job, full length (early stopping decides when it ends), on one process and
    /// on two ranks: both reach the advertised test accuracy, and they agree to 0.3 points,
    /// although float summation order makes their trajectories drift apart over ~5000 steps.
    func testFashionMNISTDefaultReachesTargetOnOneAndTwoRanks() throws {
        guard FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") else {
            throw XCTSkip("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)")
        }
        let config = "\(Self.configs)/fashion-mnist.yaml"
        var accuracies: [Double] = []
        for np in [nil, 2] as [Int?] {
            let run = path("fashion-np\(np ?? 1)")
            try train(np: np, config: config, runDirectory: run, timeout: 600)
            let metrics = Metrics(runDirectory: run)
            XCTAssertEqual(metrics.endString("reason"), "early_stopping", "np=\(np ?? 1)")
            let accuracy = try XCTUnwrap((metrics.end?["test_accuracy"] as? NSNumber)?.doubleValue)
            XCTAssertGreaterThanOrEqual(accuracy, 0.885, "np=\(np ?? 1) test accuracy")
            accuracies.append(accuracy)
        }
        XCTAssertLessThanOrEqual(abs(accuracies[0] - accuracies[1]), 0.003,
                                 "np=1 vs np=2 test accuracy \(accuracies[0]) vs \(accuracies[1])")
    }

    /// The CNN configs as `launch/train` runs them (2 ranks), one epoch each: the input shape
    /// comes from the IDX header, the summary shows Keras's shapes, the first epoch already
    /// beats what the MLP reaches in its first, and `ddp plot` draws the first conv layer.
    func testFashionMNISTCNNConfigsTrainOnTwoRanks() throws {
        guard FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") else {
            throw XCTSkip("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)")
        }
        let summary = try runDDP(np: nil, ["summary", "\(Self.configs)/fashion-mnist-cnn.yaml"])
        XCTAssertEqual(summary.status, 0, summary.tail)
        for shape in ["Input shape: (None, 28, 28, 1)", "(None, 28, 28, 32)", "(None, 7, 7, 64)", "(None, 3136)"] {
            XCTAssertTrue(summary.stdout.contains(shape), "summary lacks \(shape):\n\(summary.stdout)")
        }
        for name in ["fashion-mnist-cnn", "fashion-mnist-cnn-augment"] {
            let run = path(name)
            try train(np: 2, config: "\(Self.configs)/\(name).yaml", runDirectory: run, ["--set", "training.epochs=1"], timeout: 600)
            let accuracy = try XCTUnwrap((Metrics(runDirectory: run).end?["test_accuracy"] as? NSNumber)?.doubleValue)
            XCTAssertGreaterThanOrEqual(accuracy, 0.86, "\(name): test accuracy after one epoch")
        }
        let plot = try runDDP(np: nil, ["plot", path("fashion-mnist-cnn-augment")])
        XCTAssertEqual(plot.status, 0, plot.tail)
        let svg = try String(contentsOfFile: path("fashion-mnist-cnn-augment") + "/plots/conv-features.svg", encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "class=\"filter\"").count - 1, 32, "one group per filter of the first conv")
        XCTAssertEqual(svg.components(separatedBy: "class=\"feature-map\"").count - 1, 8)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("fashion-mnist-cnn-augment") + "/plots/augmentation.svg"))
    }

    /// `ddp compare configs/circles*.yaml` reproduces the classic picture: L1 leaves the most
    /// near-zero weights and the unregularized network has the largest generalization gap.
    func testCirclesComparisonShowsWhatEachRegularizerDoes() throws {
        let configs = ["circles", "circles-l1", "circles-l2", "circles-dropout"].map { "\(Self.configs)/\($0).yaml" }
        let out = path("compare")
        let result = try runDDP(np: nil, ["compare"] + configs + ["--out", out])
        XCTAssertEqual(result.status, 0, result.tail)
        let data = try XCTUnwrap(FileManager.default.contents(atPath: out + "/results.json"))
        let rows = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        func value(_ key: String, _ variant: String) throws -> Double {
            let row = try XCTUnwrap(rows.first { $0["variant"] as? String == variant }, "no row for \(variant)")
            return try XCTUnwrap((row[key] as? NSNumber)?.doubleValue, "\(variant) has no \(key)")
        }
        let variants = ["circles", "circles-l1", "circles-l2", "circles-dropout"]
        let sparsest = try variants.max { try value("near_zero_share", $0) < value("near_zero_share", $1) }
        let widestGap = try variants.max { try value("gap", $0) < value("gap", $1) }
        XCTAssertEqual(sparsest, "circles-l1")
        XCTAssertEqual(widestGap, "circles")

        // Each variant is a TensorBoard run of its own: one event file per variant directory,
        // its first record the file version, then one Summary per epoch.
        for variant in variants {
            let run = "\(out)/\(variant)"
            let files = try FileManager.default.contentsOfDirectory(atPath: run).filter(TensorBoardWriter.isEventFile)
            XCTAssertEqual(files.count, 1, "\(variant): \(files)")
            guard let file = files.first else { continue }
            let records = try TFRecord.records(Array(try Data(contentsOf: URL(fileURLWithPath: "\(run)/\(file)"))), file: file)
            XCTAssertEqual(records.count, Metrics(runDirectory: run).epochs.count + 1, variant)
            XCTAssertEqual(records.first.map { Array($0.suffix(13)) }, Array("brain.Event:2".utf8), variant)
        }
    }
}
