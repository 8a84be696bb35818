import DDPCore

/// `confusion.svg`: the test split's confusion matrix from metrics.jsonl's end line, one cell per
/// (true class, predicted class) with its count, shaded by the share of its true class (row
/// normalized, as scikit-learn's ConfusionMatrixDisplay with normalize='true'), so a small class's
/// errors show as clearly as a large one's. Beside each row its recall, under each column its
/// precision (`ClassificationReport`).
public struct ConfusionMatrixChart: Sendable {
    public let matrix: [[Int]]
    public let title: String

    public init(matrix: [[Int]], title: String) {
        self.matrix = matrix
        self.title = title
    }

    public func svg() -> String {
        let classes = matrix.count
        let report = ClassificationReport(confusion: matrix)
        let cell = max(28.0, min(56.0, 560.0 / Double(max(classes, 1))))
        let left = 86.0, top = 92.0
        let width = left + Double(classes) * cell + 90, height = top + Double(classes) * cell + 70
        var svg = SVGWriter(width: width, height: height, title: title, classes: "chart confusion-matrix")
        svg.label(title, x: 10, y: 22, size: 15, weight: "bold")
        svg.label("rows: true class · columns: predicted class · shade: share of the row · right: recall · below: precision",
                  x: 10, y: 44, fill: "#555555")
        svg.label("predicted", x: left + Double(classes) * cell / 2, y: top - 22, anchor: "middle", fill: "#555555")
        svg.label("true", x: 24, y: top + Double(classes) * cell / 2, anchor: "middle", fill: "#555555", rotate: true)
        for c in 0..<classes {
            svg.label(String(c), x: left + (Double(c) + 0.5) * cell, y: top - 6, anchor: "middle")
            svg.label(String(c), x: left - 8, y: top + (Double(c) + 0.5) * cell + 4, anchor: "end")
        }
        for row in 0..<classes {
            let total = max(matrix[row].reduce(0, +), 1)
            for column in 0..<classes {
                let count = matrix[row][column], share = Double(count) / Double(total)
                let fill = RGB(r: 1 - 0.8 * share, g: 1 - 0.55 * share, b: 1 - 0.2 * share)
                let x = left + Double(column) * cell, y = top + Double(row) * cell
                svg.element("rect", [("class", "cell"), ("data-true", String(row)), ("data-predicted", String(column)),
                                     ("data-count", String(count)), ("x", SVGWriter.number(x)), ("y", SVGWriter.number(y)),
                                     ("width", SVGWriter.number(cell)), ("height", SVGWriter.number(cell)),
                                     ("fill", fill.hex), ("stroke", "#ffffff")])
                svg.label(String(count), x: x + cell / 2, y: y + cell / 2 + 4, anchor: "middle", size: cell < 40 ? 10 : 12,
                          fill: share > 0.6 ? "#ffffff" : nil)
            }
            svg.label(String(format: "%.3f", report.classes[row].recall), x: left + Double(classes) * cell + 8,
                      y: top + (Double(row) + 0.5) * cell + 4, size: 11, classes: "recall")
        }
        for column in 0..<classes {
            svg.label(String(format: "%.2f", report.classes[column].precision), x: left + (Double(column) + 0.5) * cell,
                      y: top + Double(classes) * cell + 18, anchor: "middle", size: 10, classes: "precision")
        }
        svg.label(String(format: "macro precision %.4f · recall %.4f · F1 %.4f", report.macroPrecision, report.macroRecall, report.macroF1),
                  x: left, y: top + Double(classes) * cell + 46, fill: "#555555")
        return svg.finish()
    }
}
