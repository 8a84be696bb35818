import DDPCore
import Foundation

// MARK: metrics.jsonl, read back

/// A run's metrics.jsonl: one entry per epoch, and the "end" line if the run finished.
public struct RunMetrics: Sendable {
    public typealias Epoch = EpochMetrics
    public typealias End = EndMetrics

    public var epochs: [Epoch]
    public var end: End?

    public init(epochs: [Epoch], end: End?) {
        self.epochs = epochs
        self.end = end
    }

    public static func load(path: String) throws -> RunMetrics {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DDPError(.io, "\(path) does not exist: is this a run directory written by `ddp train`?")
        }
        var epochs: [Epoch] = []
        var end: End?
        for line in try MetricsLog.read(path) {
            switch line {
            case .epoch(let epoch): epochs.append(epoch)
            case .end(let last): end = last
            }
        }
        return RunMetrics(epochs: epochs, end: end)
    }

    public var last: Epoch? { epochs.last }
    public var hasValidation: Bool { epochs.contains { $0.valLoss != nil } }
    public var hasAccuracy: Bool { epochs.contains { $0.accuracy != nil } }

    /// The monitored quantity: the end line's, else val_loss when there is validation data.
    public var monitor: String { end?.monitor ?? (hasValidation ? "val_loss" : "loss") }

    /// The best epoch (1-based): the end line's, else the epoch with the lowest monitored loss.
    public var bestEpoch: Int? {
        if let end, end.bestEpoch > 0 { return end.bestEpoch }
        let values = epochs.compactMap { e in (monitor == "loss" ? e.loss : e.valLoss).map { (e.epoch, $0) } }
        return values.min { $0.1 < $1.1 }?.0
    }

    /// The epoch at which early stopping ended the run, if it did.
    public var earlyStopEpoch: Int? {
        guard let end, end.reason == EndReason.earlyStopping.rawValue else { return nil }
        return end.epochsRun
    }

    /// Lowest val_loss over the epochs.
    public var bestValLoss: Double? { epochs.compactMap(\.valLoss).min() }

    /// Generalization gap at the final epoch: val_loss − loss.
    public var gap: Double? {
        guard let last, let val = last.valLoss, let loss = last.loss else { return nil }
        return val - loss
    }
}

// MARK: Weight statistics

/// Magnitudes of the dense kernels (tensor slots with role `.kernel`): the L2 norm and the share
/// of near-zero weights (|w| < threshold), overall and per layer.
public struct WeightStatistics: Sendable {
    public static let nearZeroThreshold: Float = 1e-3

    public struct Layer: Sendable {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
        public var l2Norm: Double
        public var nearZero: Int
        public var nearZeroShare: Double { values.isEmpty ? 0 : Double(nearZero) / Double(values.count) }
    }

    public var layers: [Layer]
    public var count: Int { layers.reduce(0) { $0 + $1.values.count } }
    public var nearZero: Int { layers.reduce(0) { $0 + $1.nearZero } }
    public var nearZeroShare: Double { count == 0 ? 0 : Double(nearZero) / Double(count) }
    /// sqrt(Σ w²) over every kernel weight.
    public var l2Norm: Double { layers.reduce(0) { $0 + $1.l2Norm * $1.l2Norm }.squareRoot() }

    public init(network: Network) {
        layers = network.tensors.filter { $0.storage == .parameter && $0.role == .kernel }.map { slot in
            let values = Array(UnsafeBufferPointer(start: network.parameters.baseAddress! + slot.offset, count: slot.count))
            var squares = 0.0, nearZero = 0
            for w in values {
                squares += Double(w) * Double(w)
                if abs(w) < Self.nearZeroThreshold { nearZero += 1 }
            }
            return Layer(name: slot.name, shape: slot.shape, values: values, l2Norm: squares.squareRoot(), nearZero: nearZero)
        }
    }
}

// MARK: A run directory, loaded

/// What the plots and reports of a run are made from: its resolved config, metrics and weights.
public struct LoadedRun {
    public let directory: String
    public let config: TrainingConfig
    public let metrics: RunMetrics
    /// The network with `weightsFile` loaded, when that file exists.
    public let network: Network?
    public let weightsFile: String?

    public var name: String { URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent }

