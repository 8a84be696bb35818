import Foundation
import XCTest
@testable import DDPCore

/// `logging.histograms`: tf.summary.histogram's bucketing, the HistogramProto event against the
/// bytes TensorBoard's own protobuf classes write, the config check, and a trained run's file.
final class EpochHistogramsTests: XCTestCase {
    /// Range 30, so every bucket is 1 wide and every edge exact: −12 sits on bucket 3's left
    /// edge and falls in it (⌊3⌋), and max (position 30) falls in the last bucket, as tf clamps it.
    func testBucketsAsTFSummaryHistogram() {
        let histogram = TensorHistogram([-12, 15, -15, -13.5, 14.5, -12])
        XCTAssertEqual(histogram.minimum, -15)
        XCTAssertEqual(histogram.maximum, 15)
        XCTAssertEqual(histogram.count, 6)
        XCTAssertEqual(histogram.sum, -23)
        XCTAssertEqual(histogram.sumOfSquares, 144 + 225 + 225 + 182.25 + 210.25 + 144)
        XCTAssertEqual(histogram.bucketLimits, (1...30).map { Double($0) - 15 })
        var counts = [Double](repeating: 0, count: 30)
        counts[0] = 1
        counts[1] = 1
        counts[3] = 2
        counts[29] = 2
        XCTAssertEqual(histogram.bucketCounts, counts)
    }

    /// Float values are summed as doubles: 0.1f's square is not rounded back to a float.
    func testFiguresAreExactDoublesOfTheFloats() {
        let values: [Float] = [0.1, -0.3, 0.7]
        let histogram = TensorHistogram(values)
        let doubles = values.map(Double.init)
        XCTAssertEqual(histogram.sum, doubles[0] + doubles[1] + doubles[2])
        XCTAssertEqual(histogram.sumOfSquares, doubles[0] * doubles[0] + doubles[1] * doubles[1] + doubles[2] * doubles[2])
        XCTAssertEqual(histogram.minimum, Double(Float(-0.3)))
        XCTAssertEqual(histogram.bucketLimits.last, Double(Float(0.7)), "the last edge is max itself")
    }

    func testCountsSumToNumAndEdgesRise() {
        var random = TestRandom(seed: 4)
        let histogram = TensorHistogram(random.array(1000, -0.2, 0.05))
        XCTAssertEqual(histogram.count, 1000)
        XCTAssertEqual(histogram.bucketCounts.count, TensorHistogram.defaultBucketCount)
        XCTAssertEqual(histogram.bucketCounts.reduce(0, +), 1000)
        XCTAssertTrue(zip(histogram.bucketLimits, histogram.bucketLimits.dropFirst()).allSatisfy { $0 < $1 })
        XCTAssertGreaterThan(histogram.bucketLimits[0], histogram.minimum)
    }

    /// A constant tensor (a bias at its zero init, say) is one bucket: there is no width to split.
    func testConstantTensorIsOneBucket() {
        let histogram = TensorHistogram([Float](repeating: 0.25, count: 3))
        XCTAssertEqual(histogram, TensorHistogram(minimum: 0.25, maximum: 0.25, count: 3, sum: 0.75, sumOfSquares: 0.1875,
                                                  bucketLimits: [0.25], bucketCounts: [3]))
    }

    /// Bytes of `event_pb2.Event(wall_time=1700000000.5, step=3, summary=Summary(value=[Value(
    /// tag="w/0.weight", histo=HistogramProto(min=-1, max=2, num=3, sum=1.5, sum_squares=5.25,
    /// bucket_limit=[0.5, 2], bucket=[1, 2]))])).SerializeToString()` (tensorboard 2.21).
    func testHistogramEventEncodesAsTensorBoardsProtobuf() {
        let histogram = TensorHistogram([-1, 2, 0.5], bucketCount: 2)
        XCTAssertEqual(histogram.bucketLimits, [0.5, 2])
        XCTAssertEqual(histogram.bucketCounts, [1, 2])
        let expected: [UInt8] = [
            9, 0, 0, 32, 64, 252, 84, 217, 65, 16, 3, 42, 97, 10, 95, 10, 10, 119, 47, 48, 46, 119, 101, 105, 103, 104, 116, 42, 81,
            9, 0, 0, 0, 0, 0, 0, 240, 191, 17, 0, 0, 0, 0, 0, 0, 0, 64, 25, 0, 0, 0, 0, 0, 0, 8, 64, 33, 0, 0, 0, 0, 0, 0, 248, 63,
            41, 0, 0, 0, 0, 0, 0, 21, 64, 50, 16, 0, 0, 0, 0, 0, 0, 224, 63, 0, 0, 0, 0, 0, 0, 0, 64,
            58, 16, 0, 0, 0, 0, 0, 0, 240, 63, 0, 0, 0, 0, 0, 0, 0, 64]
        XCTAssertEqual(TensorBoardEvent.histograms([("w/0.weight", histogram)], step: 3, wallTime: 1_700_000_000.5), expected)
    }

    func testHistogramsNeedTensorBoard() throws {
        let yaml = """
            data: {train: {format: moons, samples: 40}}
            model: {inputs: 2, layers: [{type: dense, units: 1}]}
            optimizer: {type: adam}
            """
        XCTAssertFalse(try TrainingConfig.parse(yaml: yaml).logging.histograms, "off by default")
        XCTAssertTrue(try TrainingConfig.parse(yaml: yaml, overrides: ["logging.histograms=true"]).logging.histograms)
        assertDDPError(.config, containing: ["logging.histograms", "logging.tensorboard is false"]) {
            try TrainingConfig.parse(yaml: yaml, overrides: ["logging.tensorboard=false", "logging.histograms=true"])
        }
    }

    /// A 2-epoch run: after the file version, each epoch's scalars and then its histograms, a
    /// weight and a gradient histogram for each of the 4 trainable tensors, and none for the
    /// frozen layer's.
    func testTrainedRunWritesAWeightAndAGradientHistogramPerTensorAndEpoch() throws {
        let run = NSTemporaryDirectory() + "ddp-histograms-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: run) }
        let config = try TrainingConfig.parse(yaml: """
            seed: 3
            data: {train: {format: moons, samples: 60}}
            model:
              inputs: 2
              layers:
                - {type: dense, units: 8, activation: relu}
                - {type: dense, units: 4, activation: relu, trainable: false}
                - {type: dense, units: 1}
            loss: {type: binary_crossentropy, from_logits: true}
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 2, batch_size: 16}
            checkpoint: {every_epochs: 0, keep: 1}
            logging: {histograms: true}
            """)
        var options = TrainOptions(runDirectory: run)
        options.quiet = true
        _ = try Trainer(config: config, data: try RunData(config: config), communicator: LocalCommunicator(), options: options).run()
        let name = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: run).first(where: TensorBoardWriter.isEventFile))
        let records = try TFRecord.records(Array(try Data(contentsOf: URL(fileURLWithPath: run + "/" + name))), file: name)
        XCTAssertEqual(records.count, 1 + 2 * 2)
        for record in [records[2], records[4]] {
            let text = String(decoding: record, as: UTF8.self)
            for tensor in ["0.weight", "0.bias", "2.weight", "2.bias"] {
                XCTAssertTrue(text.contains("weights/" + tensor) && text.contains("gradients/" + tensor), tensor)
            }
            XCTAssertFalse(text.contains("1.weight"), "the frozen layer has no gradient and no histogram")
        }
    }
}
