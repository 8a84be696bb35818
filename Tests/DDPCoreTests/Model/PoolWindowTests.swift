import Foundation
import XCTest
@testable import DDPCore

/// PoolWindow: the config keys (pool_size and strides as an integer or a pair, padding), the
/// output sizes and padding of `valid` and `same` (TensorFlow's rule) at odd and even sizes,
/// and the windows clipped to the image.
final class PoolWindowTests: XCTestCase {
    // MARK: Geometry

    private func geometry(_ n: Int, pool: Int, stride: Int, _ padding: PoolWindow.Padding) throws -> PoolGeometry {
        try PoolWindow(height: pool, width: 1, strideHeight: stride, strideWidth: 1, padding: padding)
            .geometry(on: ImageShape(height: n, width: 1, channels: 1))
    }

    /// The rows each output row pools, clipped to the image.
    private func windows(_ g: PoolGeometry) -> [Range<Int>] { (0..<g.outputHeight).map(g.rows) }

    func testValidPaddingPlacesWindowsWhereTheyFit() throws {
        let even = try geometry(8, pool: 2, stride: 2, .valid)
        XCTAssertEqual(windows(even), [0..<2, 2..<4, 4..<6, 6..<8])
        // ⌊(7 − 2)/2⌋ + 1 = 3: the last row is left out, as Keras and torch do.
        XCTAssertEqual(windows(try geometry(7, pool: 2, stride: 2, .valid)), [0..<2, 2..<4, 4..<6])
        // Stride larger than the pool skips rows.
        XCTAssertEqual(windows(try geometry(8, pool: 2, stride: 3, .valid)), [0..<2, 3..<5, 6..<8])
        XCTAssertEqual(windows(try geometry(5, pool: 5, stride: 5, .valid)), [0..<5], "pool = the whole input")
        XCTAssertEqual(windows(try geometry(3, pool: 1, stride: 1, .valid)), [0..<1, 1..<2, 2..<3], "1×1")
    }

    /// TensorFlow's `same`: out = ⌈n/s⌉, total padding max((out − 1)·s + k − n, 0), the smaller
    /// half before (top/left) and the odd pixel after.
    func testSamePaddingFollowsTensorFlowAtOddAndEvenSizes() throws {
        let odd = try geometry(7, pool: 3, stride: 2, .same)          // out 4, total 2: 1 before, 1 after
        XCTAssertEqual([odd.outputHeight, odd.padTop], [4, 1])
        XCTAssertEqual(windows(odd), [0..<2, 1..<4, 3..<6, 5..<7])
        let even = try geometry(8, pool: 3, stride: 2, .same)         // out 4, total 1: 0 before, 1 after
        XCTAssertEqual([even.outputHeight, even.padTop], [4, 0])
        XCTAssertEqual(windows(even), [0..<3, 2..<5, 4..<7, 6..<8])
        let twoOnOdd = try geometry(5, pool: 2, stride: 2, .same)     // out 3, total 1: the odd pixel after
        XCTAssertEqual([twoOnOdd.outputHeight, twoOnOdd.padTop], [3, 0])
        XCTAssertEqual(windows(twoOnOdd), [0..<2, 2..<4, 4..<5])
        let twoOnEven = try geometry(6, pool: 2, stride: 2, .same)    // out 3, no padding
        XCTAssertEqual([twoOnEven.outputHeight, twoOnEven.padTop], [3, 0])
        XCTAssertEqual(windows(twoOnEven), [0..<2, 2..<4, 4..<6])
        let strideOne = try geometry(4, pool: 3, stride: 1, .same)    // out 4, total 2: keeps the size
        XCTAssertEqual(windows(strideOne), [0..<2, 0..<3, 1..<4, 2..<4])
        let strideOverPool = try geometry(7, pool: 2, stride: 3, .same) // out 3, total max(6 + 2 − 7, 0) = 1
        XCTAssertEqual([strideOverPool.outputHeight, strideOverPool.padTop], [3, 0])
        XCTAssertEqual(windows(strideOverPool), [0..<2, 3..<5, 6..<7])
    }

