import DDPCore
import Foundation

// A small SVG chart writer: line charts, histograms and decision-region maps with axes, "nice"
// ticks, grid lines and a legend. No dependency: SVG is text.
//
// Every chart is machine-readable as well as viewable: elements carry `class` names and `data-*`
// attributes (series names, epochs, bin edges, grid cells), so tests and scripts can check what
// a chart shows without rendering it.
//
//     <svg class="chart line-chart">
//       <g class="grid">…</g>
//       <g class="axes"><g class="x-axis">…<g class="tick" data-value="10">…</g></g><g class="y-axis">…</g></g>
//       <g class="series-group"><polyline class="series" data-series="val_loss" points="…"/>…</g>
//       <g class="markers"><line class="marker" data-marker="best-epoch" data-epoch="12"/>…</g>
//       <g class="legend">…</g>
//     </svg>

// MARK: Colors

/// An sRGB color with components in 0…1.
public struct RGB: Sendable, Equatable {
    public var r: Double, g: Double, b: Double

    public init(r: Double, g: Double, b: Double) { (self.r, self.g, self.b) = (r, g, b) }

    public init(hex: UInt32) {
        r = Double(hex >> 16 & 0xFF) / 255
        g = Double(hex >> 8 & 0xFF) / 255
        b = Double(hex & 0xFF) / 255
    }

    public static let white = RGB(hex: 0xFFFFFF)

    /// `#rrggbb`.
    public var hex: String {
        func byte(_ v: Double) -> Int { Int((min(1, max(0, v)) * 255).rounded()) }
        return String(format: "#%02x%02x%02x", byte(r), byte(g), byte(b))
    }

    /// self·(1 − t) + other·t.
    public func mixed(with other: RGB, _ t: Double) -> RGB {
        RGB(r: r + (other.r - r) * t, g: g + (other.g - g) * t, b: b + (other.b - b) * t)
    }
}

/// matplotlib's "tab10" colors, the default cycle of most plotting libraries.
public enum Palette {
    public static let tab10: [RGB] = [0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                      0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf].map { RGB(hex: $0) }
    public static func color(_ index: Int) -> RGB { tab10[((index % tab10.count) + tab10.count) % tab10.count] }
    /// viridis at 0…1 (five anchors, linear between them), for continuous values.
    public static func viridis(_ t: Double) -> RGB {
        let anchors: [RGB] = [0x440154, 0x3b528b, 0x21918c, 0x5ec962, 0xfde725].map { RGB(hex: $0) }
        let x = min(1, max(0, t.isFinite ? t : 0)) * Double(anchors.count - 1)
        let i = min(anchors.count - 2, Int(x))
        return anchors[i].mixed(with: anchors[i + 1], x - Double(i))
    }
    static let text = "#222222", axis = "#444444", grid = "#e6e6e6", muted = "#666666"
}

// MARK: Scales

/// Axis bounds and ticks at "nice" numbers (1, 2 or 5 × 10^k apart), as Heckbert's
/// "Nice numbers for graph labels" (Graphics Gems, 1990).
public struct NiceScale: Sendable, Equatable {
    public let lower: Double
    public let upper: Double
    public let step: Double
    public let ticks: [Double]

    /// - Parameters:
    ///   - expand: widen the bounds to the nearest ticks (else keep low…high and put ticks inside).
    ///   - integer: steps of at least 1 and whole numbers only (epochs, counts).
    public init(_ low: Double, _ high: Double, maxTicks: Int = 6, expand: Bool = true, integer: Bool = false) {
        var low = low.isFinite ? low : 0, high = high.isFinite ? high : 1
        if low > high { swap(&low, &high) }
        if high - low <= max(abs(low), abs(high)) * 1e-12 {
            let pad = integer ? 1 : (low == 0 ? 1 : abs(low) * 0.1)
            low -= pad
            high += pad
        }
        var step = Self.niceNumber((high - low) / Double(max(maxTicks - 1, 1)), round: true)
        if integer { step = max(1, step.rounded(.up)) }
        if expand {
            lower = (low / step).rounded(.down) * step
            upper = (high / step).rounded(.up) * step
        } else {
            lower = low
            upper = high
        }
        self.step = step
        let first = Int((lower / step - 1e-9).rounded(.up)), last = Int((upper / step + 1e-9).rounded(.down))
        ticks = first <= last ? (first...min(last, first + 60)).map { Double($0) * step } : []
    }

