import DDPCore

/// What the model sees under `data.augment`: a few training images (one per row), each
/// followed by its augmented versions in the first epochs, exactly as the trainer transforms
/// them (the same keyed draws: dataset row, epoch, transform). Drawn as SVG rects, one per run
/// of equal pixels in an image row, grey levels quantized to 1/64.
///
/// SVG structure for scripts: `g.sample[data-row][data-epoch]` per image (no data-epoch on the
/// original), holding `rect.pixels`.
public struct AugmentationGrid {
    public let title: String
    public let shape: ImageShape
    /// Dataset rows shown, top to bottom.
    public let rows: [Int]
    /// Epochs of the augmented columns (0-based).
    public let epochs: [Int]
    /// images[r][0] is row r's original, images[r][1 + e] its augmentation in epochs[e];
    /// values normalized as the network sees them.
    public let images: [[[Float]]]

    public init(data: RunData, augmentation: Augmentation, rows: [Int], epochs: [Int], title: String) throws {
        guard let shape = data.imageShape else {
            throw DDPError(.config, "the augmentation grid needs images: set data.image_shape")
        }
        self.shape = shape
        self.rows = rows
        self.epochs = epochs
        self.title = title
        let width = data.train.featureCount
        var images: [[[Float]]] = []
        var buffer = [Float](repeating: 0, count: width)
        var label: Float = 0
        for row in rows {
            var versions: [[Float]] = []
            let id = [Int32(row)]
            buffer.withUnsafeMutableBufferPointer { out in
                id.withUnsafeBufferPointer { data.train.gather(rows: $0.baseAddress!, count: 1, transform: data.transform,
                                                                inputs: out.baseAddress!, labels: &label) }
            }
            versions.append(buffer)
            for epoch in epochs {
                var copy = buffer
                copy.withUnsafeMutableBufferPointer { augmentation.apply(row: row, epoch: epoch, sample: $0.baseAddress!) }
                versions.append(copy)
            }
            images.append(versions)
        }
        self.images = images
    }

    public func svg() -> String {
        let pixel = max(1.0, min(4.0, 112.0 / Double(max(shape.height, shape.width))))
        let imageWidth = Double(shape.width) * pixel, imageHeight = Double(shape.height) * pixel
        let gap = 10.0, left = 70.0, top = 64.0
        let columns = 1 + epochs.count
        let width = left + Double(columns) * (imageWidth + gap) + 10
        let height = top + Double(rows.count) * (imageHeight + gap) + 10
        // Grey scale over the originals' range (normalized values; augmented noise clips).
        let originals = images.flatMap { $0[0] }
        let low = Double(originals.min() ?? 0), high = Double(originals.max() ?? 1)
        let span = high > low ? high - low : 1
        func level(_ value: Float) -> Int { Int((min(1, max(0, (Double(value) - low) / span)) * 63).rounded()) }

        var svg = SVGWriter(width: width, height: height, title: title, classes: "chart augmentation")
        svg.label(title, x: 10, y: 22, size: 15, weight: "bold")
        svg.label("left: the training image; then its augmentation in epochs " + epochs.map { String($0 + 1) }.joined(separator: ", "),
                  x: 10, y: 40, fill: "#555555")
        for (column, name) in (["original"] + epochs.map { "epoch \($0 + 1)" }).enumerated() {
            svg.label(name, x: left + Double(column) * (imageWidth + gap) + imageWidth / 2, y: top - 6, anchor: "middle", size: 11)
        }
        let c = shape.channels
        for (r, row) in rows.enumerated() {
            let y0 = top + Double(r) * (imageHeight + gap)
            svg.label("row \(row)", x: left - 8, y: y0 + imageHeight / 2 + 4, anchor: "end", size: 11)
            for (column, image) in images[r].enumerated() {
                let x0 = left + Double(column) * (imageWidth + gap)
                var attributes = [("class", "sample"), ("data-row", String(row))]
                if column > 0 { attributes.append(("data-epoch", String(epochs[column - 1] + 1))) }
                svg.open("g", attributes + [("shape-rendering", "crispEdges")])
                // One colour per pixel: grey for 1 channel, RGB from the first three otherwise.
                func color(_ y: Int, _ x: Int) -> String {
                    let base = (y * shape.width + x) * c
                    if c >= 3 {
                        return RGB(r: Double(level(image[base])) / 63, g: Double(level(image[base + 1])) / 63,
                                   b: Double(level(image[base + 2])) / 63).hex
                    }
                    let grey = Double(level(image[base])) / 63
                    return RGB(r: grey, g: grey, b: grey).hex
                }
                for y in 0..<shape.height {
                    var x = 0
                    while x < shape.width {
                        let fill = color(y, x)
                        var run = 1
                        while x + run < shape.width, color(y, x + run) == fill { run += 1 }
                        svg.element("rect", [("class", "pixels"), ("x", SVGWriter.number(x0 + Double(x) * pixel)),
                                             ("y", SVGWriter.number(y0 + Double(y) * pixel)), ("width", SVGWriter.number(Double(run) * pixel)),
                                             ("height", SVGWriter.number(pixel)), ("fill", fill)])
                        x += run
                    }
                }
                svg.close("g")
            }
        }
        return svg.finish()
    }
}