    /// - Parameter weights: a file name inside the run directory (model.safetensors, best.safetensors) or a path.
    public init(directory: String, weights: String = "model.safetensors") throws {
        self.directory = directory
        let configPath = directory + "/config.yaml"
        guard let text = try? String(contentsOfFile: configPath, encoding: .utf8) else {
            throw DDPError(.io, "cannot read \(configPath): is \(directory) a run directory written by `ddp train`?")
        }
        config = try TrainingConfig.parse(yaml: text, source: configPath)
        metrics = try RunMetrics.load(path: directory + "/metrics.jsonl")
        // The default falls back to best.safetensors (a run cut short has no model.safetensors);
        // weights the user named must exist.
        let named = weights != "model.safetensors"
        let file = weights.contains("/") ? weights : directory + "/" + weights
        let candidates = named ? [file] : [file, directory + "/best.safetensors"]
        if named && !FileManager.default.fileExists(atPath: file) {
            throw DDPError(.weights, "weights file \(file) not found")
        }
        if let path = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            let network = try Network(config: config.model)
            try network.loadWeights(from: path)
            self.network = network
            weightsFile = path
        } else {
            network = nil
            weightsFile = nil
        }
    }

    public var weightStatistics: WeightStatistics? { network.map(WeightStatistics.init(network:)) }
}

// MARK: Decision regions

/// The model's prediction over a grid spanning the training data, as mlxtend's
/// plot_decision_regions draws it: the class (and its probability) in every cell.
public struct DecisionGrid {
    public enum Kind: Sendable, Equatable {
        /// One output read as P(class 1); 10 levels of 0.1.
        case binary
        /// Softmax over `classes` outputs; the color is the class, shaded in 4 levels of confidence.
        case multiclass(classes: Int)
        /// One real output; 10 levels between the smallest and largest prediction.
        case regression(low: Double, high: Double)
    }

    public let kind: Kind
    public let xRange: ClosedRange<Double>, yRange: ClosedRange<Double>
    public let rows: Int, cols: Int
    /// The model's class per cell (nil for regression), row-major from the bottom row.
    public let predicted: [Int?]
    /// P(class 1) (binary), the top class's probability (multiclass) or the value (regression).
    public let value: [Double]
    /// Training accuracy of the same weights, for the subtitle (nil for regression).
    public let trainAccuracy: Double?

    /// The center of cell (row, col) in data coordinates.
    public func center(row: Int, col: Int) -> (x: Double, y: Double) {
        (xRange.lowerBound + (Double(col) + 0.5) * (xRange.upperBound - xRange.lowerBound) / Double(cols),
         yRange.lowerBound + (Double(row) + 0.5) * (yRange.upperBound - yRange.lowerBound) / Double(rows))
    }

    /// Padded bounds of the training features: the data range plus 8 % on each side.
    public static func range(of values: [Double]) -> ClosedRange<Double> {
        let low = values.min() ?? -1, high = values.max() ?? 1
        let pad = high > low ? (high - low) * 0.08 : 1
        return (low - pad)...(high + pad)
    }

    public init(network: Network, config: TrainingConfig, data: RunData, resolution: Int) throws {
        guard network.inputWidth == 2 else {
            throw DDPError(.config, "a decision-region plot needs a model with 2 input features, this one has \(network.inputWidth)")
        }
        let train = data.train
        let xs = (0..<train.count).map { Double(train.feature(row: $0, column: 0)) }
        let ys = (0..<train.count).map { Double(train.feature(row: $0, column: 1)) }
        xRange = Self.range(of: xs)
        yRange = Self.range(of: ys)
        rows = max(resolution, 2)
        cols = max(resolution, 2)

        // The grid's cells, then the training rows: one prediction gives the map and the train accuracy.
        let cellCount = rows * cols, total = cellCount + train.count
        let inputs = Self.inputs(xRange: xRange, yRange: yRange, rows: rows, cols: cols, data: data)
        let outputs = try Self.predict(inputs, rows: total, network: network, loss: config.loss)
        let read = Self.read(outputs, rows: total, width: network.outputWidth, cellCount: cellCount, loss: config.loss)
        kind = read.kind
        trainAccuracy = Self.accuracy(kind: read.kind, trainPredicted: read.predicted[cellCount...], train: train)
        self.predicted = Array(read.predicted[0..<cellCount])
        self.value = Array(read.value[0..<cellCount])
    }

