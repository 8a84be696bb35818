import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import DDPCore
@testable import DDPReport

/// The plots, reports and comparisons of runs: every SVG is parsed as XML and checked for what
/// it must show (axes, one polyline per series with a point per epoch, markers at the right
/// epochs, decision-region cells colored by the model's own predictions).
final class ReportTests: XCTestCase {
    // MARK: A small trained run, shared by the tests

    static let moonsYAML = """
        seed: 3
        data:
          train: {format: moons, samples: 120, noise: 0.2}
          test: {format: moons, samples: 200, noise: 0.2, seed: 99}
          validation_split: 0.25
          normalize: standardize
        model:
          inputs: 2
          layers:
            - {type: dense, units: 16, activation: relu, kernel_regularizer: {l1: 0.001}}
            - {type: dense, units: 16, activation: relu}
            - {type: dense, units: 1}
        loss: {type: binary_crossentropy, from_logits: true}
        optimizer: {type: adam, lr: 0.02}
        training: {epochs: 30, batch_size: 16}
        checkpoint: {every_epochs: 0, keep: 1}
        """

    nonisolated(unsafe) static var root: URL!
    nonisolated(unsafe) static var moonsRun: String!
    nonisolated(unsafe) static var setupError: Error?

    override class func setUp() {
        super.setUp()
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ReportTests-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            moonsRun = root.appendingPathComponent("moons").path
            try train(yaml: moonsYAML, into: moonsRun)
            try RunPlots.write(runDirectory: moonsRun)
        } catch {
            setupError = error
        }
    }

    override class func tearDown() {
        if let root { try? FileManager.default.removeItem(at: root) }
        super.tearDown()
    }

    override func setUpWithError() throws {
        if let error = Self.setupError { throw error }
    }

    @discardableResult
    static func train(yaml: String, into directory: String, overrides: [String] = []) throws -> TrainingOutcome {
        let config = try TrainingConfig.parse(yaml: yaml, overrides: overrides)
        var options = TrainOptions(runDirectory: directory)
        options.quiet = true
        let trainer = try Trainer(config: config, data: try RunData(config: config), communicator: LocalCommunicator(), options: options)
        return try trainer.run()
    }

    // MARK: XML helpers

    func parse(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> XMLElement {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let document = try XMLDocument(data: data, options: [])
        let root = try XCTUnwrap(document.rootElement(), file: file, line: line)
        XCTAssertEqual(root.localName ?? root.name, "svg", file: file, line: line)
        XCTAssertEqual(root.uri, "http://www.w3.org/2000/svg", file: file, line: line)
        XCTAssertNotNil(attribute(root, "viewBox"), file: file, line: line)
        return root
    }

    /// Every element under `node` (depth first), the node included.
    func elements(_ node: XMLElement) -> [XMLElement] {
        [node] + (node.children ?? []).compactMap { $0 as? XMLElement }.flatMap(elements)
    }

    func name(_ element: XMLElement) -> String { element.localName ?? element.name ?? "" }
    /// (FoundationXML's `attribute(forName:)` misses attributes of elements in a default namespace.)
    func attribute(_ element: XMLElement, _ key: String) -> String? {
        element.attributes?.first { $0.name == key }?.stringValue
    }
    func number(_ element: XMLElement, _ key: String) -> Double? { attribute(element, key).flatMap(Double.init) }
    func hasClass(_ element: XMLElement, _ value: String) -> Bool {
        (attribute(element, "class") ?? "").split(separator: " ").contains { $0 == value }
    }
    func find(_ root: XMLElement, tag: String? = nil, class value: String) -> [XMLElement] {
        elements(root).filter { (tag == nil || name($0) == tag!) && hasClass($0, value) }
    }

    func points(_ polyline: XMLElement) -> [(Double, Double)] {
        (attribute(polyline, "points") ?? "").split(separator: " ").map { pair in
            let parts = pair.split(separator: ",").map { Double($0)! }
            return (parts[0], parts[1])
        }
    }

    /// Checks both axes: an axis line, at least two ticks with labels, and the axis title.
    func assertAxes(_ root: XMLElement, x xTitle: String, y yTitle: String, file: StaticString = #filePath, line: UInt = #line) {
        for (axisClass, title) in [("x-axis", xTitle), ("y-axis", yTitle)] {
            guard let axis = find(root, tag: "g", class: axisClass).first else {
                XCTFail("no \(axisClass)", file: file, line: line)
                continue
            }
            XCTAssertEqual(find(axis, tag: "line", class: "axis-line").count, 1, axisClass, file: file, line: line)
            let ticks = find(axis, tag: "g", class: "tick")
            XCTAssertGreaterThanOrEqual(ticks.count, 2, axisClass, file: file, line: line)
            for tick in ticks {
                let label = elements(tick).first { name($0) == "text" }
                XCTAssertFalse((label?.stringValue ?? "").isEmpty, "\(axisClass) tick without a label", file: file, line: line)
            }
            XCTAssertEqual(find(axis, tag: "text", class: "axis-label").first?.stringValue, title, file: file, line: line)
        }
    }

    // MARK: Curves

    func testLossAndAccuracyCurvesHaveAPointPerEpochAndTheBestEpochMarked() throws {
        let metrics = try RunMetrics.load(path: Self.moonsRun + "/metrics.jsonl")
        let end = try XCTUnwrap(metrics.end)
        XCTAssertEqual(metrics.epochs.count, 30)
        for (file, names, yTitle) in [("loss.svg", ["loss", "val_loss"], "loss"), ("accuracy.svg", ["accuracy", "val_accuracy"], "accuracy")] {
            let root = try parse(Self.moonsRun + "/plots/" + file)
            assertAxes(root, x: "epoch", y: yTitle)
            let polylines = elements(root).filter { name($0) == "polyline" }
            XCTAssertEqual(polylines.compactMap { attribute($0, "data-series") }, names, file)
            for polyline in polylines {
                let pts = points(polyline)
                XCTAssertEqual(pts.count, metrics.epochs.count, "\(file): one point per epoch")
                XCTAssertEqual(pts.map(\.0), pts.map(\.0).sorted(), "\(file): x increases with the epoch")
            }
            let legend = find(root, tag: "g", class: "legend-item").compactMap { attribute($0, "data-key") }
            XCTAssertEqual(legend, names + ["best-epoch"], file)

            // The best-epoch line sits at the x of that epoch's point.
            let marker = try XCTUnwrap(find(root, tag: "line", class: "marker").first { attribute($0, "data-marker") == "best-epoch" })
            XCTAssertEqual(attribute(marker, "data-epoch"), String(end.bestEpoch))
            let lossPoints = points(polylines[0])
            XCTAssertEqual(try XCTUnwrap(number(marker, "x1")), lossPoints[end.bestEpoch - 1].0, accuracy: 0.011)
            XCTAssertTrue(find(root, tag: "line", class: "marker").allSatisfy { attribute($0, "data-marker") != "early-stop" },
                          "the run completed: no early-stop marker")
        }
        // On the loss chart the monitored series gets a dot at its best (lowest) value.
        let root = try parse(Self.moonsRun + "/plots/loss.svg")
        let dot = try XCTUnwrap(find(root, tag: "circle", class: "marker-point").first)
        XCTAssertEqual(attribute(dot, "data-series"), "val_loss")
        let val = points(try XCTUnwrap(elements(root).first { attribute($0, "data-series") == "val_loss" && name($0) == "polyline" }))
        XCTAssertEqual(try XCTUnwrap(number(dot, "cy")), val[end.bestEpoch - 1].1, accuracy: 0.011)
        XCTAssertEqual(val[end.bestEpoch - 1].1, val.map(\.1).max()!, accuracy: 0.011, "lowest val_loss is drawn highest in pixels")
    }

    /// The end line holds the test split's confusion matrix (200 samples, its diagonal the test
    /// accuracy's count), and confusion.svg draws one cell per entry with that count.
    func testConfusionMatrixPlotShowsTheTestSplitsCounts() throws {
        let metrics = try RunMetrics.load(path: Self.moonsRun + "/metrics.jsonl")
        let end = try XCTUnwrap(metrics.end)
        let matrix = try XCTUnwrap(end.testConfusionMatrix)
        XCTAssertEqual(matrix.count, 2)
        XCTAssertEqual(matrix.flatMap { $0 }.reduce(0, +), 200)
        XCTAssertEqual(Double(matrix[0][0] + matrix[1][1]) / 200, try XCTUnwrap(end.testAccuracy), accuracy: 1e-12)
        let root = try parse(Self.moonsRun + "/plots/confusion.svg")
        let cells = find(root, tag: "rect", class: "cell")
        XCTAssertEqual(cells.count, 4)
        for cell in cells {
            let row = Int(attribute(cell, "data-true") ?? "") ?? -1, column = Int(attribute(cell, "data-predicted") ?? "") ?? -1
            XCTAssertEqual(attribute(cell, "data-count"), String(matrix[row][column]))
        }
    }

    func testEarlyStoppingAndBestEpochMarkersSitAtTheirEpochs() throws {
        // A run directory whose metrics say: best val_loss at epoch 4, early stop after epoch 7.
        let directory = Self.root.appendingPathComponent("stopped-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try AtomicFile.write(Self.moonsYAML, to: directory + "/config.yaml")
        let valLosses = [0.9, 0.7, 0.6, 0.5, 0.55, 0.62, 0.7]
        var lines = valLosses.enumerated().map { index, val in
            EpochMetrics(epoch: index + 1, loss: 0.8 - 0.1 * Double(index), accuracy: 0.6 + 0.05 * Double(index), valLoss: val,
                         valAccuracy: 0.7, lr: 0.01, seconds: 0.1, samplesPerSecond: 1000, syncSeconds: 0).json
        }
        lines.append(#"{"event": "end", "reason": "early_stopping", "epochs_run": 7, "best_epoch": 4, "monitor": "val_loss", "best_value": 0.5, "test_loss": null, "test_accuracy": null, "ranks": 2, "global_batch": 32, "seconds": 0.7}"#)
        try AtomicFile.write(lines.joined(separator: "\n") + "\n", to: directory + "/metrics.jsonl")

        let plots = try RunPlots.write(runDirectory: directory)
        XCTAssertEqual(plots.map(\.file), ["loss.svg", "accuracy.svg"], "no weights file: curves only")
        for file in ["loss.svg", "accuracy.svg"] {
            let root = try parse(directory + "/plots/" + file)
            let series = elements(root).filter { name($0) == "polyline" }
            XCTAssertEqual(series.count, 2)
            let x = points(series[0]).map(\.0)
            XCTAssertEqual(x.count, 7)
            let markers = find(root, tag: "line", class: "marker")
            XCTAssertEqual(markers.map { attribute($0, "data-marker") ?? "" }, ["best-epoch", "early-stop"], file)
            XCTAssertEqual(markers.map { attribute($0, "data-epoch") ?? "" }, ["4", "7"], file)
            XCTAssertEqual(try XCTUnwrap(number(markers[0], "x1")), x[3], accuracy: 0.011)
            XCTAssertEqual(try XCTUnwrap(number(markers[1], "x1")), x[6], accuracy: 0.011)
            let labels = find(root, tag: "text", class: "marker-label").map(\.stringValue)
            XCTAssertEqual(labels, ["best epoch 4 (val_loss)", "early stop at epoch 7"])
        }
    }

    // MARK: Weights

    func testKernelHistogramPerDenseLayerWithItsNearZeroShare() throws {
        let network = try Network(config: try TrainingConfig.parse(yaml: Self.moonsYAML).model)
        try network.loadWeights(from: Self.moonsRun + "/model.safetensors")
        let stats = WeightStatistics(network: network)
        XCTAssertEqual(stats.layers.map(\.name), ["0.weight", "1.weight", "2.weight"])
        for layer in stats.layers {
            let stem = layer.name.replacingOccurrences(of: ".weight", with: "")
            let root = try parse(Self.moonsRun + "/plots/weights-\(stem).svg")
            assertAxes(root, x: "weight value", y: "count")
            let bars = find(root, tag: "rect", class: "bar")
            XCTAssertEqual(bars.count, 41)
            XCTAssertEqual(bars.compactMap { number($0, "data-count") }.reduce(0, +), Double(layer.values.count), "every weight in a bin")
            // Each bar's count is the number of weights in [low, high).
            for bar in bars.prefix(41) where bar !== bars.last {
                let low = try XCTUnwrap(number(bar, "data-low")), high = try XCTUnwrap(number(bar, "data-high"))
                let expected = layer.values.filter { Double($0) >= low && Double($0) < high }.count
                XCTAssertEqual(Int(try XCTUnwrap(number(bar, "data-count"))), expected, accuracy: 1)
            }
            let group = try XCTUnwrap(find(root, tag: "g", class: "bars").first)
            let share = try XCTUnwrap(number(group, "data-near-zero-share"))
            let nearZero = layer.values.filter { abs($0) < 1e-3 }.count
            XCTAssertEqual(share, Double(nearZero) / Double(layer.values.count), accuracy: 1e-12)
            let text = find(root, tag: "text", class: "annotation").map(\.stringValue)
            XCTAssertEqual(text.first, String(format: "near zero (|w| < 1e-3): %.1f%%", share * 100))
        }
        // Totals over all kernels.
        let all = stats.layers.flatMap(\.values)
        XCTAssertEqual(stats.count, all.count)
        XCTAssertEqual(stats.l2Norm, all.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot(), accuracy: 1e-6)
    }

    // MARK: Decision regions

    func testDecisionRegionCellsAreTheModelsOwnPredictions() throws {
        let root = try parse(Self.moonsRun + "/plots/decision-regions.svg")
        assertAxes(root, x: "x₁", y: "x₂")
        let regions = try XCTUnwrap(find(root, tag: "g", class: "regions").first)
        let rows = Int(try XCTUnwrap(number(regions, "data-rows"))), cols = Int(try XCTUnwrap(number(regions, "data-cols")))
        XCTAssertEqual(rows, 100)
        XCTAssertEqual(cols, 100)
        let xMin = try XCTUnwrap(number(regions, "data-x-min")), xMax = try XCTUnwrap(number(regions, "data-x-max"))
        let yMin = try XCTUnwrap(number(regions, "data-y-min")), yMax = try XCTUnwrap(number(regions, "data-y-max"))

        // The axes span the training data.
        let config = try TrainingConfig.parse(yaml: Self.moonsYAML)
        let data = try RunData(config: config)
        let xs = (0..<data.train.count).map { Double(data.train.feature(row: $0, column: 0)) }
        let ys = (0..<data.train.count).map { Double(data.train.feature(row: $0, column: 1)) }
        XCTAssertLessThan(xMin, xs.min()!)
        XCTAssertGreaterThan(xMax, xs.max()!)
        XCTAssertLessThan(yMin, ys.min()!)
        XCTAssertGreaterThan(yMax, ys.max()!)
        XCTAssertLessThan(xMax - xMin, (xs.max()! - xs.min()!) * 1.3, "the range is the data's, not much wider")

        // The training points on top, one per sample, at their coordinates.
        let points = find(root, class: "point")
        XCTAssertEqual(points.count, data.train.count)
        for (index, point) in points.enumerated() {
            XCTAssertEqual(try XCTUnwrap(number(point, "data-x")), xs[index], accuracy: 1e-6)
            XCTAssertEqual(Int(try XCTUnwrap(number(point, "data-label"))), Int(data.train.labels[index]))
        }

        // Predictions of every cell centre, computed here the way `ddp eval` does: load the
        // weights into a fresh network, normalize with the run's transform, run inference.
        let network = try Network(config: config.model)
        try network.loadWeights(from: Self.moonsRun + "/model.safetensors")
        let context = StepContext(communicator: LocalCommunicator(), maxBatch: Evaluator.chunk(for: network.config))
        let evaluator = Evaluator(network: network, loss: config.loss, context: context)
        var inputs = [Float](), logits = [Float](repeating: 0, count: rows * cols)
        for row in 0..<rows {
            for col in 0..<cols {
                let x = xMin + (Double(col) + 0.5) * (xMax - xMin) / Double(cols)
                let y = yMin + (Double(row) + 0.5) * (yMax - yMin) / Double(rows)
                inputs.append(Float(x) * data.transform.scale[0] + data.transform.shift[0])
                inputs.append(Float(y) * data.transform.scale[1] + data.transform.shift[1])
            }
        }
        try evaluator.predict(inputs: inputs, rows: rows * cols, into: &logits)
        XCTAssertNotEqual(data.transform.scale[0], 1, "standardized inputs: the transform matters")

        let cells = find(root, tag: "rect", class: "cell")
        XCTAssertGreaterThan(cells.count, rows, "more than one region per row somewhere")
        var covered = [Int](repeating: 0, count: rows * cols)
        var classes = Set<Int>()
        for cell in cells {
            let row = Int(try XCTUnwrap(number(cell, "data-row"))), col = Int(try XCTUnwrap(number(cell, "data-col")))
            let span = Int(try XCTUnwrap(number(cell, "data-span")))
            let predicted = Int(try XCTUnwrap(number(cell, "data-class")))
            let level = Int(try XCTUnwrap(number(cell, "data-level")))
            classes.insert(predicted)
            for c in col..<(col + span) {
                covered[row * cols + c] += 1
                let z = logits[row * cols + c]
                XCTAssertEqual(predicted, z > 0 ? 1 : 0, "cell (\(row), \(c)): logit \(z)")
                let p = 1 / (1 + exp(-Double(z)))
                XCTAssertEqual(level, min(9, Int(p * 10)), accuracy: abs(p * 10 - (p * 10).rounded()) < 1e-4 ? 1 : 0,
                               "cell (\(row), \(c)): P(class 1) = \(p)")
            }
        }
        XCTAssertEqual(covered, [Int](repeating: 1, count: rows * cols), "every cell drawn exactly once")
        XCTAssertEqual(classes, [0, 1])

        // Same class ⇒ same fill; the two classes have different fills.
        var fills: [Int: Set<String>] = [:]
        for cell in cells { fills[Int(number(cell, "data-level")!), default: []].insert(attribute(cell, "fill")!) }
        XCTAssertTrue(fills.values.allSatisfy { $0.count == 1 })
    }

    func testNoDecisionRegionsUnlessTheModelHasTwoInputs() throws {
        var csv = "a,b,c,label\n"
        for i in 0..<40 { csv += "\(i % 7),\(i % 5),\(i % 3),\(i % 2)\n" }
        let csvPath = Self.root.appendingPathComponent("three.csv").path
        try AtomicFile.write(csv, to: csvPath)
        let yaml = """
            seed: 1
            data: {train: {format: csv, path: \(csvPath), label: label}, validation_split: 0.25}
            model: {inputs: 3, layers: [{type: dense, units: 4, activation: relu}, {type: dense, units: 2}]}
            optimizer: {type: sgd, lr: 0.1}
            training: {epochs: 3, batch_size: 8}
            checkpoint: {every_epochs: 0, keep: 1}
            """
        let directory = Self.root.appendingPathComponent("three").path
        try Self.train(yaml: yaml, into: directory)
        let plots = try RunPlots.write(runDirectory: directory)
        XCTAssertEqual(plots.map(\.file), ["loss.svg", "accuracy.svg", "weights-0.svg", "weights-1.svg"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/plots/decision-regions.svg"))
        let config = try TrainingConfig.parse(yaml: yaml)
        XCTAssertThrowsError(try DecisionGrid(network: try Network(config: config.model), config: config,
                                              data: try RunData(config: config), resolution: 10))
    }

    // MARK: Report and comparison

    func testReportPageHoldsConfigSummaryMetricsAndPlots() throws {
        let path = try HTMLReport.write(runDirectory: Self.moonsRun)
        XCTAssertEqual(path, Self.moonsRun + "/report.html")
        let html = try String(contentsOfFile: path, encoding: .utf8)
        for part in ["Final test metrics", "test accuracy", "Summary", "Timing and ranks", "ranks", "global batch",
                     "generalization gap", "Metrics per epoch", "Config", "binary_crossentropy", "near-zero kernel weights"] {
            XCTAssertTrue(html.contains(part), "report lacks \(part)")
        }
        XCTAssertEqual(html.components(separatedBy: "<svg ").count - 1, 7, "loss, accuracy, confusion matrix, regions, 3 histograms inline")
        XCTAssertTrue(html.contains("confusion-matrix"), "the report shows the test confusion matrix")
        XCTAssertFalse(html.contains("<?xml"), "inlined SVG without its XML declaration")
        let metrics = try RunMetrics.load(path: Self.moonsRun + "/metrics.jsonl")
        let epochRows = html.components(separatedBy: "<tr><td class=\"num\">").count - 1
        XCTAssertEqual(epochRows, metrics.epochs.count)
    }

    func testComparisonTabulatesFinishedRuns() throws {
        let directory = Self.root.appendingPathComponent("compare").path
        var rows: [ComparisonRow] = [], runs: [LoadedRun] = []
        var plots: [String: [RunPlots.Plot]] = [:]
        for (name, l1) in [("tiny-l1=0", "0"), ("tiny-l1=0.05", "0.05")] {
            let runDirectory = directory + "/" + name
            try Self.train(yaml: Self.moonsYAML, into: runDirectory,
                           overrides: ["training.epochs=6", "model.layers.0.kernel_regularizer.l1=\(l1)"])
            let run = try LoadedRun(directory: runDirectory)
            plots[name] = try RunPlots.write(run: run)
            runs.append(run)
            rows.append(Comparison.row(variant: name, run: run))
        }
        XCTAssertEqual(rows.map(\.epochsRun), [6, 6])
        for row in rows {
            let metrics = try RunMetrics.load(path: row.runDirectory + "/metrics.jsonl")
            XCTAssertEqual(try XCTUnwrap(row.gap), metrics.epochs.last!.valLoss! - metrics.epochs.last!.loss!, accuracy: 1e-12)
            XCTAssertEqual(row.bestValLoss, metrics.epochs.compactMap(\.valLoss).min())
        }
        let table = Comparison.table(rows)
        XCTAssertTrue(table.hasPrefix("variant"))
        XCTAssertEqual(table.split(separator: "\n").count, 4)
        for column in Comparison.columns { XCTAssertTrue(table.contains(column), column) }

        let index = try Comparison.writeIndex(directory: directory, rows: rows, runs: runs, plots: plots)
        let html = try String(contentsOfFile: index, encoding: .utf8)
        XCTAssertTrue(html.contains("tiny-l1=0.05/plots/decision-regions.svg"))
        XCTAssertTrue(html.contains("val_loss.svg"))
        let chart = try parse(directory + "/val_loss.svg")
        assertAxes(chart, x: "epoch", y: "val_loss")
        let series = elements(chart).filter { name($0) == "polyline" }
        XCTAssertEqual(series.compactMap { attribute($0, "data-series") }, ["tiny-l1=0", "tiny-l1=0.05"])
        XCTAssertTrue(series.allSatisfy { points($0).count == 6 })
    }

    // MARK: Scales

    func testNiceTicks() {
        let loss = NiceScale(0.03, 0.71)
        XCTAssertEqual(loss.lower, 0)
        XCTAssertEqual(loss.upper, 0.8, accuracy: 1e-12)
        XCTAssertEqual(loss.ticks.map(loss.label), ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8"])
        let epochs = NiceScale(1, 50, maxTicks: 8, expand: false, integer: true)
        XCTAssertEqual(epochs.ticks, [10, 20, 30, 40, 50])
        XCTAssertEqual(NiceScale(1, 3, maxTicks: 8, expand: false, integer: true).ticks, [1, 2, 3])
        XCTAssertEqual(NiceScale.format(0.30000000000000004, step: 0.1), "0.3")
        XCTAssertEqual(NiceScale.format(-0.0001, step: 0.1), "0.0")
        XCTAssertGreaterThanOrEqual(NiceScale(5, 5).ticks.count, 2, "a flat series still gets an axis")
    }
}
