import Foundation

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
