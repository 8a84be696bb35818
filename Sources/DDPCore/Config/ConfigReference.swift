import Yams

/// The keys one parse read, with the type and default each accessor of `ConfigSection` was
/// called with. Active only inside `ConfigReference`'s probes (a task-local, nil otherwise), so
/// a training run's parse records nothing.
final class ConfigKeyRecorder: @unchecked Sendable {   // one probe parse at a time, on one thread
    @TaskLocal static var current: ConfigKeyRecorder?

    struct Key {
        var path: String
        var type: String?
        var fallback: String?
    }

    private(set) var keys: [Key] = []
    private var positions: [String: Int] = [:]

    /// The first type and the first default noted for a key win: an accessor with a default
    /// notes before the plain accessor it calls.
    func note(_ path: String, type: String? = nil, default fallback: String? = nil) {
        if let position = positions[path] {
            if keys[position].type == nil { keys[position].type = type }
            if keys[position].fallback == nil { keys[position].fallback = fallback }
            return
        }
        positions[path] = keys.count
        keys.append(Key(path: path, type: type, fallback: fallback))
    }

    static func number(in range: ClosedRange<Double>?) -> String {
        guard let range else { return "number" }
        return "number in [\(text(range.lowerBound)), \(text(range.upperBound))]"
    }

    static func text(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? "\(Int(value))" : "\(value)"
    }

    /// A float default as written in the source (`0.1`, not 0.10000000149011612).
    static func text(_ value: Float) -> String {
        value == value.rounded() && abs(value) < 1e7 ? "\(Int(value))" : "\(value)"
    }
}

/// docs/CONFIG.md: every config key with its type and default, read from the parser itself.
/// Each probe parses a small config with the recorder on; a key the parser reports missing is
/// added (and marked required) until the parse succeeds. The variants of a `type` or `format`
/// key are the ones its own error message lists, so a new layer kind, transform or schedule
/// appears here without an edit.
public enum ConfigReference {
    /// Every probe starts from this config; `dataFiller` and `layerFiller` make it valid where a
    /// probe does not set the data source or the first layer itself.
    static let base = """
        data: {train: {}, validation_split: 0.5}
        model: {inputs: 2, layers: [{}]}
        optimizer: {}
        training: {}
        schedule: {}
        early_stopping: {}
        checkpoint: {}
        distributed: {}
        logging: {}
        """
    static let dataFiller = ["data.train.format=moons"]
    static let layerFiller = ["model.layers.0.type=dense", "model.layers.0.units=1"]
    /// The input of each layer kind's probe: a 2 × 2 image, which the kinds that take images
    /// (pooling, flatten) need and the others read as 4 features.
    static let imageInput = "model.inputs=[2, 2, 1]"
    /// Keys whose value becomes another key's default: probed again with these values, a
    /// default that follows them is shown as "= key".
    static let context = [("seed", "7"), ("training.epochs", "13")]

    /// Keys read as a raw YAML node by a parser of their own (a list, a shape, a Keras factor,
    /// a constraint's presence), or that take more than their accessor says: stated here.
    static let customTypes = [
        "data.train": "a data source (below)", "data.validation": "a data source (below)",
        "data.test": "a data source (below)", "data.image_shape": "list [height, width] or [height, width, channels]",
        "data.augment": "list of transforms (below)", "model.layers": "list of layers (below)",
        "model.inputs": "integer (features), or list [height, width, channels]",
        "loss": "a name, or a mapping (below)", "data.train.label": "column name, or index (−1 or absent: the last column)",
        "model.layers[0].kernel_constraint.max_norm": "number > 0", "model.layers[0].kernel_constraint.non_neg": "true",
        "model.layers[0].kernel_constraint.unit_norm": "true",
    ]
    /// Defaults the probes cannot see: they come from the data.
    static let customDefaults = [
        "model.inputs": "the data's image shape (data.image_shape, or the IDX file's header); required without one",
    ]
    static let factorType = "number f (the range [−f, f]) or list [lower, upper]"