    /// The nice number near `x`: rounded to 1, 2, 5 or 10 × 10^k (or the ceiling of those).
    public static func niceNumber(_ x: Double, round: Bool) -> Double {
        guard x > 0, x.isFinite else { return 1 }
        let exponent = floor(log10(x))
        let fraction = x / pow(10, exponent)
        let nice: Double
        if round {
            nice = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        } else {
            nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
        }
        return nice * pow(10, exponent)
    }

    /// A tick label with just enough decimals for this scale's step.
    public func label(_ value: Double) -> String { Self.format(value, step: step) }

    public static func format(_ value: Double, step: Double) -> String {
        let magnitude = max(abs(value), step)
        if step < 1e-4 || magnitude >= 1e6 {
            return String(format: "%.1e", value)
        }
        let decimals = max(0, Int(-floor(log10(step) + 1e-9)))
        let text = String(format: "%.\(decimals)f", value)
        return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
    }
}

/// A linear map from a data interval to a pixel interval.
struct LinearMap {
    var domain: (Double, Double)
    var range: (Double, Double)
    func callAsFunction(_ value: Double) -> Double {
        let span = domain.1 - domain.0
        return range.0 + (span == 0 ? 0.5 : (value - domain.0) / span) * (range.1 - range.0)
    }
}

// MARK: SVG text

/// Builds an SVG document as text. Attributes are written in the order given.
struct SVGWriter {
    private(set) var text = ""
    let width: Double, height: Double

    init(width: Double, height: Double, title: String, classes: String) {
        self.width = width
        self.height = height
        text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        text += "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"\(Self.escape(classes))\" width=\"\(Self.number(width))\" height=\"\(Self.number(height))\" viewBox=\"0 0 \(Self.number(width)) \(Self.number(height))\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\" fill=\"\(Palette.text)\">\n"
        element("title", [], text: title)
        element("rect", [("class", "background"), ("x", "0"), ("y", "0"), ("width", Self.number(width)),
                         ("height", Self.number(height)), ("fill", "#ffffff")])
    }

    mutating func open(_ tag: String, _ attributes: [(String, String)] = []) {
        text += "<\(tag)\(Self.attributes(attributes))>\n"
    }

    mutating func close(_ tag: String) { text += "</\(tag)>\n" }

    mutating func element(_ tag: String, _ attributes: [(String, String)], text content: String? = nil) {
        if let content {
            text += "<\(tag)\(Self.attributes(attributes))>\(Self.escape(content))</\(tag)>\n"
        } else {
            text += "<\(tag)\(Self.attributes(attributes))/>\n"
        }
    }

    mutating func finish() -> String {
        text += "</svg>\n"
        return text
    }

    /// A text element; `anchor` is start, middle or end.
    mutating func label(_ content: String, x: Double, y: Double, anchor: String = "start", size: Double? = nil,
                        weight: String? = nil, fill: String? = nil, classes: String? = nil, rotate: Bool = false,
                        extra: [(String, String)] = []) {
        var attributes: [(String, String)] = []
        if let classes { attributes.append(("class", classes)) }
        attributes += [("x", Self.number(x)), ("y", Self.number(y))]
        if anchor != "start" { attributes.append(("text-anchor", anchor)) }
        if let size { attributes.append(("font-size", Self.number(size))) }
        if let weight { attributes.append(("font-weight", weight)) }
        if let fill { attributes.append(("fill", fill)) }
        if rotate { attributes.append(("transform", "rotate(-90 \(Self.number(x)) \(Self.number(y)))")) }
        element("text", attributes + extra, text: content)
    }

    static func attributes(_ list: [(String, String)]) -> String {
        list.map { " \($0.0)=\"\(escape($0.1))\"" }.joined()
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }

    /// A pixel coordinate with at most two decimals.
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let rounded = (value * 100).rounded() / 100
        if rounded == rounded.rounded() { return String(Int(rounded)) }
        var text = String(format: "%.2f", rounded)
        while text.hasSuffix("0") { text.removeLast() }
        return text
    }

    /// A data value for a `data-*` attribute: shortest round-tripping form.
    static func value(_ value: Double) -> String {
        guard value.isFinite else { return "nan" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
        return "\(value)"
    }

    /// Rough width of `text` at `size` px in a sans-serif font (for layout only).
    static func textWidth(_ text: String, size: Double = 12) -> Double {
        Double(text.count) * size * 0.58
    }
}

