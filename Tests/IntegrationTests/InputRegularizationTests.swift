import DDPCore
import Foundation
import XCTest

/// End-to-end checks of the input and weight regularizers: NumPy inputs train exactly as the
/// same data read from CSV; weight noise and augmentation train the same model on 1, 2 and 4
/// ranks (their draws are keyed by step or sample, never by rank).
final class InputRegularizationTests: IntegrationTestCase {
    static let tolerance = 1e-5

    /// Trains `yaml` on np = 1 (plain), 2 and 4 and checks the weights and losses agree; returns
    /// the np=1 run directory.
    @discardableResult
    private func assertSameOnOneTwoAndFourRanks(_ yaml: String, _ name: String,
                                                file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let config = try writeConfig("\(name).yaml", yaml)
        for np in [1, 2, 4] {
            try train(np: np == 1 ? nil : np, config: config, runDirectory: path("\(name)-np\(np)"), file: file, line: line)
        }
        let reference = try readTensors(path("\(name)-np1/model.safetensors"))
        let referenceMetrics = Metrics(runDirectory: path("\(name)-np1"))
        for np in [2, 4] {
            assertTensorsClose(reference, try readTensors(path("\(name)-np\(np)/model.safetensors")), tolerance: Self.tolerance,
                               "\(name): np=\(np) vs np=1", file: file, line: line)
            let metrics = Metrics(runDirectory: path("\(name)-np\(np)"))
            assertSeriesClose(referenceMetrics.values("loss"), metrics.values("loss"), tolerance: Self.tolerance,
                              "\(name): loss np=\(np) vs np=1", file: file, line: line)
        }
        return path("\(name)-np1")
    }

