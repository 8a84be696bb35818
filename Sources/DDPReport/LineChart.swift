import Foundation

/// A line chart of one or more series over a shared x axis (epochs, usually).
public struct LineChart {
    public struct Series {
        public var name: String
        public var label: String
        public var color: RGB
        public var dashed = false
        public var points: [(x: Double, y: Double)]
        public init(name: String, label: String? = nil, color: RGB, dashed: Bool = false, points: [(x: Double, y: Double)]) {
            self.name = name
            self.label = label ?? name
            self.color = color
            self.dashed = dashed
            self.points = points
        }
    }

    /// A vertical line at an x value (the best epoch, the early-stopping epoch).
    public struct Marker {
        public var name: String
        public var x: Double
        public var label: String
        public var color: RGB
        /// The series whose point at `x` gets a dot, if any.
        public var series: String?
        public init(name: String, x: Double, label: String, color: RGB, series: String? = nil) {
            self.name = name
            self.x = x
            self.label = label
            self.color = color
            self.series = series
        }
    }

    public var title: String
    public var subtitle: String?
    public var xTitle: String
    public var yTitle: String
    public var series: [Series]
    public var markers: [Marker] = []
    /// Whole-number x ticks (epochs).
    public var integerX = true
    public var width = 720.0, height = 420.0

    public init(title: String, subtitle: String? = nil, xTitle: String, yTitle: String, series: [Series], markers: [Marker] = []) {
        self.title = title
        self.subtitle = subtitle
        self.xTitle = xTitle
        self.yTitle = yTitle
        self.series = series
        self.markers = markers
    }

    public func svg() -> String {
        let frame = PlotFrame(width: width, height: height, left: 76, right: 24, top: subtitle == nil ? 40 : 52, bottom: 54)
        var svg = SVGWriter(width: width, height: height, title: title, classes: "chart line-chart")
        svg.heading(title, subtitle: subtitle, frame: frame)

        let (xScale, yScale) = scales()
        let xAxis = AxisSpec(scale: xScale, title: xTitle), yAxis = AxisSpec(scale: yScale, title: yTitle)
        let mx = LinearMap(domain: (xScale.lower, xScale.upper), range: (frame.plotLeft, frame.plotRight))
        let my = LinearMap(domain: (yScale.lower, yScale.upper), range: (frame.plotBottom, frame.plotTop))

        svg.grid(frame: frame, x: xAxis, y: yAxis)
        svg.axes(frame: frame, x: xAxis, y: yAxis)
        let pixelPoints = drawSeries(into: &svg, mx: mx, my: my)
        drawMarkers(into: &svg, frame: frame, mx: mx, my: my)
        drawLegend(into: &svg, frame: frame, avoiding: pixelPoints)
        return svg.finish()
    }

    /// The x scale over every point and marker, and the y scale over the finite points.
    private func scales() -> (x: NiceScale, y: NiceScale) {
        let xs = series.flatMap { $0.points.map(\.x) } + markers.map(\.x)
        let ys = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
        let xLow = xs.min() ?? 0, xHigh = xs.max() ?? 1
        let xScale = NiceScale(xLow, max(xHigh, xLow + (integerX ? 1 : 0)), maxTicks: 8, expand: false, integer: integerX)
        // A 3 % margin, so a curve never runs along the frame.
        let yLow = ys.min() ?? 0, yHigh = ys.max() ?? 1, margin = (yHigh - yLow) * 0.03
        let yScale = NiceScale(yLow >= 0 ? max(0, yLow - margin) : yLow - margin, yHigh + margin, maxTicks: 6)
        return (xScale, yScale)
    }

    /// One polyline per series; returns the pixels the lines cover, for the legend to avoid.
    private func drawSeries(into svg: inout SVGWriter, mx: LinearMap, my: LinearMap) -> [(Double, Double)] {
        svg.open("g", [("class", "series-group"), ("fill", "none"), ("stroke-linejoin", "round"), ("stroke-linecap", "round")])
        var pixelPoints: [(Double, Double)] = []
        for item in series {
            let points = item.points.filter { $0.y.isFinite }
            let pixels = points.map { (mx($0.x), my($0.y)) }
            pixelPoints += Self.densify(pixels)
            var attributes: [(String, String)] = [
                ("class", "series"), ("data-series", item.name), ("data-count", String(points.count)),
                ("points", pixels.map { "\(SVGWriter.number($0.0)),\(SVGWriter.number($0.1))" }.joined(separator: " ")),
                ("stroke", item.color.hex), ("stroke-width", "2"),
            ]
            if item.dashed { attributes.append(("stroke-dasharray", "6 4")) }
            svg.element("polyline", attributes)
            if points.count == 1 {   // a single epoch: a polyline of one point is invisible
                svg.element("circle", [("class", "series-dot"), ("cx", SVGWriter.number(pixels[0].0)), ("cy", SVGWriter.number(pixels[0].1)),
                                       ("r", "3"), ("fill", item.color.hex)])
            }
        }
        svg.close("g")
        return pixelPoints
    }

