import Foundation
import XCTest
@testable import DDPCore

/// Each transform against pixels worked out by hand, the random draws' keying (a row's result
/// does not depend on the batch it is in), and the config errors.
final class AugmentationTests: XCTestCase {
    /// [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    let square: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    let threeByThree = ImageShape(height: 3, width: 3)

    func transformed(_ image: [Float], _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        var pixels = image
        var scratch = [Float](repeating: .nan, count: image.count)
        pixels.withUnsafeMutableBufferPointer { p in scratch.withUnsafeMutableBufferPointer { s in body(p.baseAddress!, s.baseAddress!) } }
        return pixels
    }

    /// One sample through a pipeline of `transforms` with identity normalization.
    func augmented(_ image: [Float], _ shape: ImageShape, _ transforms: [AugmentTransform], row: Int = 0, epoch: Int = 0,
                   seed: UInt64 = 1) throws -> [Float] {
        let pipeline = try Augmentation(transforms, imageShape: shape, normalization: .identity(featureCount: image.count), seed: seed)
        var pixels = image
        pixels.withUnsafeMutableBufferPointer { pipeline.apply(row: row, epoch: epoch, sample: $0.baseAddress!) }
        return pixels
    }

    func testFlipOfAKnownImage() {
        let shape = ImageShape(height: 2, width: 3)
        let image: [Float] = [1, 2, 3, 4, 5, 6]
        XCTAssertEqual(transformed(image) { p, _ in Augmentation.flip(p, shape, horizontal: true, vertical: false) }, [3, 2, 1, 6, 5, 4])
        XCTAssertEqual(transformed(image) { p, _ in Augmentation.flip(p, shape, horizontal: false, vertical: true) }, [4, 5, 6, 1, 2, 3])
        XCTAssertEqual(transformed(image) { p, _ in Augmentation.flip(p, shape, horizontal: true, vertical: true) }, [6, 5, 4, 3, 2, 1])
        // Channels move together: a 1×2 image of (r, g) pixels.
        XCTAssertEqual(transformed([1, 10, 2, 20]) { p, _ in
            Augmentation.flip(p, ImageShape(height: 1, width: 2, channels: 2), horizontal: true, vertical: false)
        }, [2, 20, 1, 10])
    }

    func testRandomFlipDrawsBothOutcomes() throws {
        let shape = ImageShape(height: 1, width: 3)
        var seen = Set<[Float]>()
        for row in 0..<40 { seen.insert(try augmented([1, 2, 3], shape, [.randomFlip(.horizontal)], row: row)) }
        XCTAssertEqual(seen, [[1, 2, 3], [3, 2, 1]])
    }