    /// The model's inputs, two per row: each cell's center (row-major from the bottom row), then
    /// each training row, all normalized as the run's data (x·scale + shift).
    private static func inputs(xRange: ClosedRange<Double>, yRange: ClosedRange<Double>, rows: Int, cols: Int, data: RunData) -> [Float] {
        let train = data.train
        let cellCount = rows * cols, total = cellCount + train.count
        var inputs = [Float](repeating: 0, count: total * 2)
        let (sx, sy) = (data.transform.scale, data.transform.shift)
        for row in 0..<rows {
            for col in 0..<cols {
                let c = (xRange.lowerBound + (Double(col) + 0.5) * (xRange.upperBound - xRange.lowerBound) / Double(cols),
                         yRange.lowerBound + (Double(row) + 0.5) * (yRange.upperBound - yRange.lowerBound) / Double(rows))
                let i = row * cols + col
                inputs[2 * i] = Float(c.0) * sx[0] + sy[0]
                inputs[2 * i + 1] = Float(c.1) * sx[1] + sy[1]
            }
        }
        for row in 0..<train.count {
            let i = cellCount + row
            inputs[2 * i] = train.feature(row: row, column: 0) * sx[0] + sy[0]
            inputs[2 * i + 1] = train.feature(row: row, column: 1) * sx[1] + sy[1]
        }
        return inputs
    }

    /// The network's outputs for `rows` rows of `inputs`, `network.outputWidth` per row.
    private static func predict(_ inputs: [Float], rows total: Int, network: Network, loss: Loss) throws -> [Float] {
        var outputs = [Float](repeating: 0, count: total * network.outputWidth)
        let context = StepContext(communicator: LocalCommunicator(), maxBatch: Evaluator.chunk(for: network.config))
        let evaluator = Evaluator(network: network, loss: loss, context: context)
        try inputs.withUnsafeBufferPointer { input in
            try outputs.withUnsafeMutableBufferPointer { output in
                try evaluator.predict(inputs: input.baseAddress!, rows: total, into: output.baseAddress!)
            }
        }
        return outputs
    }

    /// Each row's class and value as the loss reads the outputs (see `predicted` and `value`);
    /// a regression's color range spans the first `cellCount` rows, the grid's.
    private static func read(_ outputs: [Float], rows total: Int, width: Int, cellCount: Int,
                             loss: Loss) -> (kind: Kind, predicted: [Int?], value: [Double]) {
        switch loss {
        case .binaryCrossEntropy(let fromLogits, _):
            let read = readBinary(outputs, rows: total, width: width, fromLogits: fromLogits)
            return (.binary, read.predicted, read.value)
        case .crossEntropy:
            let read = readMulticlass(outputs, rows: total, width: width)
            return (.multiclass(classes: width), read.predicted, read.value)
        case .meanSquaredError:
            let values = (0..<total).map { Double(outputs[$0 * width]) }
            let cellValues = values[0..<cellCount]
            return (.regression(low: cellValues.min() ?? 0, high: cellValues.max() ?? 1), Array(repeating: nil, count: total), values)
        }
    }

    /// P(class 1) from the first output, and the class it decides.
    private static func readBinary(_ outputs: [Float], rows total: Int, width: Int, fromLogits: Bool) -> (predicted: [Int?], value: [Double]) {
        var predicted: [Int?] = [], value: [Double] = []
        predicted.reserveCapacity(total)
        value.reserveCapacity(total)
        for i in 0..<total {
            let z = outputs[i * width]
            let p = fromLogits ? Double(Activation.sigmoid(z)) : Double(z)
            // The same decision the loss's accuracy uses: logit > 0, or probability > 0.5.
            predicted.append((fromLogits ? z > 0 : z > 0.5) ? 1 : 0)
            value.append(p)
        }
        return (predicted, value)
    }

    /// The top class of the softmax over `width` outputs, and its probability.
    private static func readMulticlass(_ outputs: [Float], rows total: Int, width: Int) -> (predicted: [Int?], value: [Double]) {
        var predicted: [Int?] = [], value: [Double] = []
        predicted.reserveCapacity(total)
        value.reserveCapacity(total)
        for i in 0..<total {
            let z = outputs[(i * width)..<((i + 1) * width)]
            var best = 0, maximum = -Float.infinity
            for (j, v) in z.enumerated() where v > maximum { maximum = v; best = j }
            let sum = z.reduce(0.0) { $0 + exp(Double($1 - maximum)) }
            predicted.append(best)
            value.append(1 / sum)
        }
        return (predicted, value)
    }