    /// 8×8 uint8 images as IDX files: class 1 has a bright 3×3 blob in the left half, class 0 in
    /// the right. IDX records the image shape itself, which must reach every rank through the
    /// node-shared data window.
    private func writeImages(count: Int) throws -> (features: String, labels: String) {
        var pixels = [UInt8](repeating: 0, count: count * 64), labels = [Int64](repeating: 0, count: count)
        var state: UInt64 = 99
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33) % n
        }
        for i in 0..<count {
            labels[i] = Int64(i % 2)
            let (top, left) = (next(6), labels[i] == 1 ? next(2) : 3 + next(3))
            for p in 0..<64 { pixels[i * 64 + p] = UInt8(next(40)) }
            for y in top..<top + 3 { for x in left..<left + 3 { pixels[i * 64 + y * 8 + x] = UInt8(200 + next(56)) } }
        }
        func word(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        try Data(word(0x0803) + word(count) + word(8) + word(8) + pixels).write(to: URL(fileURLWithPath: path("images.idx")))
        try Data(word(0x0801) + word(count) + labels.map { UInt8($0) }).write(to: URL(fileURLWithPath: path("labels.idx")))
        return (path("images.idx"), path("labels.idx"))
    }

    func testAugmentationSameOnOneTwoAndFourRanks() throws {
        let files = try writeImages(count: 150)
        let yaml = """
            seed: 11
            data:
              train: {format: idx, images: \(files.features), labels: \(files.labels)}
              validation_split: 0.2
              augment:
                - {type: random_flip, mode: vertical}
                - {type: random_translation, height_factor: 0.1, width_factor: 0.1, fill_mode: reflect}
                - {type: random_rotation, factor: 0.05}
                - {type: random_zoom, height_factor: 0.1}
                - {type: random_crop, padding: 1}
                - {type: random_erasing, probability: 0.5, value: random}
                - {type: gaussian_noise, stddev: 0.05}
            model:
              inputs: 64
              layers:
                - {type: dense, units: 16, activation: relu}
                - {type: dense, units: 2}
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 3, batch_size: 20}
            """
        let augmented = try assertSameOnOneTwoAndFourRanks(yaml, "augment")
        // Not vacuous: without augmentation the training losses differ; validation is never augmented,
        // so the model still learns the task.
        let plain = try writeConfig("plain.yaml", yaml.components(separatedBy: "  augment:\n")[0] + "model:" + yaml.components(separatedBy: "model:")[1])
        try train(np: nil, config: plain, runDirectory: path("plain"))
        let withAugment = Metrics(runDirectory: augmented).values("loss"), without = Metrics(runDirectory: path("plain")).values("loss")
        XCTAssertNotEqual(withAugment, without, "augmentation changed nothing")
        XCTAssertGreaterThan(Metrics(runDirectory: augmented).values("val_accuracy").last.flatMap { $0 } ?? 0, 0.6)
        // ddp summary shows the input as the MLP sees it: the 8×8 images' 64 features.
        let summary = try runDDP(np: nil, ["summary", path("augment.yaml")])
        XCTAssertEqual(summary.status, 0, summary.tail)
        XCTAssertTrue(summary.stdout.contains("Input shape: (None, 64)"), summary.stdout)
    }

    func testWeightNoiseSameOnOneTwoAndFourRanks() throws {
        let yaml = """
            seed: 5
            data:
              train: {format: moons, samples: 150, noise: 0.2}
              normalize: standardize
            model:
              inputs: 2
              layers:
                - {type: dense, units: 16, activation: tanh, weight_noise: 0.2}
                - {type: dense, units: 2, weight_noise: 0.1}
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 3, batch_size: 25}
            """
        let noisy = try assertSameOnOneTwoAndFourRanks(yaml, "weight-noise")
        // Not vacuous: without the noise the run ends elsewhere.
        let plain = try writeConfig("plain.yaml", yaml.replacingOccurrences(of: ", weight_noise: 0.2", with: "")
                                                      .replacingOccurrences(of: ", weight_noise: 0.1", with: ""))
        try train(np: nil, config: plain, runDirectory: path("plain"))
        let difference = relativeDifference(try readTensors(path("plain/model.safetensors"))["0.weight"]!.floats()!,
                                            try readTensors(noisy + "/model.safetensors")["0.weight"]!.floats()!)
        XCTAssertGreaterThan(difference, 1e-3, "weight noise changed nothing")
    }

    /// 240 samples of 5 features, values k/16 (exact in float32, float64 and decimal text),
    /// 3 classes. Written as float64 .npy + int64 labels, and as CSV.
    private func writeNumpyAndCSV() throws -> (features: String, labels: String, csv: String) {
        var state: UInt64 = 12345
        func next() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33)
        }
        let count = 240, width = 5
        var features: [Double] = [], labels: [Int64] = []
        var csv = "a,b,c,d,e,label\n"
        for _ in 0..<count {
            var row: [Double] = []
            for _ in 0..<width { row.append(Double(next() % 64 - 32) / 16) }
            let label = Int64((row[0] + row[1] > 0 ? 1 : 0) + (row[2] > 0.5 ? 1 : 0))
            features += row
            labels.append(label)
            csv += row.map { String($0) }.joined(separator: ",") + ",\(label)\n"
        }
        let x = NPYFile.encode(descr: "<f8", shape: [count, width], values: features.withUnsafeBytes { Array($0) })
        let y = NPYFile.encode(descr: "<i8", shape: [count], values: labels.withUnsafeBytes { Array($0) })
        try Data(x).write(to: URL(fileURLWithPath: path("X.npy")))
        try Data(y).write(to: URL(fileURLWithPath: path("y.npy")))
        try csv.write(toFile: path("data.csv"), atomically: true, encoding: .utf8)
        return (path("X.npy"), path("y.npy"), path("data.csv"))
    }

    func testNumpyRunEqualsCSVRun() throws {
        let files = try writeNumpyAndCSV()
        func config(_ train: String) -> String {
            """
            seed: 3
            data:
              train: \(train)
              validation_split: 0.25
              normalize: standardize
            model:
              inputs: 5
              layers:
                - {type: dense, units: 12, activation: relu}
                - {type: dense, units: 3}
            optimizer: {type: adam, lr: 0.01}
            training: {epochs: 3, batch_size: 32}
            """
        }
        let npy = try writeConfig("npy.yaml", config("{format: npy, features: \(files.features), labels: \(files.labels)}"))
        let csv = try writeConfig("csv.yaml", config("{format: csv, path: \(files.csv), label: label}"))
        try train(np: nil, config: npy, runDirectory: path("npy"))
        try train(np: nil, config: csv, runDirectory: path("csv"))
        assertTensorsClose(try readTensors(path("csv/model.safetensors")), try readTensors(path("npy/model.safetensors")),
                           tolerance: 0, ".npy run vs CSV run")
        let fromCSV = Metrics(runDirectory: path("csv")), fromNumpy = Metrics(runDirectory: path("npy"))
        XCTAssertEqual(fromCSV.epochNumbers(), [1, 2, 3])
        XCTAssertEqual(fromCSV.values("val_loss"), fromNumpy.values("val_loss"))
        XCTAssertEqual(fromCSV.values("loss"), fromNumpy.values("loss"))
    }
}