// MARK: Plot frame and axes

/// Pixel layout of a chart: the canvas and the plot area inside the margins.
struct PlotFrame {
    var width: Double, height: Double
    var left: Double, right: Double, top: Double, bottom: Double
    var plotLeft: Double { left }
    var plotRight: Double { width - right }
    var plotTop: Double { top }
    var plotBottom: Double { height - bottom }
    var plotWidth: Double { plotRight - plotLeft }
    var plotHeight: Double { plotBottom - plotTop }
}

/// One axis: data bounds, tick values and their labels, and the axis title.
struct AxisSpec {
    var lower: Double, upper: Double
    var ticks: [Double]
    var format: (Double) -> String
    var title: String

    init(scale: NiceScale, title: String) {
        lower = scale.lower
        upper = scale.upper
        ticks = scale.ticks
        format = scale.label
        self.title = title
    }

    init(lower: Double, upper: Double, ticks: [Double], format: @escaping (Double) -> String, title: String) {
        self.lower = lower
        self.upper = upper
        self.ticks = ticks
        self.format = format
        self.title = title
    }
}

extension SVGWriter {
    /// Title and optional subtitle above the plot area.
    mutating func heading(_ title: String, subtitle: String?, frame: PlotFrame) {
        label(title, x: frame.plotLeft, y: 20, size: 15, weight: "bold", classes: "chart-title")
        if let subtitle { label(subtitle, x: frame.plotLeft, y: 37, size: 11.5, fill: Palette.muted, classes: "chart-subtitle") }
    }

    /// Grid lines (behind the data) for the ticks of both axes.
    mutating func grid(frame: PlotFrame, x: AxisSpec, y: AxisSpec, vertical: Bool = true) {
        let mx = LinearMap(domain: (x.lower, x.upper), range: (frame.plotLeft, frame.plotRight))
        let my = LinearMap(domain: (y.lower, y.upper), range: (frame.plotBottom, frame.plotTop))
        open("g", [("class", "grid"), ("stroke", Palette.grid), ("stroke-width", "1")])
        if vertical {
            for tick in x.ticks {
                let px = Self.number(mx(tick))
                element("line", [("x1", px), ("y1", Self.number(frame.plotTop)), ("x2", px), ("y2", Self.number(frame.plotBottom))])
            }
        }
        for tick in y.ticks {
            let py = Self.number(my(tick))
            element("line", [("x1", Self.number(frame.plotLeft)), ("y1", py), ("x2", Self.number(frame.plotRight)), ("y2", py)])
        }
        close("g")
    }

    /// Both axes: lines along the bottom and left of the plot area, ticks, tick labels, titles.
    mutating func axes(frame: PlotFrame, x: AxisSpec, y: AxisSpec) {
        let mx = LinearMap(domain: (x.lower, x.upper), range: (frame.plotLeft, frame.plotRight))
        let my = LinearMap(domain: (y.lower, y.upper), range: (frame.plotBottom, frame.plotTop))
        open("g", [("class", "axes")])
        open("g", [("class", "x-axis"), ("data-label", x.title), ("data-min", Self.value(x.lower)), ("data-max", Self.value(x.upper))])
        element("line", [("class", "axis-line"), ("x1", Self.number(frame.plotLeft)), ("y1", Self.number(frame.plotBottom)),
                         ("x2", Self.number(frame.plotRight)), ("y2", Self.number(frame.plotBottom)), ("stroke", Palette.axis)])
        for tick in x.ticks {
            let px = mx(tick)
            open("g", [("class", "tick"), ("data-value", Self.value(tick))])
            element("line", [("x1", Self.number(px)), ("y1", Self.number(frame.plotBottom)), ("x2", Self.number(px)),
                             ("y2", Self.number(frame.plotBottom + 5)), ("stroke", Palette.axis)])
            label(x.format(tick), x: px, y: frame.plotBottom + 18, anchor: "middle", size: 11)
            close("g")
        }
        label(x.title, x: frame.plotLeft + frame.plotWidth / 2, y: frame.plotBottom + 38, anchor: "middle", classes: "axis-label")
        close("g")
        open("g", [("class", "y-axis"), ("data-label", y.title), ("data-min", Self.value(y.lower)), ("data-max", Self.value(y.upper))])
        element("line", [("class", "axis-line"), ("x1", Self.number(frame.plotLeft)), ("y1", Self.number(frame.plotTop)),
                         ("x2", Self.number(frame.plotLeft)), ("y2", Self.number(frame.plotBottom)), ("stroke", Palette.axis)])
        var widest = 0.0
        for tick in y.ticks {
            let py = my(tick)
            let text = y.format(tick)
            widest = max(widest, SVGWriter.textWidth(text, size: 11))
            open("g", [("class", "tick"), ("data-value", Self.value(tick))])
            element("line", [("x1", Self.number(frame.plotLeft - 5)), ("y1", Self.number(py)), ("x2", Self.number(frame.plotLeft)),
                             ("y2", Self.number(py)), ("stroke", Palette.axis)])
            label(text, x: frame.plotLeft - 8, y: py + 4, anchor: "end", size: 11)
            close("g")
        }
        let titleX = max(14, frame.plotLeft - widest - 18)
        label(y.title, x: titleX, y: frame.plotTop + frame.plotHeight / 2, anchor: "middle", classes: "axis-label", rotate: true)
        close("g")
        close("g")
    }
}