    static func customType(_ path: String) -> String? {
        if let type = customTypes[path] { return type }
        guard path.hasPrefix("data.augment[0].") else { return nil }
        switch path.dropFirst(16) {
        case "factor", "height_factor", "width_factor": return factorType
        case "scale", "ratio": return "list [lower, upper]"
        case "value": return "number, or random"
        default: return nil
        }
    }

    struct Recording {
        var keys: [ConfigKeyRecorder.Key]
        var required: Set<String>
        /// The overrides that made the parse succeed, required keys included.
        var overrides: [String]
    }

    /// Parses `base` with `overrides` and whatever required keys the parser asks for, each
    /// given the first of `probeValues` it accepts.
    static func record(_ overrides: [String]) throws -> Recording {
        var added: [(key: String, value: Int)] = []
        for _ in 0..<16 {
            let recorder = ConfigKeyRecorder()
            let all = overrides + added.map { overridePath($0.key) + "=" + probeValues[$0.value] }
            do {
                try ConfigKeyRecorder.$current.withValue(recorder) {
                    _ = try TrainingConfig.parse(yaml: base, source: "probe", overrides: all)
                }
                return Recording(keys: recorder.keys, required: Set(added.map(\.key)), overrides: all)
            } catch let error as DDPError {
                let (key, missing) = askedFor(error.message)
                if missing, let key, !added.contains(where: { $0.key == key }) {
                    added.append((key, 0))
                } else if let key, let position = added.firstIndex(where: { $0.key == key }), added[position].value + 1 < probeValues.count {
                    added[position].value += 1
                } else if let key, !missing, error.message.contains(": expected "), !added.contains(where: { $0.key == key }) {
                    added.append((key, 0))
                } else {
                    throw DDPError(.config, "config reference: the probe \(overrides) fails: \(error.message)")
                }
            }
        }
        throw DDPError(.config, "config reference: the probe \(overrides) still fails after 16 added keys")
    }

    /// Values tried, in order, for a required key: most take 1; a zoom factor needs less.
    static let probeValues = ["1", "0.5"]

    /// The key a parse error names: "missing key 'K'" (missing: true), or "K: …" (a value
    /// refused, or a default this variant does not accept, as schedule type warmup's
    /// warmup_steps: "K: expected …").
    static func askedFor(_ message: String) -> (key: String?, missing: Bool) {
        // The parser names the source, or the --set it blames: "probe: …", "--set K=V (over probe): …".
        var text = message.hasPrefix("probe: ") ? String(message.dropFirst(7)) : message
        if text.hasPrefix("--set "), let source = text.range(of: " (over probe): ") { text = String(text[source.upperBound...]) }
        if text.hasPrefix("missing key '"), let end = text.dropFirst(13).firstIndex(of: "'") {
            return (String(text.dropFirst(13)[..<end]), true)
        }
        if let colon = text.range(of: ": ") {
            let key = String(text[..<colon.lowerBound])
            if !key.contains(" ") { return (key, false) }
        }
        return (nil, false)
    }

    /// Whether the parse of `recording` fails, naming `key`, once `key` is null (absent).
    static func isRequired(_ key: String, in recording: Recording) -> Bool {
        do {
            _ = try TrainingConfig.parse(yaml: base, source: "probe", overrides: recording.overrides + [overridePath(key) + "=null"])
            return false
        } catch let error as DDPError {
            return askedFor(error.message).key == key
        } catch {
            return false
        }
    }

    /// "model.layers[0].units" → "model.layers.0.units", as --set writes it.
    static func overridePath(_ key: String) -> String {
        key.replacingOccurrences(of: "[", with: ".").replacingOccurrences(of: "]", with: "")
    }

    /// The values a selector key accepts, from the error its parser gives for a value it does not.
    static func variants(_ overrides: (String) -> [String]) throws -> [String] {
        do {
            _ = try TrainingConfig.parse(yaml: base, source: "probe", overrides: overrides("no_such_value"))
        } catch let error as DDPError {
            if let list = error.message.range(of: "is not one of ") {
                return error.message[list.upperBound...].components(separatedBy: ", ")
            }
            throw DDPError(.config, "config reference: no list of values in '\(error.message)'")
        }
        throw DDPError(.config, "config reference: '\(overrides("no_such_value"))' parsed; expected an error listing the values")
    }