    /// The share of training rows whose predicted class is their label (nil for regression or no rows).
    private static func accuracy(kind: Kind, trainPredicted: ArraySlice<Int?>, train: Dataset) -> Double? {
        if case .regression = kind { return nil }
        let start = trainPredicted.startIndex
        let correct = (0..<train.count).filter { trainPredicted[start + $0] == Int(train.labels[$0]) }.count
        return train.count > 0 ? Double(correct) / Double(train.count) : nil
    }

    /// Color level of a cell.
    public func level(_ index: Int) -> Int {
        switch kind {
        case .binary:
            return min(9, max(0, Int(value[index] * 10)))
        case .multiclass(let classes):
            let floor = 1 / Double(max(classes, 1))
            let t = (value[index] - floor) / max(1 - floor, 1e-9)
            return (predicted[index] ?? 0) * 4 + min(3, max(0, Int(t * 4)))
        case let .regression(low, high):
            return min(9, max(0, Int((value[index] - low) / max(high - low, 1e-12) * 10)))
        }
    }
}

// MARK: The plots of a run

/// Writes a run's charts into RUN_DIR/plots as SVG:
/// - `loss.svg`: loss and val_loss per epoch, the best and early-stopping epochs marked;
/// - `accuracy.svg`: accuracy and val_accuracy, same markers (when the loss has an accuracy);
/// - `weights-<layer>.svg`: a histogram of each dense layer's kernel, with the share |w| < 1e-3;
/// - `decision-regions.svg`: for a model with 2 inputs, its prediction over the data's range.
public enum RunPlots {
    public struct Options: Sendable {
        /// Weights to plot: a file name in the run directory, or a path.
        public var weights = "model.safetensors"
        /// Cells per side of the decision-region grid.
        public var resolution = 100
        public init() {}
    }

    /// A written plot: its file name inside plots/ and a short caption.
    public struct Plot: Sendable {
        public var file: String
        public var caption: String
    }

    public static let directoryName = "plots"

    /// Writes every plot of the run and returns them in display order.
    @discardableResult
    public static func write(runDirectory: String, options: Options = Options()) throws -> [Plot] {
        let run = try LoadedRun(directory: runDirectory, weights: options.weights)
        return try write(run: run, options: options)
    }

    @discardableResult
    public static func write(run: LoadedRun, options: Options = Options()) throws -> [Plot] {
        let directory = run.directory + "/" + directoryName
        let manager = FileManager.default
        try RunDirectory.create(directory)
        // Plots of an earlier `ddp plot` (a layer or a chart that no longer applies) go first.
        for file in (try? manager.contentsOfDirectory(atPath: directory)) ?? [] where file.hasSuffix(".svg") {
            try? manager.removeItem(atPath: directory + "/" + file)
        }
        var plots: [Plot] = []
        func save(_ file: String, _ svg: String, _ caption: String) throws {
            try AtomicFile.write(svg, to: directory + "/" + file)
            plots.append(Plot(file: file, caption: caption))
        }
        guard !run.metrics.epochs.isEmpty else {
            throw DDPError(.data, "\(run.directory)/metrics.jsonl has no epoch yet: nothing to plot")
        }
        try save("loss.svg", lossChart(run), "Loss per epoch")
        if let chart = accuracyChart(run) { try save("accuracy.svg", chart, "Accuracy per epoch") }
        if let matrix = run.metrics.end?.testConfusionMatrix, !matrix.isEmpty {
            try save("confusion.svg", ConfusionMatrixChart(matrix: matrix, title: "Test confusion matrix of \(run.name)").svg(),
                     "The test split's confusion matrix, recall per class and precision per predicted class")
        }
        if !run.config.data.augment.isEmpty {
            let data = try RunData(config: run.config)
            if data.imageShape != nil, let augmentation = try Augmentation(config: run.config, data: data) {
                let rows = Array(0..<min(8, data.train.count))
                let grid = try AugmentationGrid(data: data, augmentation: augmentation, rows: rows, epochs: Array(0..<5),
                                                title: "What the model sees: data.augment of \(run.name)")
                try save("augmentation.svg", grid.svg(), "Training images and their augmented versions")
            }
        }
        if let network = run.network {
            let data = network.layers.contains(where: { $0 is Conv2D }) ? try RunData(config: run.config) : nil
            if let data, let image = Self.firstTestImage(data),
               let grid = try ConvFeatureGrid(network: network, image: image, title: "The first convolution of \(run.name)") {
                try save("conv-features.svg", grid.svg(), "The first conv layer's filters and its feature maps of one test image")
            }
            if network.inputWidth == 2 {
                let data = try RunData(config: run.config)
                let grid = try DecisionGrid(network: network, config: run.config, data: data, resolution: options.resolution)
                try save("decision-regions.svg", decisionRegionChart(run: run, grid: grid, data: data),
                         "Decision regions over the training data")
            }
            let stats = WeightStatistics(network: network)
            for layer in stats.layers {
                let stem = layer.name.replacingOccurrences(of: ".weight", with: "")
                try save("weights-\(stem).svg", histogram(layer, run: run),
                         "Kernel weights of layer \(stem) (\(layer.shape.reversed().map(String.init).joined(separator: " → ")))")
            }
        }
        return plots
    }

