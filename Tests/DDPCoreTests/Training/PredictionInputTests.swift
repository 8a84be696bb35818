import Foundation
import XCTest
@testable import DDPCore

/// What `ddp predict` reads: unlabeled files in every format, the format told by the name, and
/// the fitted transform carried exactly in a weights file's metadata.
extension DataTests {
    func testUnlabeledInputsInEveryFormat() throws {
        let images = try write("new-images-idx3-ubyte", idx([2, 2, 3], Array(0..<12)))
        var data = try PredictionInput.load(path: images, format: .idx, labels: nil, csvLabel: .none, header: true)
        XCTAssertFalse(data.hasLabels)
        XCTAssertEqual(data.data.count, 2)
        XCTAssertEqual(data.data.featureCount, 6)
        XCTAssertEqual(data.data.feature(row: 1, column: 5), 11)
        XCTAssertEqual(data.data.imageShape, ImageShape(height: 2, width: 3))
        let labels = try write("l", idx([2], [4, 1]))
        data = try PredictionInput.load(path: images, format: .idx, labels: labels, csvLabel: .none, header: true)
        XCTAssertTrue(data.hasLabels)
        XCTAssertEqual(data.data.labels, [4, 1])

        let features = try write("x.npy", npy("<f4", [3, 2], [Float(0.5), -1, 2, 3.25, 4, 5]))
        data = try PredictionInput.load(path: features, format: .npy, labels: nil, csvLabel: .none, header: true)
        XCTAssertEqual(data.data.count, 3)
        XCTAssertEqual(data.data.feature(row: 1, column: 1), 3.25)

        let csv = try write("new.csv", "a,b,c\n1,2,3\n4,5,6\n")
        data = try PredictionInput.load(path: csv, format: .csv, labels: nil, csvLabel: .none, header: true)
        XCTAssertFalse(data.hasLabels)
        XCTAssertEqual(data.data.featureCount, 3, "without --label every column is a feature")
        XCTAssertEqual(data.data.count, 2)
        XCTAssertEqual(data.data.feature(row: 1, column: 2), 6)
        data = try PredictionInput.load(path: try write("one.csv", "7\n8\n"), format: .csv, labels: nil, csvLabel: .none, header: false)
        XCTAssertEqual(data.data.featureCount, 1)
        XCTAssertEqual(data.data.count, 2)
        data = try PredictionInput.load(path: csv, format: .csv, labels: nil, csvLabel: .name("b"), header: true)
        XCTAssertTrue(data.hasLabels)
        XCTAssertEqual(data.data.labels, [2, 5])
        XCTAssertEqual(data.data.featureCount, 2)

        assertDDPError(.data, containing: ["count mismatch", "x.npy", "3 samples", "2 labels"]) {
            try PredictionInput.load(path: features, format: .npy, labels: try self.write("y.npy", self.npy("<i8", [2], [Int64(0), 1])),
                                     csvLabel: .none, header: true)
        }
    }

    func testFormatFromTheFileName() {
        XCTAssertEqual(PredictionInput.format(inferredFrom: "/d/new.csv"), .csv)
        XCTAssertEqual(PredictionInput.format(inferredFrom: "new.CSV.gz"), .csv)
        XCTAssertEqual(PredictionInput.format(inferredFrom: "x.npy"), .npy)
        XCTAssertEqual(PredictionInput.format(inferredFrom: "t10k-images-idx3-ubyte.gz"), .idx)
        XCTAssertEqual(PredictionInput.format(inferredFrom: "images.idx"), .idx)
        XCTAssertNil(PredictionInput.format(inferredFrom: "data.bin"))
    }