    private func drawMarkers(into svg: inout SVGWriter, frame: PlotFrame, mx: LinearMap, my: LinearMap) {
        guard !markers.isEmpty else { return }
        svg.open("g", [("class", "markers")])
        for (index, marker) in markers.enumerated() {
            drawMarker(marker, index: index, into: &svg, frame: frame, px: mx(marker.x), my: my)
        }
        svg.close("g")
    }

    /// A marker's dashed line and label (the `index`-th, stacked below the earlier ones' labels),
    /// and a dot on its series' point at the marker's x.
    private func drawMarker(_ marker: Marker, index: Int, into svg: inout SVGWriter, frame: PlotFrame, px: Double, my: LinearMap) {
        let epochAttribute = SVGWriter.value(marker.x)
        svg.element("line", [("class", "marker"), ("data-marker", marker.name), ("data-epoch", epochAttribute),
                             ("x1", SVGWriter.number(px)), ("y1", SVGWriter.number(frame.plotTop)),
                             ("x2", SVGWriter.number(px)), ("y2", SVGWriter.number(frame.plotBottom)),
                             ("stroke", marker.color.hex), ("stroke-width", "1.5"), ("stroke-dasharray", "5 4")])
        let rightHalf = px > frame.plotLeft + frame.plotWidth * 0.72
        svg.label(marker.label, x: px + (rightHalf ? -5 : 5), y: frame.plotTop + 14 + Double(index) * 15,
                  anchor: rightHalf ? "end" : "start", size: 11, fill: marker.color.hex, classes: "marker-label",
                  extra: [("data-marker", marker.name), ("stroke", "#ffffff"), ("stroke-width", "3"),
                          ("stroke-opacity", "0.85"), ("paint-order", "stroke")])
        if let name = marker.series, let item = series.first(where: { $0.name == name }),
           let point = item.points.first(where: { $0.x == marker.x && $0.y.isFinite }) {
            svg.element("circle", [("class", "marker-point"), ("data-marker", marker.name), ("data-series", name),
                                   ("data-epoch", epochAttribute), ("cx", SVGWriter.number(px)),
                                   ("cy", SVGWriter.number(my(point.y))), ("r", "5"), ("fill", item.color.hex),
                                   ("stroke", "#ffffff"), ("stroke-width", "1.5")])
        }
    }

    /// Series and markers in the legend, placed in the corner with the fewest line pixels under it.
    private func drawLegend(into svg: inout SVGWriter, frame: PlotFrame, avoiding pixelPoints: [(Double, Double)]) {
        var items = series.map { LegendItem(label: $0.label, swatch: .line(color: $0.color.hex, dash: $0.dashed ? "6 4" : nil, width: 2), key: $0.name) }
        items += markers.map { LegendItem(label: $0.label, swatch: .line(color: $0.color.hex, dash: "5 4", width: 1.5), key: $0.name) }
        let corner = Self.emptiestCorner(for: SVGWriter.legendSize(items), frame: frame, avoiding: pixelPoints,
                                         reserveTop: Double(markers.count) * 15 + 6)
        svg.legend(items, x: corner.x, y: corner.y)
    }

    /// Points along each segment, so a legend is not placed across a line between two epochs.
    static func densify(_ pixels: [(Double, Double)]) -> [(Double, Double)] {
        guard pixels.count > 1 else { return pixels }
        var out: [(Double, Double)] = []
        for i in 1..<pixels.count {
            let (a, b) = (pixels[i - 1], pixels[i])
            let steps = max(1, Int((abs(b.0 - a.0) + abs(b.1 - a.1)) / 6))
            for s in 0..<steps {
                let t = Double(s) / Double(steps)
                out.append((a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t))
            }
        }
        out.append(pixels[pixels.count - 1])
        return out
    }

    /// The corner of the plot area (top-right first) whose legend box covers the fewest data points.
    static func emptiestCorner(for size: (width: Double, height: Double), frame: PlotFrame, avoiding points: [(Double, Double)],
                               reserveTop: Double) -> (x: Double, y: Double) {
        let inset = 10.0
        let right = frame.plotRight - size.width - inset, left = frame.plotLeft + inset
        let top = frame.plotTop + inset + reserveTop, bottom = frame.plotBottom - size.height - inset
        let candidates = [(right, top), (right, bottom), (left, top), (left, bottom)]
        var best = candidates[0], fewest = Int.max
        for candidate in candidates {
            let count = points.filter { p in
                p.0 >= candidate.0 - 4 && p.0 <= candidate.0 + size.width + 4 && p.1 >= candidate.1 - 4 && p.1 <= candidate.1 + size.height + 4
            }.count
            if count < fewest {
                fewest = count
                best = candidate
            }
        }
        return (best.0, best.1)
    }
}