    /// The first test image (else the first validation or training image), normalized as the
    /// network sees it.
    static func firstTestImage(_ data: RunData) -> [Float]? {
        let dataset = data.test ?? data.validation ?? data.train
        guard dataset.count > 0 else { return nil }
        var image = [Float](repeating: 0, count: dataset.featureCount)
        var label: Float = 0
        let row: [Int32] = [0]
        image.withUnsafeMutableBufferPointer { out in
            row.withUnsafeBufferPointer { dataset.gather(rows: $0.baseAddress!, count: 1, transform: data.transform, inputs: out.baseAddress!, labels: &label) }
        }
        return image
    }

    static func fileName(_ path: String?) -> String {
        path.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "no weights"
    }

    /// Best-epoch and early-stop markers shared by the loss and accuracy charts.
    static func markers(_ metrics: RunMetrics, monitoredSeries: [String]) -> [LineChart.Marker] {
        var markers: [LineChart.Marker] = []
        if let best = metrics.bestEpoch {
            let series = monitoredSeries.contains(metrics.monitor) ? metrics.monitor : nil
            markers.append(.init(name: "best-epoch", x: Double(best), label: "best epoch \(best) (\(metrics.monitor))",
                                 color: Palette.color(2), series: series))
        }
        if let stop = metrics.earlyStopEpoch {
            markers.append(.init(name: "early-stop", x: Double(stop), label: "early stop at epoch \(stop)", color: Palette.color(3)))
        }
        return markers
    }

    static func series(_ metrics: RunMetrics, _ name: String, color: RGB, _ value: (RunMetrics.Epoch) -> Double?) -> LineChart.Series? {
        let points = metrics.epochs.compactMap { e in value(e).map { (x: Double(e.epoch), y: $0) } }
        return points.isEmpty ? nil : LineChart.Series(name: name, color: color, points: points)
    }

    static func subtitle(_ run: LoadedRun) -> String {
        let m = run.metrics
        var parts = ["\(counted(m.epochs.count, "epoch"))"]
        if let end = m.end {
            parts.append(end.reason == EndReason.earlyStopping.rawValue ? "stopped early" : "completed")
            parts.append("\(counted(end.ranks, "rank")), global batch \(end.globalBatch)")
        } else {
            parts.append("unfinished")
        }
        return parts.joined(separator: " · ")
    }

    public static func lossChart(_ run: LoadedRun) -> String {
        let m = run.metrics
        let all = [series(m, "loss", color: Palette.color(0)) { $0.loss },
                   series(m, "val_loss", color: Palette.color(1)) { $0.valLoss }].compactMap { $0 }
        var chart = LineChart(title: "Loss — \(run.name)", subtitle: subtitle(run), xTitle: "epoch", yTitle: "loss",
                              series: all, markers: markers(m, monitoredSeries: all.map(\.name)))
        if let gap = m.gap { chart.subtitle! += String(format: " · final gap val_loss − loss = %.4f", gap) }
        return chart.svg()
    }

    public static func accuracyChart(_ run: LoadedRun) -> String? {
        let m = run.metrics
        guard m.hasAccuracy else { return nil }
        let all = [series(m, "accuracy", color: Palette.color(0)) { $0.accuracy },
                   series(m, "val_accuracy", color: Palette.color(1)) { $0.valAccuracy }].compactMap { $0 }
        var subtitle = subtitle(run)
        if let test = m.end?.testAccuracy { subtitle += String(format: " · test accuracy %.4f", test) }
        return LineChart(title: "Accuracy — \(run.name)", subtitle: subtitle, xTitle: "epoch", yTitle: "accuracy",
                         series: all, markers: markers(m, monitoredSeries: all.map(\.name))).svg()
    }