    /// Scale and shift survive the metadata bit for bit (shortest round-trip decimals), and a
    /// damaged entry is an error naming the file and the key.
    func testTransformRoundTripsThroughMetadata() throws {
        var random = TestRandom(seed: 70)
        let transform = FeatureTransform(scale: random.array(50, -1e3, 1e3) + [1 / 255, .leastNonzeroMagnitude, 0],
                                         shift: random.array(50, -1, 1) + [-0.1, .greatestFiniteMagnitude, -0])
        let metadata = transform.metadata(normalization: .standardize)
        XCTAssertEqual(metadata["ddp.input_normalize"], "standardize")
        let read = try XCTUnwrap(FeatureTransform(metadata: metadata, file: "w.safetensors"))
        XCTAssertEqual(read.scale.map(\.bitPattern), transform.scale.map(\.bitPattern))
        XCTAssertEqual(read.shift.map { $0 == 0 ? 0 : $0.bitPattern }, transform.shift.map { $0 == 0 ? 0 : $0.bitPattern })
        XCTAssertNil(try FeatureTransform(metadata: ["format": "pt"], file: "w.safetensors"))

        var damaged = metadata
        damaged["ddp.input_shift"] = "0.5,x"
        assertDDPError(.weights, containing: ["w.safetensors", "ddp.input_shift", "'x'"]) {
            try FeatureTransform(metadata: damaged, file: "w.safetensors") as Any
        }
        damaged["ddp.input_shift"] = "0.5"
        assertDDPError(.weights, containing: ["w.safetensors", "53 values", "1"]) {
            try FeatureTransform(metadata: damaged, file: "w.safetensors") as Any
        }
        damaged.removeValue(forKey: "ddp.input_shift")
        assertDDPError(.weights, containing: ["w.safetensors", "only one of"]) {
            try FeatureTransform(metadata: damaged, file: "w.safetensors") as Any
        }
    }

    /// PredictionWriter's columns for each loss, against the network's own outputs: softmax and
    /// argmax for cross_entropy, sigmoid and its 0.5 decision for binary_crossentropy, the value
    /// for mse; the saved transform is applied (standardized inputs differ from raw ones).
    func testPredictionColumnsForEachLoss() throws {
        let rows: [Float] = [0.5, -1, 2, 3.25, -4, 5, 0, 0.1]
        let input = PredictionInput(data: Dataset(count: 4, featureCount: 2, storage: .floats(rows), labels: [0, 1, 1, 0], origin: "x"),
                                    hasLabels: true)
        let transform = FeatureTransform(scale: [0.5, 2], shift: [1, -1])
        let normalized = (0..<8).map { rows[$0] * transform.scale[$0 % 2] + transform.shift[$0 % 2] }
        for (loss, units) in [("cross_entropy", 3), ("{type: binary_crossentropy, from_logits: true}", 1), ("mse", 1)] {
            let config = try TrainingConfig.parse(yaml: """
                data: {train: {format: moons}}
                model: {inputs: 2, layers: [{type: dense, units: \(units)}]}
                loss: \(loss)
                optimizer: {type: sgd}
                """)
            let network = try Network(config: config.model)
            network.reserve(maxBatch: 4)
            network.initialize(seed: 9)
            let weights = directory.appendingPathComponent("w-\(units)-\(loss.count).safetensors").path
            try network.saveWeights(to: weights, metadata: transform.metadata(normalization: .standardize))
            let model = try TrainedModel(config: config, weights: weights)
            XCTAssertEqual(model.savedTransform, transform)
            var text = ""
            try PredictionWriter.predict(model, input: input, transform: transform) { text += $0 }
            var outputs = [Float](repeating: 0, count: 4 * units)
            try Evaluator(network: model.network, loss: config.loss, context: StepContext(communicator: LocalCommunicator(), maxBatch: 4))
                .predict(inputs: normalized, rows: 4, into: &outputs)
            let lines = text.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
            XCTAssertEqual(lines.count, 5, text)
            for row in 0..<4 {
                let fields = lines[row + 1]
                let z = outputs[(row * units)..<((row + 1) * units)].map(Double.init)
                XCTAssertEqual(fields.last, row == 1 || row == 2 ? "1" : "0", "the label column")
                switch config.loss {
                case .crossEntropy:
                    XCTAssertEqual(lines[0], ["class", "p_0", "p_1", "p_2", "label"])
                    let sum = z.map(exp).reduce(0, +)
                    for j in 0..<3 { XCTAssertEqual(Double(fields[1 + j])!, exp(z[j]) / sum, accuracy: 1e-6) }
                    XCTAssertEqual(Int(fields[0]), z.firstIndex(of: z.max()!))
                case .binaryCrossEntropy:
                    XCTAssertEqual(lines[0], ["class", "p_0", "p_1", "label"])
                    XCTAssertEqual(Double(fields[2])!, 1 / (1 + exp(-z[0])), accuracy: 1e-6)
                    XCTAssertEqual(fields[0], z[0] > 0 ? "1" : "0")
                case .meanSquaredError:
                    XCTAssertEqual(lines[0], ["value", "label"])
                    XCTAssertEqual(Float(fields[0]), Float(z[0]))
                }
            }
        }
    }