    func testSamePaddingTakesAPoolLargerThanTheInput() throws {
        let g = try geometry(2, pool: 5, stride: 1, .same)            // out 2, total 5: 2 before
        XCTAssertEqual(g.padTop, 2)
        XCTAssertEqual(windows(g), [0..<2, 0..<2])
        XCTAssertTrue(windows(g).allSatisfy { !$0.isEmpty }, "every window keeps a real pixel")
    }

    func testEveryWindowHoldsARealPixel() throws {
        for n in 1...9 {
            for pool in 1...5 {
                for stride in 1...4 {
                    for window in windows(try geometry(n, pool: pool, stride: stride, .same)) {
                        XCTAssertFalse(window.isEmpty, "n \(n), pool \(pool), stride \(stride)")
                        XCTAssertTrue(window.lowerBound >= 0 && window.upperBound <= n)
                    }
                }
            }
        }
    }

    func testValidPoolLargerThanTheInputIsAnError() {
        let window = PoolWindow(height: 3, width: 3)
        assertDDPError(.config, containing: ["pool 3×3 does not fit the input (None, 2, 2, 8) with padding: valid"]) {
            try window.geometry(on: ImageShape(height: 2, width: 2, channels: 8))
        }
        assertDDPError(.config, containing: ["pool 1×3 does not fit the input (None, 4, 2, 1)"]) {
            try PoolWindow(height: 1, width: 3).geometry(on: ImageShape(height: 4, width: 2, channels: 1))
        }
    }

    // MARK: Config keys

    private func parseLayer(_ entry: String) throws -> any LayerSpec {
        let yaml = """
            data:
              train: {format: moons, samples: 64}
            model:
              inputs: [8, 8, 3]
              layers:
                - \(entry)
                - {type: flatten}
                - {type: dense, units: 2}
            optimizer: {type: sgd, lr: 0.1}
            training: {epochs: 1, batch_size: 16}
            """
        return try TrainingConfig.parse(yaml: yaml).model.layers[0].spec
    }

    func testPoolSizeAndStridesTakeAnIntegerOrAPair() throws {
        let defaults = try XCTUnwrap(try parseLayer("{type: max_pooling2d}") as? MaxPooling2DSpec)
        XCTAssertEqual(defaults.window, PoolWindow(height: 2, width: 2, strideHeight: 2, strideWidth: 2, padding: .valid))
        let pair = try XCTUnwrap(try parseLayer("{type: average_pooling2d, pool_size: [2, 3], padding: same}") as? AveragePooling2DSpec)
        XCTAssertEqual(pair.window, PoolWindow(height: 2, width: 3, strideHeight: 2, strideWidth: 3, padding: .same),
                       "strides default to the pool size")
        let strided = try XCTUnwrap(try parseLayer("{type: max_pooling2d, pool_size: 3, strides: [1, 2]}") as? MaxPooling2DSpec)
        XCTAssertEqual(strided.window, PoolWindow(height: 3, width: 3, strideHeight: 1, strideWidth: 2))
    }

    func testBadPoolKeysNameTheKey() {
        for (entry, parts) in [
            ("{type: max_pooling2d, pool_size: 0}", ["model.layers[0].pool_size: expected an integer ≥ 1 or a list [height, width]", "'0'"]),
            ("{type: max_pooling2d, pool_size: [2, 2, 2]}", ["model.layers[0].pool_size", "'a list'"]),
            ("{type: max_pooling2d, pool_size: [2, x]}", ["model.layers[0].pool_size"]),
            ("{type: average_pooling2d, strides: -1}", ["model.layers[0].strides: expected an integer ≥ 1"]),
            ("{type: max_pooling2d, padding: full}", ["model.layers[0].padding: 'full' is not one of valid, same"]),
            ("{type: max_pooling2d, pool_size: 9}", ["model.layers[0] (max_pooling2d): pool 9×9 does not fit the input (None, 8, 8, 3)"]),
            ("{type: global_max_pooling2d, pool_size: 2}", ["unknown key 'model.layers[0].pool_size'"]),
        ] {
            assertDDPError(.config, containing: parts) { try self.parseLayer(entry) }
        }
    }
}