// MARK: Legend

/// One legend row: a line sample, a marker shape or a filled swatch, then the text.
struct LegendItem {
    enum Swatch {
        case line(color: String, dash: String?, width: Double)
        case marker(PointShape, fill: String)
        case box(fill: String)
    }
    var label: String
    var swatch: Swatch
    var key: String
}

/// Marker shapes for scatter points (mlxtend's plot_decision_regions uses s, ^, o, x, v).
public enum PointShape: Sendable {
    case square, triangle, circle, diamond, triangleDown

    static func forClass(_ index: Int) -> PointShape {
        [.square, .triangle, .circle, .diamond, .triangleDown][index % 5]
    }
}

extension SVGWriter {
    /// A point marker of `shape` centred on (x, y) with half-size `r`.
    mutating func point(_ shape: PointShape, x: Double, y: Double, r: Double, fill: String, stroke: String = "#1a1a1a",
                        attributes extra: [(String, String)] = []) {
        let paint: [(String, String)] = [("fill", fill), ("stroke", stroke), ("stroke-width", "0.7")]
        switch shape {
        case .circle:
            element("circle", extra + [("cx", Self.number(x)), ("cy", Self.number(y)), ("r", Self.number(r))] + paint)
        case .square:
            let s = r * 0.9
            element("rect", extra + [("x", Self.number(x - s)), ("y", Self.number(y - s)), ("width", Self.number(2 * s)),
                                     ("height", Self.number(2 * s))] + paint)
        case .triangle, .triangleDown:
            let d = shape == .triangle ? 1.0 : -1.0
            let points = [(x, y - 1.15 * r * d), (x - 1.1 * r, y + 0.75 * r * d), (x + 1.1 * r, y + 0.75 * r * d)]
            element("polygon", extra + [("points", points.map { "\(Self.number($0.0)),\(Self.number($0.1))" }.joined(separator: " "))] + paint)
        case .diamond:
            let points = [(x, y - 1.2 * r), (x + r, y), (x, y + 1.2 * r), (x - r, y)]
            element("polygon", extra + [("points", points.map { "\(Self.number($0.0)),\(Self.number($0.1))" }.joined(separator: " "))] + paint)
        }
    }

    /// Size of a legend box for `items`.
    static func legendSize(_ items: [LegendItem]) -> (width: Double, height: Double) {
        let widest = items.map { textWidth($0.label, size: 11.5) }.max() ?? 0
        return (widest + 44, Double(items.count) * 18 + 10)
    }