    /// Under several ranks each scores its chunks and rank 0 emits them in order: the same text
    /// and unscored rows as one process (3 chunks of 1,024 rows over 1, 2 and 3 ranks, NaN rows
    /// in the last chunk); without `allowNaN` every rank fails alike, naming the first such row.
    func testShardedPredictionWritesOneProcessesText() throws {
        let count = 2_500
        var random = TestRandom(seed: 4)
        var rows = random.array(2 * count, -2, 2)
        for row in [2_100, 2_300, 2_301] { rows[2 * row] = .nan }
        let features = rows, labels = (0..<count).map { Float($0 % 3) }
        let config = try TrainingConfig.parse(yaml: """
            data: {train: {format: moons}}
            model: {inputs: 2, layers: [{type: dense, units: 8, activation: relu}, {type: dense, units: 3}]}
            loss: cross_entropy
            optimizer: {type: sgd}
            """)
        let network = try Network(config: config.model)
        network.reserve(maxBatch: 4)
        network.initialize(seed: 3)
        let weights = directory.appendingPathComponent("sharded.safetensors").path
        let transform = FeatureTransform(scale: [1, 1], shift: [0, 0])
        try network.saveWeights(to: weights, metadata: transform.metadata(normalization: .none))
        func predict(ranks: Int, allowNaN: Bool) throws -> [(text: String, unscored: PredictionWriter.Unscored)] {
            let results = Results<Tagged>(count: ranks)
            try ThreadCommunicator.run(ranks: ranks) { communicator in
                let model = try TrainedModel(config: config, weights: weights)
                let input = PredictionInput(data: Dataset(count: count, featureCount: 2, storage: .floats(features), labels: labels, origin: "x"),
                                            hasLabels: true)
                var text = ""
                let unscored = try PredictionWriter.predict(model, input: input, transform: transform, allowNaN: allowNaN,
                                                            communicator: communicator) { text += $0 }
                results.set(communicator.rank, Tagged(text: text, unscored: unscored))
            }
            return try results.all().map { ($0.text, $0.unscored) }
        }
        let single = try predict(ranks: 1, allowNaN: true)[0]
        XCTAssertEqual(single.text.split(separator: "\n").count, count + 1)
        XCTAssertEqual(single.unscored.count, 3)
        XCTAssertEqual(single.unscored.first, [2_100, 2_300, 2_301])
        for ranks in [2, 3] {
            let run = try predict(ranks: ranks, allowNaN: true)
            XCTAssertEqual(run[0].text, single.text, "\(ranks) ranks: rank 0's text")
            XCTAssertEqual(run[ranks - 1].text, "", "\(ranks) ranks: only rank 0 emits")
            XCTAssertEqual(run[ranks - 1].unscored, single.unscored, "\(ranks) ranks: every rank counts the unscored rows")
            XCTAssertThrowsError(try predict(ranks: ranks, allowNaN: false)) { error in
                XCTAssertTrue("\(error)".contains("row 2100 has a non-finite feature"), "\(error)")
            }
        }
    }
}

/// One rank's prediction text and unscored rows.
private struct Tagged: Sendable {
    var text: String
    var unscored: PredictionWriter.Unscored
}