    func testTranslationByExactlyOnePixel() throws {
        // 2×4 image; width_factor 0.25 of 4 columns = exactly 1 pixel to the right.
        let shape = ImageShape(height: 2, width: 4)
        let image: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]
        let right = AugmentTransform.randomTranslation(height: FactorRange(0, 0), width: FactorRange(0.25, 0.25),
                                                      fill: .constant, fillValue: 0, interpolation: .bilinear)
        XCTAssertEqual(try augmented(image, shape, [right]), [0, 1, 2, 3, 0, 5, 6, 7])
        let nearest = AugmentTransform.randomTranslation(height: FactorRange(0, 0), width: FactorRange(0.25, 0.25),
                                                        fill: .constant, fillValue: 0, interpolation: .nearest)
        XCTAssertEqual(try augmented(image, shape, [nearest]), [0, 1, 2, 3, 0, 5, 6, 7])
        // One row up (height_factor −0.5 of 2 rows), the vacated row filled by each mode.
        func up(_ fill: AugmentTransform.FillMode) throws -> [Float] {
            try augmented(image, shape, [.randomTranslation(height: FactorRange(-0.5, -0.5), width: FactorRange(0, 0),
                                                            fill: fill, fillValue: 9, interpolation: .bilinear)])
        }
        XCTAssertEqual(try up(.constant), [5, 6, 7, 8, 9, 9, 9, 9])
        XCTAssertEqual(try up(.nearest), [5, 6, 7, 8, 5, 6, 7, 8])
        XCTAssertEqual(try up(.reflect), [5, 6, 7, 8, 5, 6, 7, 8])       // row 2 reflects to row 1 (d c b a | a b c d | d c b a)
        XCTAssertEqual(try up(.wrap), [5, 6, 7, 8, 1, 2, 3, 4])
        // Half a pixel right, bilinear: the average of neighbours; reflect repeats the edge.
        let half = AugmentTransform.randomTranslation(height: FactorRange(0, 0), width: FactorRange(0.125, 0.125),
                                                     fill: .reflect, fillValue: 0, interpolation: .bilinear)
        XCTAssertEqual(try augmented(image, shape, [half]), [1, 1.5, 2.5, 3.5, 5, 5.5, 6.5, 7.5])
    }

    func testRotationBy90DegreesWithNearest() throws {
        // factor 0.25 of 2π = 90°, counter-clockwise (Keras): the right column becomes the top row.
        let quarter = AugmentTransform.randomRotation(factor: FactorRange(0.25, 0.25), fill: .constant, fillValue: 0, interpolation: .nearest)
        XCTAssertEqual(try augmented(square, threeByThree, [quarter]), [3, 6, 9, 2, 5, 8, 1, 4, 7])
        let clockwise = AugmentTransform.randomRotation(factor: FactorRange(-0.25, -0.25), fill: .constant, fillValue: 0, interpolation: .nearest)
        XCTAssertEqual(try augmented(square, threeByThree, [clockwise]), [7, 4, 1, 8, 5, 2, 9, 6, 3])
        // A non-square image: corners leave the frame and are filled.
        let wide = ImageShape(height: 2, width: 4)
        let rotated = try augmented([1, 2, 3, 4, 5, 6, 7, 8], wide, [.randomRotation(factor: FactorRange(0.5, 0.5), fill: .constant,
                                                                                    fillValue: 0, interpolation: .nearest)])
        XCTAssertEqual(rotated, [8, 7, 6, 5, 4, 3, 2, 1], "180° about the centre")
    }

    func testZoom() throws {
        // Zoom in by 2 (factor −0.5) on a 1×5 row about its centre x = 2: output x reads 0.5·x + 1.
        let shape = ImageShape(height: 1, width: 5)
        let zoom = AugmentTransform.randomZoom(height: FactorRange(0, 0), width: FactorRange(-0.5, -0.5), fill: .constant,
                                               fillValue: 0, interpolation: .bilinear)
        XCTAssertEqual(try augmented([0, 10, 20, 30, 40], shape, [zoom]), [10, 15, 20, 25, 30])
    }

    func testCropOffsets() {
        // padding 1, offset (top 0, left 2): output (y, x) = input (y − 1, x + 1).
        func crop(_ mode: AugmentTransform.PaddingMode) -> [Float] {
            transformed(square) { p, s in
                Augmentation.crop(p, self.threeByThree, padding: 1, top: 0, left: 2, mode: mode, fills: [-1], scratch: s)
            }
        }
        XCTAssertEqual(crop(.constant), [-1, -1, -1, 2, 3, -1, 5, 6, -1])
        XCTAssertEqual(crop(.edge), [2, 3, 3, 2, 3, 3, 5, 6, 6])
        XCTAssertEqual(crop(.reflect), [5, 6, 5, 2, 3, 2, 5, 6, 5])       // row −1 → row 1, column 3 → column 1
        XCTAssertEqual(crop(.symmetric), [2, 3, 3, 2, 3, 3, 5, 6, 6])     // row −1 → row 0, column 3 → column 2
        // The centre offset (p, p) is the identity.
        XCTAssertEqual(transformed(square) { p, s in
            Augmentation.crop(p, self.threeByThree, padding: 1, top: 1, left: 1, mode: .constant, fills: [0], scratch: s)
        }, square)
        // Random offsets cover 0...2p, each a shifted copy.
        var offsets = Set<[Float]>()
        for row in 0..<200 { offsets.insert(try! augmented(square, threeByThree, [.randomCrop(padding: 1, fill: 0, paddingMode: .constant)], row: row)) }
        XCTAssertEqual(offsets.count, 9)
    }

    func testErasedArea() {
        let erased = transformed(square) { p, _ in
            Augmentation.erase(p, self.threeByThree, Augmentation.Box(top: 1, left: 0, height: 2, width: 2)) { _ in 0 }
        }
        XCTAssertEqual(erased, [1, 2, 3, 0, 0, 6, 0, 0, 9])
        // torchvision's get_params with fixed draws: area 0.16·100 = 16, aspect 1 → 4×4; offsets
        // floor(0.5·(10 − 4 + 1)) = 3 and floor(0.99·7) = 6.
        let draws: [Double] = [0, 0.3, 0.7, 0.5, 0.99]
        let box = Augmentation.erasingBox(ImageShape(height: 10, width: 10), scale: FactorRange(0.16, 0.16), ratio: FactorRange(1, 1)) { draws[$0] }
        XCTAssertEqual(box, Augmentation.Box(top: 3, left: 6, height: 4, width: 4))
        // An area as large as the image never fits: no erasing.
        XCTAssertNil(Augmentation.erasingBox(ImageShape(height: 4, width: 4), scale: FactorRange(1, 1), ratio: FactorRange(1, 1)) { _ in 0.5 })
    }

    func testGaussianNoiseStatistics() throws {
        let count = 4096
        let noisy = try augmented([Float](repeating: 1, count: count), ImageShape(height: 64, width: 64), [.gaussianNoise(stddev: 0.5)])
        let mean = noisy.reduce(0, +) / Float(count)
        let std = (noisy.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(count)).squareRoot()
        XCTAssertEqual(mean, 1, accuracy: 0.03)
        XCTAssertEqual(std, 0.5, accuracy: 0.03)
    }

    /// A row's augmentation is the same whichever rank (batch, position) computes it, and
    /// changes with the epoch and the row.
    func testARowsAugmentationDoesNotDependOnItsBatch() throws {
        let shape = ImageShape(height: 6, width: 5, channels: 2)
        let width = shape.featureCount
        let transforms: [AugmentTransform] = [
            .randomFlip(.horizontalAndVertical),
            .randomTranslation(height: FactorRange(-0.2, 0.2), width: FactorRange(-0.2, 0.2), fill: .reflect, fillValue: 0, interpolation: .bilinear),
            .randomRotation(factor: FactorRange(-0.1, 0.1), fill: .nearest, fillValue: 0, interpolation: .bilinear),
            .randomZoom(height: FactorRange(-0.2, 0.2), width: nil, fill: .constant, fillValue: 0.5, interpolation: .nearest),
            .randomCrop(padding: 2, fill: 0, paddingMode: .constant),
            .randomErasing(probability: 1, scale: FactorRange(0.02, 0.33), ratio: FactorRange(0.3, 3.3), value: .random),
            .gaussianNoise(stddev: 0.1),
        ]
        var random = TestRandom(seed: 9)
        let images = (0..<4).map { _ in random.array(width, 0, 1) }      // dataset rows 10, 11, 12, 13
        func batch(_ rows: [Int], epoch: Int) throws -> [[Float]] {
            let pipeline = try Augmentation(transforms, imageShape: shape, normalization: .identity(featureCount: width), seed: 3)
            var inputs = rows.flatMap { images[$0 - 10] }
            let ids = rows.map(Int32.init)
            inputs.withUnsafeMutableBufferPointer { buffer in
                ids.withUnsafeBufferPointer { pipeline.apply(rows: $0.baseAddress!, count: rows.count, epoch: epoch, inputs: buffer.baseAddress!) }
            }
            return (0..<rows.count).map { Array(inputs[$0 * width ..< ($0 + 1) * width]) }
        }
        let oneRank = try batch([10, 11, 12, 13], epoch: 2)
        let rankOne = try batch([13, 11], epoch: 2), rankTwo = try batch([12], epoch: 2)
        XCTAssertEqual(rankOne[0], oneRank[3])
        XCTAssertEqual(rankOne[1], oneRank[1])
        XCTAssertEqual(rankTwo[0], oneRank[2])
        XCTAssertNotEqual(oneRank[0], images[0], "the pipeline changed nothing")
        XCTAssertNotEqual(try batch([10], epoch: 3)[0], oneRank[0], "a new epoch must draw anew")
        let sameImage = try Augmentation(transforms, imageShape: shape, normalization: .identity(featureCount: width), seed: 3)
        var asRow11 = images[0]
        asRow11.withUnsafeMutableBufferPointer { sameImage.apply(row: 11, epoch: 2, sample: $0.baseAddress!) }
        XCTAssertNotEqual(asRow11, oneRank[0], "another row must draw differently")
    }

    func testFillValuesAreNormalizedPerChannel() throws {
        // scale /255 (bytes): a fill of 255 becomes 1.
        let shape = ImageShape(height: 1, width: 2)
        let pipeline = try Augmentation([.randomCrop(padding: 1, fill: 255, paddingMode: .constant)], imageShape: shape,
                                        normalization: FeatureTransform(scale: [1 / 255, 1 / 255], shift: [0, 0]), seed: 1)
        var seen = Set<[Float]>()
        for row in 0..<50 {
            var pixels: [Float] = [0.25, 0.5]
            pixels.withUnsafeMutableBufferPointer { pipeline.apply(row: row, epoch: 0, sample: $0.baseAddress!) }
            seen.insert(pixels)
        }
        XCTAssertTrue(seen.contains([1, 0.25]) && seen.contains([0.5, 1]), "\(seen)")
    }

    // MARK: Errors

    let base = """
        data:
          train: {format: moons}
        model: {inputs: 2, layers: [{type: dense, units: 2}]}
        optimizer: {type: sgd}
        """

    func parse(_ data: String, inputs: Int = 2) throws -> TrainingConfig {
        try TrainingConfig.parse(yaml: base.replacingOccurrences(of: "  train: {format: moons}", with: "  train: {format: moons}\n" + data)
                                           .replacingOccurrences(of: "inputs: 2", with: "inputs: \(inputs)"))
    }

    func testConfigParsesKerasAndTorchvisionParameters() throws {
        let config = try parse("""
              image_shape: [1, 2, 1]
              augment:
                - random_flip
                - {type: random_translation, height_factor: 0.1, width_factor: [-0.2, 0.3], fill_mode: constant, fill_value: 7}
                - {type: random_rotation, factor: 0.05, interpolation: nearest}
                - {type: random_zoom, height_factor: [-0.1, 0.2]}
                - {type: random_crop, padding: 4, padding_mode: edge}
                - {type: random_erasing, probability: 0.25, value: random}
                - {type: gaussian_noise, stddev: 0.2}
            """)
        XCTAssertEqual(config.data.imageShape, ImageShape(height: 1, width: 2, channels: 1))
        XCTAssertEqual(config.data.augment, [
            .randomFlip(.horizontalAndVertical),
            .randomTranslation(height: FactorRange(-0.1, 0.1), width: FactorRange(-0.2, 0.3), fill: .constant, fillValue: 7, interpolation: .bilinear),
            .randomRotation(factor: FactorRange(-0.05, 0.05), fill: .reflect, fillValue: 0, interpolation: .nearest),
            .randomZoom(height: FactorRange(-0.1, 0.2), width: nil, fill: .reflect, fillValue: 0, interpolation: .bilinear),
            .randomCrop(padding: 4, fill: 0, paddingMode: .edge),
            .randomErasing(probability: 0.25, scale: FactorRange(0.02, 0.33), ratio: FactorRange(0.3, 3.3), value: .random),
            .gaussianNoise(stddev: 0.2),
        ])
    }

    func testConfigErrorsNameTheKey() throws {
        assertDDPError(.config, containing: ["data.augment[0]", "'random_flop'", "random_flip"]) {
            try self.parse("  augment: [random_flop]")
        }
        assertDDPError(.config, containing: ["data.augment[1].type", "'shear'"]) {
            try self.parse("  augment: [gaussian_noise, {type: shear}]")
        }
        assertDDPError(.config, containing: ["data.augment[0].height_factor", "[-1.0, 1.0]", "1.5"]) {
            try self.parse("  augment: [{type: random_translation, height_factor: 1.5, width_factor: 0.1}]")
        }
        assertDDPError(.config, containing: ["data.augment[0].factor", "lower ≤ upper"]) {
            try self.parse("  augment: [{type: random_rotation, factor: [0.2, 0.1]}]")
        }
        assertDDPError(.config, containing: ["data.augment[0].height_factor", "greater than -1"]) {
            try self.parse("  augment: [{type: random_zoom, height_factor: [-1, 0]}]")
        }
        assertDDPError(.config, containing: ["data.augment[0].probability"]) {
            try self.parse("  augment: [{type: random_erasing, probability: 2}]")
        }
        assertDDPError(.config, containing: ["data.augment[0].mode", "'diagonal'", "horizontal_and_vertical"]) {
            try self.parse("  augment: [{type: random_flip, mode: diagonal}]")
        }
        assertDDPError(.config, containing: ["unknown key 'data.augment[0].padding'"]) {
            try self.parse("  augment: [{type: random_flip, padding: 2}]")
        }
        assertDDPError(.config, containing: ["data.image_shape", "(28, 28, 1)", "784", "model.inputs is 2"]) {
            try self.parse("  image_shape: [28, 28, 1]")
        }
        assertDDPError(.config, containing: ["data.image_shape", "positive integers"]) {
            try self.parse("  image_shape: [28, 0, 1]")
        }
        // Image transforms on data without an image shape, found when the data is loaded.
        assertDDPError(.config, containing: ["data.augment[0] (random_flip)", "no image shape", "data.image_shape"]) {
            try RunData(config: try self.parse("  augment: [random_flip]"))
        }
        // gaussian_noise needs no image.
        XCTAssertNoThrow(try RunData(config: try self.parse("  augment: [gaussian_noise]")))
        // Pixel-moving transforms under a per-pixel normalization.
        assertDDPError(.config, containing: ["data.augment[0] (random_crop)", "data.normalize", "normalize: none"]) {
            try RunData(config: try self.parse("  image_shape: [1, 2, 1]\n  normalize: standardize\n  augment: [{type: random_crop, padding: 1}]"))
        }
        assertDDPError(.config, containing: ["data.augment[0].padding", "reflect", "smaller"]) {
            try RunData(config: try self.parse("  image_shape: [1, 2, 1]\n  normalize: none\n  augment: [{type: random_crop, padding: 1, padding_mode: reflect}]"))
        }
    }
}
