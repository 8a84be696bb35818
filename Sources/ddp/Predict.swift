import ArgumentParser
import DDPCore
import Foundation

/// `ddp predict`: per-row predictions for new data, labelled or not, as CSV. The input
/// normalization comes from the weights file (see TrainedModel), so no training data is needed.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict every row of a data file with saved weights; writes CSV (class and probabilities, or the value for mse).",
        discussion: """
            The input's format comes from its name (.csv, .npy, IDX's *-ubyte or .idx, each optionally .gz) or --format. \
            Labels are optional: --labels FILE for IDX and .npy, --label COLUMN for a CSV (otherwise every CSV column is a feature); \
            with labels the output gains a last column, label.
            """)

    @Option(help: "The YAML config the weights were trained with.") var config: String
    @Option(help: "A safetensors file: model.safetensors, best.safetensors or a checkpoint's.") var weights: String
    @Option(help: "The data to predict: IDX images, CSV or .npy features.") var input: String
    @Option(help: "Where to write the CSV (default: standard output).") var output: String?
    @Option(help: "idx, csv or npy (default: from the input's name).") var format: String?
    @Option(help: "IDX labels or .npy labels file for --input (optional).") var labels: String?
    @Option(help: "The CSV's label column, by header name or 0-based index (negative: from the end). Without it every column is a feature.") var label: String?
    @Flag(inversion: .prefixedNo, help: "Whether the CSV's first line is a header.") var header = true
    @Flag(name: .customLong("allow-nan"), help: "Score what can be scored: rows with a NaN or infinite feature (or output) get empty prediction fields and a count on stderr, instead of an error.")
    var allowNaN = false
    @OptionGroup var options: ConfigOptions

    func validate() throws {
        if let format, PredictionInput.Format(rawValue: format) == nil {
            throw ValidationError("--format: '\(format)' is not one of idx, csv, npy")
        }
        let resolved = format.flatMap(PredictionInput.Format.init) ?? PredictionInput.format(inferredFrom: input)
        guard let resolved else {
            throw ValidationError("--input \(input): cannot tell the format from the name; give --format idx, csv or npy")
        }
        if resolved == .csv && labels != nil { throw ValidationError("--labels is for IDX and .npy input; a CSV's label is a column: --label NAME_OR_INDEX") }
        if resolved != .csv && label != nil { throw ValidationError("--label names a CSV column; for IDX and .npy input give the labels file with --labels") }
    }

    func run() throws {
        BLASKernels.selectForThisHost()
        // Standard output carries the results: only a warning about the kernels, on stderr.
        BLASKernels.announce(isRoot: JobSession.launcherRank == 0, quiet: true)
        let session = JobSession()
        session.execute {
            let config = try options.load(self.config)
            let model = try TrainedModel(config: config, weights: weights)
            let transform = try model.inputTransform {
                guard JobSession.launcherRank == 0 else { return }
                FileHandle.standardError.write(Data((TrainedModel.refitNotice(weights: weights, normalize: config.data.normalize) + "\n").utf8))
            }
            let resolved = format.flatMap(PredictionInput.Format.init) ?? PredictionInput.format(inferredFrom: input)!
            let csvLabel: CSVLabel = label.map { Int($0).map(CSVLabel.index) ?? .name($0) } ?? .none
            let data = try PredictionInput.load(path: input, format: resolved, labels: labels, csvLabel: csvLabel, header: header,
                                                allowNonFinite: allowNaN)
            // Under mpirun the ranks share the chunks of rows and rank 0 alone writes (or prints).
            var unscored = PredictionWriter.Unscored()
            try session.startCommunicator(watchdogTimeout: config.distributed.timeoutSeconds) { communicator in
                if let output {
                    var text = ""
                    unscored = try PredictionWriter.predict(model, input: data, transform: transform, allowNaN: allowNaN,
                                                            communicator: communicator) { text += $0 }
                    if communicator.isRoot { try AtomicFile.writeOutput(text, to: output) }
                } else {
                    unscored = try PredictionWriter.predict(model, input: data, transform: transform, allowNaN: allowNaN,
                                                            communicator: communicator) { FileHandle.standardOutput.write(Data($0.utf8)) }
                }
            }
            guard JobSession.launcherRank == 0 else { return }
            if unscored.count > 0 {
                let rows = unscored.first.map(String.init).joined(separator: ", ") + (unscored.count > unscored.first.count ? ", …" : "")
                FileHandle.standardError.write(Data(("ddp: note: \(unscored.count) of \(data.data.count) rows left unscored (a NaN or infinite feature or output; "
                    + "empty prediction fields): rows \(rows), counted from 0\n").utf8))
            }
        }
    }
}