    public static func histogram(_ layer: WeightStatistics.Layer, run: LoadedRun) -> String {
        let stem = layer.name.replacingOccurrences(of: ".weight", with: "")
        let shape = layer.shape.reversed().map(String.init).joined(separator: " → ")
        var chart = HistogramChart(title: "Kernel weights, layer \(stem) (\(shape)) — \(run.name)",
                                   subtitle: "\(fileName(run.weightsFile)) · \(layer.values.count.grouped) weights",
                                   xTitle: "weight value", values: layer.values)
        chart.highlight = Double(WeightStatistics.nearZeroThreshold)
        chart.annotations = [String(format: "near zero (|w| < 1e-3): %.1f%%", layer.nearZeroShare * 100),
                             "\(layer.nearZero.grouped) of \(layer.values.count.grouped) weights",
                             String(format: "L2 norm %.3f", layer.l2Norm)]
        chart.attributes = [("data-near-zero-share", SVGWriter.value(layer.nearZeroShare)), ("data-layer", layer.name)]
        return chart.svg()
    }

    public static func decisionRegionChart(run: LoadedRun, grid: DecisionGrid, data: RunData) -> String {
        let train = data.train
        let points = (0..<train.count).map {
            RegionChart.Point(x: Double(train.feature(row: $0, column: 0)), y: Double(train.feature(row: $0, column: 1)),
                              label: max(0, Int(train.labels[$0].rounded())))
        }
        let cells = (0..<grid.predicted.count).map { RegionChart.Cell(predicted: grid.predicted[$0], level: grid.level($0)) }
        var subtitle = "\(fileName(run.weightsFile)) · \(grid.cols)×\(grid.rows) grid"
        if let accuracy = grid.trainAccuracy { subtitle += String(format: " · train accuracy %.3f", accuracy) }
        if let val = run.metrics.last?.valAccuracy { subtitle += String(format: " · val %.3f", val) }
        let levelColors: [RGB], pointColors: [RGB]
        var legend: [(label: String, key: Int)] = []
        var colorBar: (title: String, ticks: [(Double, String)])?
        switch grid.kind {
        case .binary:
            let zero = Palette.color(0), one = Palette.color(1)
            levelColors = (0..<10).map { level in
                let p = (Double(level) + 0.5) / 10
                let strength = abs(p - 0.5) * 2
                return RGB.white.mixed(with: p < 0.5 ? zero : one, 0.14 + 0.5 * strength)
            }
            pointColors = [zero, one]
            legend = [("class 0", 0), ("class 1", 1)]
            colorBar = ("P(class 1)", [(0, "0"), (0.5, "0.5"), (1, "1")])
        case .multiclass(let classes):
            levelColors = (0..<classes * 4).map { RGB.white.mixed(with: Palette.color($0 / 4), 0.15 + 0.15 * Double($0 % 4)) }
            pointColors = (0..<classes).map { Palette.color($0) }
            legend = (0..<classes).map { ("class \($0)", $0) }
        case let .regression(low, high):
            levelColors = (0..<10).map { RGB.white.mixed(with: Palette.viridis((Double($0) + 0.5) / 10), 0.75) }
            let classes = max(train.classCount ?? 1, 1)
            pointColors = (0..<max(classes, 1)).map { Palette.color($0) }
            colorBar = ("prediction", [(0, NiceScale.format(low, step: (high - low) / 10)),
                                       (1, NiceScale.format(high, step: (high - low) / 10))])
        }
        var chart = RegionChart(title: "Decision regions — \(run.name)", subtitle: subtitle, xRange: grid.xRange, yRange: grid.yRange,
                                rows: grid.rows, cols: grid.cols, cells: cells, levelColors: levelColors, points: points,
                                pointColors: pointColors, legend: legend)
        chart.colorBar = colorBar
        return chart.svg()
    }
}

extension Int {
    /// 12345 → "12,345".
    var grouped: String {
        let digits = String(magnitude)
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(character)
        }
        return (self < 0 ? "-" : "") + out
    }
}
