import DDPCore
import Foundation
import XCTest

/// End-to-end checks of the input-side features: NumPy inputs train exactly as the same data
/// read from CSV.
final class InputRegularizationTests: IntegrationTestCase {
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