    /// Draws a legend box with its top-left corner at (x, y).
    mutating func legend(_ items: [LegendItem], x: Double, y: Double) {
        guard !items.isEmpty else { return }
        let size = Self.legendSize(items)
        open("g", [("class", "legend")])
        element("rect", [("x", Self.number(x)), ("y", Self.number(y)), ("width", Self.number(size.width)),
                         ("height", Self.number(size.height)), ("rx", "3"), ("fill", "#ffffff"), ("fill-opacity", "0.9"),
                         ("stroke", "#cccccc")])
        for (index, item) in items.enumerated() {
            let rowY = y + 14 + Double(index) * 18
            open("g", [("class", "legend-item"), ("data-key", item.key)])
            switch item.swatch {
            case let .line(color, dash, width):
                var attributes: [(String, String)] = [("x1", Self.number(x + 8)), ("y1", Self.number(rowY)), ("x2", Self.number(x + 32)),
                                                      ("y2", Self.number(rowY)), ("stroke", color), ("stroke-width", Self.number(width))]
                if let dash { attributes.append(("stroke-dasharray", dash)) }
                element("line", attributes)
            case let .marker(shape, fill):
                point(shape, x: x + 20, y: rowY, r: 4.5, fill: fill)
            case let .box(fill):
                element("rect", [("x", Self.number(x + 12)), ("y", Self.number(rowY - 6)), ("width", "16"), ("height", "12"),
                                 ("fill", fill), ("stroke", "#888888"), ("stroke-width", "0.5")])
            }
            label(item.label, x: x + 38, y: rowY + 4, size: 11.5)
            close("g")
        }
        close("g")
    }
}