    struct Variant {
        var label: String
        var overrides: [String]
        /// The key that picks the variant (a layer's `type`): required where it has no default.
        var selector: String? = nil
    }

    /// One table: the keys directly under `prefix` that the variants' parses read.
    struct Group {
        var title: String
        var text: String
        var prefix: String
        var variants: [Variant]
        /// One table with a default column per variant, instead of one table per variant.
        var combined = false
    }

    struct Row {
        var name: String
        var type: String?
        var fallback: String
    }

    /// The rows of one variant: each key under `prefix` (not deeper), its type and default.
    static func rows(prefix: String, _ variant: Variant) throws -> [Row] {
        let overrides = variant.overrides
        var plain = try record(overrides)
        if let selector = variant.selector { plain.required.insert(selector) }
        let shifted = try record(context.map { "\($0.0)=\($0.1)" } + overrides)
        let shiftedDefaults = Dictionary(shifted.keys.map { ($0.path, $0.fallback) }, uniquingKeysWith: { first, _ in first })
        return plain.keys.compactMap { key in
            guard key.path.hasPrefix(prefix) else { return nil }
            let name = String(key.path.dropFirst(prefix.count))
            guard !name.isEmpty, !name.contains("."), !name.contains("[") else { return nil }
            var fallback = key.fallback.map { "`\($0)`" } ?? "—"
            if plain.required.contains(key.path) && (key.fallback == nil || key.path != variant.selector)
                || key.fallback == nil && isRequired(key.path, in: plain) {
                fallback = "required"
            } else if let moved = shiftedDefaults[key.path] ?? nil, moved != key.fallback,
                      let source = context.first(where: { $0.1 == moved }) {
                fallback = "= `\(source.0)`"
            }
            return Row(name: name, type: customType(key.path) ?? key.type, fallback: customDefaults[key.path] ?? fallback)
        }
    }

    static func groups() throws -> [Group] {
        let filled = dataFiller + layerFiller
        let section = { (name: String, text: String) in
            Group(title: "`\(name)`", text: text, prefix: name + ".", variants: [Variant(label: "", overrides: filled)])
        }
        let formats = try variants { ["data.train.format=\($0)"] + layerFiller }
        let kinds = try variants { dataFiller + ["model.layers.0.type=\($0)"] }
        let transforms = try variants { filled + ["data.augment=[{type: \($0)}]"] }
        let optimizers = try variants { filled + ["optimizer.type=\($0)"] }
        let schedules = try variants { filled + ["schedule.type=\($0)"] }
        let losses = try variants { filled + ["loss.type=\($0)"] }
        let layer = "model.layers[0]."
        return [
            Group(title: "Top level", text: "Sections and keys at the top of a config file.", prefix: "",
                  variants: [Variant(label: "", overrides: filled)]),
            section("data", "Where the samples come from and what happens to them before the model."),
            Group(title: "`data.train`, `data.validation`, `data.test`: one table per `format`",
                  text: "A data source. `data.validation` and `data.test` take the same keys.", prefix: "data.train.",
                  variants: formats.map { Variant(label: "format: \($0)", overrides: ["data.train.format=\($0)"] + layerFiller,
                                                     selector: "data.train.format") }),
            Group(title: "`data.augment[]`: one table per `type`",
                  text: "A list of transforms, applied in order to training batches; an entry may be the bare name for its defaults.",
                  prefix: "data.augment[0].",
                  variants: transforms.map { Variant(label: "type: \($0)", overrides: filled + ["data.augment=[{type: \($0)}]"],
                                                          selector: "data.augment[0].type") }),
            section("model", "The network: its input shape, its layers in order, and optional starting weights. Layers are channels-last (H, W, C) as Keras; a conv2d, pooling or flatten layer first makes the input an image."),
            Group(title: "`model.layers[]`: one table per `type`",
                  text: "`trainable` and `activity_regularizer` are read for every kind.", prefix: layer,
                  variants: kinds.map { Variant(label: "type: \($0)", overrides: dataFiller + [imageInput, "model.layers.0.type=\($0)"],
                                                     selector: layer + "type") }),
            Group(title: "Penalties: `kernel_regularizer`, `bias_regularizer`, `activity_regularizer`",
                  text: "The penalty l1·Σ|w| + l2·Σw² (Keras).", prefix: layer + "kernel_regularizer.",
                  variants: [Variant(label: "", overrides: filled + ["model.layers.0.kernel_regularizer={}"])]),
            Group(title: "Constraints: `kernel_constraint`, `bias_constraint`", text: "Exactly one of these keys.",
                  prefix: layer + "kernel_constraint.",
                  variants: [Variant(label: "", overrides: filled + ["model.layers.0.kernel_constraint={min_max_norm: {}}"])]),
            Group(title: "`min_max_norm`: `{min, max, rate}`", text: "", prefix: layer + "kernel_constraint.min_max_norm.",
                  variants: [Variant(label: "", overrides: filled + ["model.layers.0.kernel_constraint={min_max_norm: {}}"])]),
            Group(title: "`loss`", text: "A loss name (`loss: mse`), or a mapping with `type`; the columns are each type's defaults.",
                  prefix: "loss.", variants: losses.map { Variant(label: $0, overrides: filled + ["loss.type=\($0)"]) }, combined: true),
            Group(title: "`optimizer`", text: "The columns are each `type`'s defaults; a blank cell is a key that type does not read.",
                  prefix: "optimizer.", variants: optimizers.map { Variant(label: $0, overrides: filled + ["optimizer.type=\($0)"]) },
                  combined: true),
            Group(title: "`schedule`", text: "The learning rate over training; the columns are each `type`'s defaults.",
                  prefix: "schedule.", variants: schedules.map { Variant(label: $0, overrides: filled + ["schedule.type=\($0)"]) },
                  combined: true),
            section("training", "The loop: epochs and batches."),
            section("early_stopping", "keras.callbacks.EarlyStopping; leave the section out for none."),
            section("checkpoint", "When rank 0 writes a checkpoint, and how many it keeps."),
            section("distributed", "How ranks combine their work (used with more than one rank)."),
            section("logging", "What rank 0 writes besides metrics.jsonl and the console."),
        ]
    }

