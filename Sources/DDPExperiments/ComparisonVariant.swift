import DDPCore
import Foundation

/// One configuration of a comparison: a config file, the `--set` overrides shared by all
/// variants, and this variant's sweep values.
public struct ComparisonVariant: Sendable {
    /// The config file's stem, plus `-key=value` per sweep (e.g. `circles-dropout-rate=0.3`).
    public var name: String
    public var configPath: String
    /// Shared overrides first, then this variant's sweep assignments.
    public var overrides: [String]
    /// This variant's sweep assignments alone (`dotted.key=value`).
    public var sweep: [String]
    /// The resolved config (validated before anything trains).
    public var config: TrainingConfig
}

extension ComparisonVariant {
    /// "dotted.key=v1,v2,…" → the key and its values.
    public static func parseSweep(_ text: String) throws -> (key: String, values: [String]) {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
            throw DDPError(.config, "--sweep '\(text)': expected dotted.key=v1,v2,...")
        }
        let key = String(text[..<equals])
        let values = text[text.index(after: equals)...].split(separator: ",", omittingEmptySubsequences: true)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !values.isEmpty else { throw DDPError(.config, "--sweep \(key): no values after '='") }
        return (key, values)
    }

    /// Every config × every combination of sweep values (repeated --sweep options multiply).
    /// Each config is loaded and validated here, so a typo fails before anything trains.
    public static func variants(configs: [String], overrides: [String] = [], sweeps: [String] = []) throws -> [ComparisonVariant] {
        guard !configs.isEmpty else { throw DDPError(.config, "ddp compare needs at least one config file") }
        let parsed = try sweeps.map(parseSweep)
        var combinations: [[(key: String, value: String)]] = [[]]
        for sweep in parsed {
            combinations = combinations.flatMap { prefix in sweep.values.map { prefix + [(sweep.key, $0)] } }
        }
        var result: [ComparisonVariant] = []
        var used: [String: Int] = [:]
        for path in configs {
            let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            for combination in combinations {
                let assignments = combination.map { "\($0.key)=\($0.value)" }
                var name = stem + combination.map { "-\($0.key.split(separator: ".").last.map(String.init) ?? $0.key)=\($0.value)" }.joined()
                name = sanitize(name)
                used[name, default: 0] += 1
                if used[name]! > 1 { name += "-\(used[name]!)" }
                let config = try TrainingConfig.load(path: path, overrides: overrides + assignments)
                result.append(ComparisonVariant(name: name, configPath: path, overrides: overrides + assignments,
                                                sweep: assignments, config: config))
            }
        }
        return result
    }

    /// A name safe as one path component.
    static func sanitize(_ name: String) -> String {
        String(name.map { $0 == "/" || $0 == "\\" || $0 == " " || $0 == ":" ? "_" : $0 })
    }

    /// Trains this variant in this process (quiet), writing its run directory.
    @discardableResult
    public func train(runDirectory: String, communicator: Communicator = LocalCommunicator()) throws -> TrainingOutcome {
        let data = try RunData(config: config)
        var options = TrainOptions(runDirectory: runDirectory)
        options.quiet = true
        options.overwrite = true            // a comparison retrains its variants from scratch
        let trainer = try Trainer.make(config: config, data: data, communicator: communicator, options: options)
        return try trainer.run()
    }
}