// MARK: Line chart

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

        let xs = series.flatMap { $0.points.map(\.x) } + markers.map(\.x)
        let ys = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
        let xLow = xs.min() ?? 0, xHigh = xs.max() ?? 1
        let xScale = NiceScale(xLow, max(xHigh, xLow + (integerX ? 1 : 0)), maxTicks: 8, expand: false, integer: integerX)
        // A 3 % margin, so a curve never runs along the frame.
        let yLow = ys.min() ?? 0, yHigh = ys.max() ?? 1, margin = (yHigh - yLow) * 0.03
        let yScale = NiceScale(yLow >= 0 ? max(0, yLow - margin) : yLow - margin, yHigh + margin, maxTicks: 6)
        let xAxis = AxisSpec(scale: xScale, title: xTitle), yAxis = AxisSpec(scale: yScale, title: yTitle)
        let mx = LinearMap(domain: (xScale.lower, xScale.upper), range: (frame.plotLeft, frame.plotRight))
        let my = LinearMap(domain: (yScale.lower, yScale.upper), range: (frame.plotBottom, frame.plotTop))

        svg.grid(frame: frame, x: xAxis, y: yAxis)
        svg.axes(frame: frame, x: xAxis, y: yAxis)

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

        if !markers.isEmpty {
            svg.open("g", [("class", "markers")])
            for (index, marker) in markers.enumerated() {
                let px = mx(marker.x)
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
            svg.close("g")
        }

        var items = series.map { LegendItem(label: $0.label, swatch: .line(color: $0.color.hex, dash: $0.dashed ? "6 4" : nil, width: 2), key: $0.name) }
        items += markers.map { LegendItem(label: $0.label, swatch: .line(color: $0.color.hex, dash: "5 4", width: 1.5), key: $0.name) }
        let corner = Self.emptiestCorner(for: SVGWriter.legendSize(items), frame: frame, avoiding: pixelPoints,
                                         reserveTop: Double(markers.count) * 15 + 6)
        svg.legend(items, x: corner.x, y: corner.y)
        return svg.finish()
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

// MARK: Histogram

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

// MARK: Region map

/// A map of a function over a 2-D grid (the model's prediction), drawn as colored cells, with
/// scatter points on top. Adjacent cells of one row with the same color are merged into one
/// `rect` (`data-span` cells wide), which keeps the file small without losing a cell.
///
/// Cells: `<g class="regions" data-rows data-cols data-x-min data-x-max data-y-min data-y-max>`
/// holds `<rect class="cell" data-row data-col data-span data-class data-level>`; row 0 is the
/// bottom row (smallest x₂), col 0 the left column. Cell (r, c) is centred on
/// (x-min + (c + ½)·Δx, y-min + (r + ½)·Δy), Δx = (x-max − x-min)/cols.
public struct RegionChart {
    public struct Cell {
        /// Predicted class (nil for a regression output).
        public var predicted: Int?
        /// Color level (cells with the same level have the same color).
        public var level: Int
    }

    public struct Point {
        public var x: Double, y: Double
        public var label: Int
        public init(x: Double, y: Double, label: Int) { (self.x, self.y, self.label) = (x, y, label) }
    }

    public var title: String
    public var subtitle: String?
    public var xTitle = "x₁", yTitle = "x₂"
    public var xRange: ClosedRange<Double>, yRange: ClosedRange<Double>
    public var rows: Int, cols: Int
    /// rows × cols, row-major from the bottom row.
    public var cells: [Cell]
    /// Fill of each level.
    public var levelColors: [RGB]
    public var points: [Point]
    /// Fill of each point label.
    public var pointColors: [RGB]
    public var legend: [(label: String, key: Int)]
    /// A vertical color bar: (title, tick positions 0…1 and labels).
    public var colorBar: (title: String, ticks: [(Double, String)])?
    public var width = 640.0, height = 540.0

    public init(title: String, subtitle: String?, xRange: ClosedRange<Double>, yRange: ClosedRange<Double>, rows: Int, cols: Int,
                cells: [Cell], levelColors: [RGB], points: [Point], pointColors: [RGB], legend: [(label: String, key: Int)]) {
        self.title = title
        self.subtitle = subtitle
        self.xRange = xRange
        self.yRange = yRange
        self.rows = rows
        self.cols = cols
        self.cells = cells
        self.levelColors = levelColors
        self.points = points
        self.pointColors = pointColors
        self.legend = legend
    }

    public func svg() -> String {
        let hasBar = colorBar != nil
        let frame = PlotFrame(width: width, height: height, left: 66, right: hasBar ? 92 : 20, top: subtitle == nil ? 40 : 52, bottom: 54)
        var svg = SVGWriter(width: width, height: height, title: title, classes: "chart decision-regions")
        svg.heading(title, subtitle: subtitle, frame: frame)
        let xScale = NiceScale(xRange.lowerBound, xRange.upperBound, maxTicks: 7, expand: false)
        let yScale = NiceScale(yRange.lowerBound, yRange.upperBound, maxTicks: 7, expand: false)
        let xAxis = AxisSpec(lower: xRange.lowerBound, upper: xRange.upperBound, ticks: xScale.ticks, format: xScale.label, title: xTitle)
        let yAxis = AxisSpec(lower: yRange.lowerBound, upper: yRange.upperBound, ticks: yScale.ticks, format: yScale.label, title: yTitle)
        let mx = LinearMap(domain: (xAxis.lower, xAxis.upper), range: (frame.plotLeft, frame.plotRight))
        let my = LinearMap(domain: (yAxis.lower, yAxis.upper), range: (frame.plotBottom, frame.plotTop))
        let cellWidth = frame.plotWidth / Double(cols), cellHeight = frame.plotHeight / Double(rows)

        svg.open("g", [("class", "regions"), ("shape-rendering", "crispEdges"), ("data-rows", String(rows)), ("data-cols", String(cols)),
                       ("data-x-min", SVGWriter.value(xRange.lowerBound)), ("data-x-max", SVGWriter.value(xRange.upperBound)),
                       ("data-y-min", SVGWriter.value(yRange.lowerBound)), ("data-y-max", SVGWriter.value(yRange.upperBound))])
        for row in 0..<rows {
            var col = 0
            while col < cols {
                let cell = cells[row * cols + col]
                var span = 1
                while col + span < cols, cells[row * cols + col + span].level == cell.level,
                      cells[row * cols + col + span].predicted == cell.predicted { span += 1 }
                // Pixel edges from the grid lines, so neighbouring rects meet without gaps.
                let x0 = frame.plotLeft + Double(col) * cellWidth, x1 = frame.plotLeft + Double(col + span) * cellWidth
                let y1 = frame.plotBottom - Double(row) * cellHeight, y0 = frame.plotBottom - Double(row + 1) * cellHeight
                var attributes: [(String, String)] = [("class", "cell"), ("data-row", String(row)), ("data-col", String(col)),
                                                      ("data-span", String(span))]
                if let predicted = cell.predicted { attributes.append(("data-class", String(predicted))) }
                attributes += [("data-level", String(cell.level)), ("x", SVGWriter.number(x0)), ("y", SVGWriter.number(y0)),
                               ("width", SVGWriter.number(x1 - x0)), ("height", SVGWriter.number(y1 - y0)),
                               ("fill", levelColors[min(max(cell.level, 0), levelColors.count - 1)].hex)]
                svg.element("rect", attributes)
                col += span
            }
        }
        svg.close("g")

        // Ticks and grid lines over the regions, faint, so positions can be read off.
        svg.open("g", [("class", "grid"), ("stroke", "#ffffff"), ("stroke-opacity", "0.45"), ("stroke-width", "1")])
        for tick in xAxis.ticks {
            let px = SVGWriter.number(mx(tick))
            svg.element("line", [("x1", px), ("y1", SVGWriter.number(frame.plotTop)), ("x2", px), ("y2", SVGWriter.number(frame.plotBottom))])
        }
        for tick in yAxis.ticks {
            let py = SVGWriter.number(my(tick))
            svg.element("line", [("x1", SVGWriter.number(frame.plotLeft)), ("y1", py), ("x2", SVGWriter.number(frame.plotRight)), ("y2", py)])
        }
        svg.close("g")

        svg.open("g", [("class", "points"), ("data-count", String(points.count))])
        for point in points {
            let color = pointColors[min(max(point.label, 0), pointColors.count - 1)]
            svg.point(PointShape.forClass(point.label), x: mx(point.x), y: my(point.y), r: points.count > 400 ? 3.2 : 4.2,
                      fill: color.hex, attributes: [("class", "point"), ("data-label", String(point.label)),
                                                    ("data-x", SVGWriter.value(point.x)), ("data-y", SVGWriter.value(point.y))])
        }
        svg.close("g")
        svg.element("rect", [("class", "plot-border"), ("x", SVGWriter.number(frame.plotLeft)), ("y", SVGWriter.number(frame.plotTop)),
                             ("width", SVGWriter.number(frame.plotWidth)), ("height", SVGWriter.number(frame.plotHeight)),
                             ("fill", "none"), ("stroke", Palette.axis)])
        svg.axes(frame: frame, x: xAxis, y: yAxis)

        if let colorBar {
            let barX = frame.plotRight + 22, barWidth = 16.0, barTop = frame.plotTop + 8, barHeight = frame.plotHeight * 0.6
            svg.open("g", [("class", "color-bar")])
            let levels = levelColors.count
            for (level, color) in levelColors.enumerated() {
                let y1 = barTop + barHeight - Double(level) * barHeight / Double(levels)
                let y0 = barTop + barHeight - Double(level + 1) * barHeight / Double(levels)
                svg.element("rect", [("x", SVGWriter.number(barX)), ("y", SVGWriter.number(y0)), ("width", SVGWriter.number(barWidth)),
                                     ("height", SVGWriter.number(y1 - y0 + 0.3)), ("fill", color.hex)])
            }
            svg.element("rect", [("x", SVGWriter.number(barX)), ("y", SVGWriter.number(barTop)), ("width", SVGWriter.number(barWidth)),
                                 ("height", SVGWriter.number(barHeight)), ("fill", "none"), ("stroke", "#888888"), ("stroke-width", "0.5")])
            for (position, text) in colorBar.ticks {
                let y = barTop + barHeight * (1 - position)
                svg.element("line", [("x1", SVGWriter.number(barX + barWidth)), ("y1", SVGWriter.number(y)),
                                     ("x2", SVGWriter.number(barX + barWidth + 4)), ("y2", SVGWriter.number(y)), ("stroke", Palette.axis)])
                svg.label(text, x: barX + barWidth + 7, y: y + 4, size: 10.5)
            }
            svg.label(colorBar.title, x: barX - 4, y: barTop + barHeight + 18, size: 11, classes: "color-bar-title")
            svg.close("g")
        }

        let items = legend.map { LegendItem(label: $0.label, swatch: .marker(PointShape.forClass($0.key), fill: pointColors[min($0.key, pointColors.count - 1)].hex),
                                            key: "class-\($0.key)") }
        if !items.isEmpty {
            let size = SVGWriter.legendSize(items)
            let pixels = points.map { (mx($0.x), my($0.y)) }
            let corner = LineChart.emptiestCorner(for: size, frame: frame, avoiding: pixels, reserveTop: 0)
            svg.legend(items, x: corner.x, y: corner.y)
        }
        return svg.finish()
    }
}