    /// docs/CONFIG.md's text.
    public static func markdown() throws -> String {
        var out = """
            # Config reference

            Generated by `ddp config-reference` (`launch/docs` writes this file and `launch/docs --check`
            fails when it differs): every key the config parser reads, with the type and default its
            accessor is called with. "required": the parse fails without it; "—": optional, and the
            accessor has no default value (the setting is off when the key is absent, or the parser
            derives it: README's annotated config says how); "= `key`": the default is that key's
            value. What the keys do: README.md (the annotated config under "Configs"),
            [SEMANTICS.md](SEMANTICS.md) and [AUGMENTATION.md](AUGMENTATION.md).

            """
        for group in try groups() {
            out += "\n## \(group.title)\n\n"
            if !group.text.isEmpty { out += group.text + "\n\n" }
            if group.combined {
                let tables = try group.variants.map { try rows(prefix: group.prefix, $0) }
                var names: [String] = []
                var types: [String: String] = [:]
                for row in tables.joined() {
                    if !names.contains(row.name) { names.append(row.name) }
                    if types[row.name] == nil { types[row.name] = row.type }
                }
                out += "| key | type | " + group.variants.map { "`\($0.label)`" }.joined(separator: " | ") + " |\n"
                out += "|---|---|" + String(repeating: "---|", count: group.variants.count) + "\n"
                for name in names {
                    let cells = tables.map { table in table.first { $0.name == name }?.fallback ?? "" }
                    out += "| `\(name)` | \(types[name] ?? "see below") | " + cells.joined(separator: " | ") + " |\n"
                }
            } else {
                for variant in group.variants {
                    if !variant.label.isEmpty { out += "`\(variant.label)`\n\n" }
                    out += "| key | type | default |\n|---|---|---|\n"
                    for row in try rows(prefix: group.prefix, variant) {
                        out += "| `\(row.name)` | \(row.type ?? "see below") | \(row.fallback) |\n"
                    }
                    out += "\n"
                }
                out.removeLast()
            }
        }
        return out
    }
}
