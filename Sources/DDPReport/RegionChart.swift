import Foundation

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

        drawCells(into: &svg, frame: frame)
        drawGridLines(into: &svg, frame: frame, xPixels: xAxis.ticks.map { mx($0) }, yPixels: yAxis.ticks.map { my($0) })
        drawPoints(into: &svg, mx: mx, my: my)
        svg.element("rect", [("class", "plot-border"), ("x", SVGWriter.number(frame.plotLeft)), ("y", SVGWriter.number(frame.plotTop)),
                             ("width", SVGWriter.number(frame.plotWidth)), ("height", SVGWriter.number(frame.plotHeight)),
                             ("fill", "none"), ("stroke", Palette.axis)])
        svg.axes(frame: frame, x: xAxis, y: yAxis)
        if let colorBar { drawColorBar(colorBar, into: &svg, frame: frame) }
        drawLegend(into: &svg, frame: frame, mx: mx, my: my)
        return svg.finish()
    }

    /// The grid's cells, row by row, a run of equal cells in one row as one `rect`.
    private func drawCells(into svg: inout SVGWriter, frame: PlotFrame) {
        let cellWidth = frame.plotWidth / Double(cols), cellHeight = frame.plotHeight / Double(rows)
        svg.open("g", [("class", "regions"), ("shape-rendering", "crispEdges"), ("data-rows", String(rows)), ("data-cols", String(cols)),
                       ("data-x-min", SVGWriter.value(xRange.lowerBound)), ("data-x-max", SVGWriter.value(xRange.upperBound)),
                       ("data-y-min", SVGWriter.value(yRange.lowerBound)), ("data-y-max", SVGWriter.value(yRange.upperBound))])
        for row in 0..<rows {
            var col = 0
            while col < cols {
                let cell = cells[row * cols + col]
                let span = runLength(row: row, col: col)
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
    }

    /// How many cells from (row, col) rightwards share its level and class.
    private func runLength(row: Int, col: Int) -> Int {
        let cell = cells[row * cols + col]
        var span = 1
        while col + span < cols, cells[row * cols + col + span].level == cell.level,
              cells[row * cols + col + span].predicted == cell.predicted { span += 1 }
        return span
    }

    /// Grid lines at the ticks' pixel positions, over the regions, faint, so positions can be read off.
    private func drawGridLines(into svg: inout SVGWriter, frame: PlotFrame, xPixels: [Double], yPixels: [Double]) {
        svg.open("g", [("class", "grid"), ("stroke", "#ffffff"), ("stroke-opacity", "0.45"), ("stroke-width", "1")])
        for x in xPixels {
            let px = SVGWriter.number(x)
            svg.element("line", [("x1", px), ("y1", SVGWriter.number(frame.plotTop)), ("x2", px), ("y2", SVGWriter.number(frame.plotBottom))])
        }
        for y in yPixels {
            let py = SVGWriter.number(y)
            svg.element("line", [("x1", SVGWriter.number(frame.plotLeft)), ("y1", py), ("x2", SVGWriter.number(frame.plotRight)), ("y2", py)])
        }
        svg.close("g")
    }

    private func drawPoints(into svg: inout SVGWriter, mx: LinearMap, my: LinearMap) {
        svg.open("g", [("class", "points"), ("data-count", String(points.count))])
        for point in points {
            let color = pointColors[min(max(point.label, 0), pointColors.count - 1)]
            svg.point(PointShape.forClass(point.label), x: mx(point.x), y: my(point.y), r: points.count > 400 ? 3.2 : 4.2,
                      fill: color.hex, attributes: [("class", "point"), ("data-label", String(point.label)),
                                                    ("data-x", SVGWriter.value(point.x)), ("data-y", SVGWriter.value(point.y))])
        }
        svg.close("g")
    }

    /// A vertical bar of the level colors right of the plot, bottom level at the bottom, with its ticks and title.
    private func drawColorBar(_ colorBar: (title: String, ticks: [(Double, String)]), into svg: inout SVGWriter, frame: PlotFrame) {
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

    /// The point classes' legend, in the corner with the fewest points under it (none without a legend).
    private func drawLegend(into svg: inout SVGWriter, frame: PlotFrame, mx: LinearMap, my: LinearMap) {
        let items = legend.map { LegendItem(label: $0.label, swatch: .marker(PointShape.forClass($0.key), fill: pointColors[min($0.key, pointColors.count - 1)].hex),
                                            key: "class-\($0.key)") }
        guard !items.isEmpty else { return }
        let size = SVGWriter.legendSize(items)
        let pixels = points.map { (mx($0.x), my($0.y)) }
        let corner = LineChart.emptiestCorner(for: size, frame: frame, avoiding: pixels, reserveTop: 0)
        svg.legend(items, x: corner.x, y: corner.y)
    }
}
