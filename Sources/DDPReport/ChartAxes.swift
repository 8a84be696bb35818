import Foundation

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
