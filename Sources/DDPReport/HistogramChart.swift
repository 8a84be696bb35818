import Foundation

/// A histogram of values in equal-width bins, with free-text annotation lines in the top corner.
public struct HistogramChart {
    public var title: String
    public var subtitle: String?
    public var xTitle: String
    public var values: [Float]
    public var bins = 41
    /// Shaded band |x| < highlight (the near-zero weights), if set.
    public var highlight: Double?
    public var annotations: [String] = []
    /// `data-*` attributes for the root group of the bars (e.g. the near-zero share).
    public var attributes: [(String, String)] = []
    public var color = Palette.color(0)
    public var width = 560.0, height = 360.0

    public init(title: String, subtitle: String? = nil, xTitle: String, values: [Float]) {
        self.title = title
        self.subtitle = subtitle
        self.xTitle = xTitle
        self.values = values
    }

    /// Bin edges symmetric around 0 (so one bin is centred on 0), and the count in each bin.
    public func binned() -> (edges: [Double], counts: [Int]) {
        let finite = values.lazy.filter(\.isFinite).map { Double($0) }
        let extent = max(finite.map(abs).max() ?? 1, 1e-6)
        let low = -extent, width = 2 * extent / Double(bins)
        var counts = [Int](repeating: 0, count: bins)
        for value in finite {
            counts[min(bins - 1, max(0, Int((value - low) / width)))] += 1
        }
        return ((0...bins).map { low + Double($0) * width }, counts)
    }

    public func svg() -> String {
        let frame = PlotFrame(width: width, height: height, left: 70, right: 20, top: subtitle == nil ? 40 : 52, bottom: 54)
        var svg = SVGWriter(width: width, height: height, title: title, classes: "chart histogram")
        svg.heading(title, subtitle: subtitle, frame: frame)
        let (edges, counts) = binned()
        let xScale = NiceScale(edges.first!, edges.last!, maxTicks: 7, expand: false)
        let yScale = NiceScale(0, Double(max(counts.max() ?? 1, 1)) * 1.18, maxTicks: 6, integer: true)
        let xAxis = AxisSpec(lower: edges.first!, upper: edges.last!, ticks: xScale.ticks, format: xScale.label, title: xTitle)
        let yAxis = AxisSpec(scale: yScale, title: "count")
        let mx = LinearMap(domain: (xAxis.lower, xAxis.upper), range: (frame.plotLeft, frame.plotRight))
        let my = LinearMap(domain: (yAxis.lower, yAxis.upper), range: (frame.plotBottom, frame.plotTop))
        svg.grid(frame: frame, x: xAxis, y: yAxis, vertical: false)
        if let highlight {
            let x0 = mx(-highlight), x1 = mx(highlight)
            let widthPx = max(x1 - x0, 2)
            svg.element("rect", [("class", "near-zero-band"), ("x", SVGWriter.number((x0 + x1) / 2 - widthPx / 2)),
                                 ("y", SVGWriter.number(frame.plotTop)), ("width", SVGWriter.number(widthPx)),
                                 ("height", SVGWriter.number(frame.plotHeight)), ("fill", Palette.color(3).hex), ("fill-opacity", "0.25")])
        }
        svg.open("g", [("class", "bars"), ("data-bins", String(bins)), ("data-total", String(counts.reduce(0, +)))] + attributes)
        for (index, count) in counts.enumerated() {
            let x0 = mx(edges[index]), x1 = mx(edges[index + 1])
            let y = my(Double(count))
            svg.element("rect", [("class", "bar"), ("data-low", SVGWriter.value(edges[index])), ("data-high", SVGWriter.value(edges[index + 1])),
                                 ("data-count", String(count)), ("x", SVGWriter.number(x0 + 0.5)), ("y", SVGWriter.number(y)),
                                 ("width", SVGWriter.number(max(x1 - x0 - 1, 0.5))), ("height", SVGWriter.number(frame.plotBottom - y)),
                                 ("fill", color.hex)])
        }
        svg.close("g")
        svg.axes(frame: frame, x: xAxis, y: yAxis)
        if !annotations.isEmpty {
            svg.open("g", [("class", "annotations")])
            let widest = annotations.enumerated().map { SVGWriter.textWidth($0.element, size: 11.5) + ($0.offset == 0 && highlight != nil ? 16 : 0) }.max() ?? 0
            let boxX = frame.plotRight - widest - 22, boxY = frame.plotTop + 8
            svg.element("rect", [("x", SVGWriter.number(boxX)), ("y", SVGWriter.number(boxY)), ("width", SVGWriter.number(widest + 14)),
                                 ("height", SVGWriter.number(Double(annotations.count) * 16 + 8)), ("rx", "3"), ("fill", "#ffffff"),
                                 ("fill-opacity", "0.9"), ("stroke", "#cccccc")])
            let swatch = highlight == nil ? 0.0 : 16
            if highlight != nil {   // ties the first line to the shaded band
                svg.element("rect", [("x", SVGWriter.number(boxX + 7)), ("y", SVGWriter.number(boxY + 7)), ("width", "11"), ("height", "11"),
                                     ("fill", Palette.color(3).hex), ("fill-opacity", "0.35"), ("stroke", Palette.color(3).hex)])
            }
            for (index, line) in annotations.enumerated() {
                svg.label(line, x: boxX + 7 + (index == 0 ? swatch : 0), y: boxY + 17 + Double(index) * 16, size: 11.5,
                          weight: index == 0 ? "bold" : nil, classes: "annotation")
            }
            svg.close("g")
        }
        return svg.finish()
    }
}
