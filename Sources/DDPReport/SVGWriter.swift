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
