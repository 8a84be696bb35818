import DDPCore

/// What the first convolution learned, for `ddp plot`: each filter as a small image (its
/// weights averaged over the input channels, on a blue–white–red scale centred at 0, as
/// Keras tutorials draw first-layer filters), and the feature maps that the filters make of one
/// test image (the convolution's output, before any BatchNorm or activation), grey from each
/// map's smallest to largest value.
///
/// SVG structure for scripts: `g.filter[data-filter]` and `g.feature-map[data-filter]`, each
/// holding `rect.pixels`; `g.input` the image.
public struct ConvFeatureGrid {
    public let title: String
    /// The first conv layer's place in `Network.layers` and its geometry.
    public let layerIndex: Int
    public let geometry: ConvGeometry
    /// Per filter, kh × kw weights averaged over the input channels, row-major.
    public let filters: [[Float]]
    /// The image (H × W × C as the network sees it) and, per filter shown, its OH × OW map.
    public let image: [Float]
    public let featureMaps: [[Float]]

    /// nil when the network has no convolution. `image`: one input row, normalized as the
    /// network sees it. `maps`: how many feature maps to show.
    public init?(network: Network, image: [Float], maps: Int = 8, title: String) throws {
        guard let index = network.layers.firstIndex(where: { $0 is Conv2D }), let conv = network.layers[index] as? Conv2D else { return nil }
        layerIndex = index
        geometry = conv.geometry
        self.title = title
        self.image = image
        let slot = network.tensors.first { $0.name == "\(conv.configIndex).weight" }!
        let kernel = network.parameters.baseAddress! + slot.offset
        let g = conv.geometry, channels = g.input.channels, taps = g.kernelHeight * g.kernelWidth
        filters = (0..<g.output.channels).map { filter in
            (0..<taps).map { tap in
                var sum: Float = 0
                for c in 0..<channels { sum += kernel[(filter * taps + tap) * channels + c] }
                return sum / Float(channels)
            }
        }
        network.reserve(maxBatch: 1)
        let context = StepContext(communicator: LocalCommunicator(), maxBatch: 1)
        network.input.baseAddress!.update(from: image, count: image.count)
        try network.forward(batch: 1, context: context)
        let output = network.output(ofLayer: index), outputChannels = g.output.channels
        featureMaps = (0..<min(maps, outputChannels)).map { filter in
            (0..<g.positions).map { output[$0 * outputChannels + filter] }
        }
    }

    public func svg() -> String {
        let g = geometry
        let filterPixel = max(3.0, min(12.0, 48.0 / Double(max(g.kernelHeight, g.kernelWidth))))
        let mapPixel = max(1.0, min(4.0, 96.0 / Double(max(g.output.height, g.output.width))))
        let inputPixel = max(1.0, min(4.0, 96.0 / Double(max(g.input.height, g.input.width))))
        let gap = 8.0, left = 10.0
        let perRow = 16
        let filterRows = (filters.count + perRow - 1) / perRow
        let filterBlock = Double(g.kernelWidth) * filterPixel + gap
        let filterTop = 64.0, mapTop = filterTop + Double(filterRows) * (Double(g.kernelHeight) * filterPixel + gap) + 36
        let mapWidth = Double(g.output.width) * mapPixel, inputWidth = Double(g.input.width) * inputPixel
        let width = max(left + Double(min(filters.count, perRow)) * filterBlock,
                        left + inputWidth + gap * 3 + Double(featureMaps.count) * (mapWidth + gap)) + 10
        let height = mapTop + max(Double(g.output.height) * mapPixel, Double(g.input.height) * inputPixel) + 20
        var svg = SVGWriter(width: width, height: height, title: title, classes: "chart conv-features")
        svg.label(title, x: 10, y: 22, size: 15, weight: "bold")
        svg.label("the first conv layer's \(filters.count) filters (mean over \(g.input.channels) input "
                  + (g.input.channels == 1 ? "channel" : "channels") + "; blue < 0 < red)", x: 10, y: 44, fill: "#555555")
        let limit = max(filters.flatMap { $0 }.map { abs($0) }.max() ?? 1, 1e-12)
        for (f, filter) in filters.enumerated() {
            let x0 = left + Double(f % perRow) * filterBlock
            let y0 = filterTop + Double(f / perRow) * (Double(g.kernelHeight) * filterPixel + gap)
            Self.draw(&svg, filter, rows: g.kernelHeight, columns: g.kernelWidth, x: x0, y: y0, pixel: filterPixel,
                      group: [("class", "filter"), ("data-filter", String(f))]) { value in
                let t = Double(value / limit)
                return t >= 0 ? RGB(r: 1, g: 1 - t, b: 1 - t) : RGB(r: 1 + t, g: 1 + t, b: 1)
            }
        }
        svg.label("a test image and the feature maps of the first \(featureMaps.count) filters", x: 10, y: mapTop - 10, fill: "#555555")
        let inputGrey = Array(stride(from: 0, to: image.count, by: g.input.channels).map { image[$0] })
        Self.draw(&svg, inputGrey, rows: g.input.height, columns: g.input.width, x: left, y: mapTop, pixel: inputPixel,
                  group: [("class", "input")], color: Self.grey(inputGrey))
        for (f, map) in featureMaps.enumerated() {
            let x0 = left + inputWidth + gap * 3 + Double(f) * (mapWidth + gap)
            Self.draw(&svg, map, rows: g.output.height, columns: g.output.width, x: x0, y: mapTop, pixel: mapPixel,
                      group: [("class", "feature-map"), ("data-filter", String(f))], color: Self.grey(map))
        }
        return svg.finish()
    }

    /// Grey from the values' smallest (black) to largest (white), quantized to 1/32.
    private static func grey(_ values: [Float]) -> (Float) -> RGB {
        let low = values.min() ?? 0, high = values.max() ?? 1, span = high > low ? high - low : 1
        return { value in
            let level = (Double((value - low) / span) * 32).rounded() / 32
            return RGB(r: level, g: level, b: level)
        }
    }

    /// One image as runs of equal colour per row.
    private static func draw(_ svg: inout SVGWriter, _ values: [Float], rows: Int, columns: Int, x x0: Double, y y0: Double,
                             pixel: Double, group: [(String, String)], color: (Float) -> RGB) {
        svg.open("g", group + [("shape-rendering", "crispEdges")])
        for y in 0..<rows {
            var x = 0
            while x < columns {
                let fill = color(values[y * columns + x]).hex
                var run = 1
                while x + run < columns, color(values[y * columns + x + run]).hex == fill { run += 1 }
                svg.element("rect", [("class", "pixels"), ("x", SVGWriter.number(x0 + Double(x) * pixel)),
                                     ("y", SVGWriter.number(y0 + Double(y) * pixel)), ("width", SVGWriter.number(Double(run) * pixel)),
                                     ("height", SVGWriter.number(pixel)), ("fill", fill)])
                x += run
            }
        }
        svg.close("g")
    }
}
