import Foundation
import XCTest
@testable import DDPCore
@testable import DDPReport

final class AugmentationGridTests: XCTestCase {
    /// `ddp plot`'s augmentation.svg: the originals, and per epoch exactly what the trainer's
    /// pass makes of each row.
    func testAugmentationGridShowsTheTrainersTransforms() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("AugmentationGrid-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let pixels: [UInt8] = (0..<32).map { UInt8($0 * 8) }          // two 4×4 images
        try Data(NPYFile.encode(descr: "|u1", shape: [2, 16], values: pixels)).write(to: directory.appendingPathComponent("x.npy"))
        try Data(NPYFile.encode(descr: "|u1", shape: [2], values: [0, 1])).write(to: directory.appendingPathComponent("y.npy"))
        let config = try TrainingConfig.parse(yaml: """
            seed: 4
            data:
              train: {format: npy, features: \(directory.path)/x.npy, labels: \(directory.path)/y.npy}
              image_shape: [4, 4, 1]
              augment: [{type: random_flip, mode: horizontal}]
            model: {inputs: 16, layers: [{type: dense, units: 2}]}
            optimizer: {type: sgd}
            """)
        let data = try RunData(config: config)
        let augmentation = try XCTUnwrap(try Augmentation(config: config, data: data))
        let grid = try AugmentationGrid(data: data, augmentation: augmentation, rows: [0, 1], epochs: [0, 1, 2, 3], title: "t")
        for (r, row) in [0, 1].enumerated() {
            let original = (0..<16).map { Float(pixels[row * 16 + $0]) * (Float(1) / 255) + 0 }     // gather: x·scale + shift
            XCTAssertEqual(grid.images[r][0], original)
            for (e, epoch) in [0, 1, 2, 3].enumerated() {
                var expected = original
                expected.withUnsafeMutableBufferPointer { augmentation.apply(row: row, epoch: epoch, sample: $0.baseAddress!) }
                XCTAssertEqual(grid.images[r][1 + e], expected)
            }
        }
        let svg = grid.svg()
        XCTAssertEqual(svg.components(separatedBy: "class=\"sample\"").count - 1, 2 * 5)
        XCTAssertTrue(svg.contains("data-row=\"1\" data-epoch=\"4\""))
    }
}
