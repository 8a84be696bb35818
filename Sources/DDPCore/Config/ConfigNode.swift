import Yams

/// A typed, strict view of one YAML mapping in the config. Every accessor names the full dotted
/// key in its error ("optimizer.lr: expected a number, got 'fast'"), and `finish()` rejects keys
/// nobody read, so a typo is an error instead of a silently ignored setting.
struct ConfigSection {
    let path: String
    let mapping: Node.Mapping
    private var consumed: Set<String> = []

    init(_ node: Node?, path: String) throws {
        self.path = path
        guard let node else {
            mapping = Node.Mapping([])
            return
        }
        guard let mapping = node.mapping else {
            throw DDPError(.config, "\(path.isEmpty ? "the config" : path): expected a mapping of keys to values")
        }
        self.mapping = mapping
    }

    func key(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    mutating func node(_ name: String) -> Node? {
        consumed.insert(name)
        ConfigKeyRecorder.current?.note(key(name))
        guard let value = mapping[Node(name)] else { return nil }
        if case .scalar(let scalar) = value, scalar.tag == Tag(.null) || ["null", "~", ""].contains(scalar.string) && scalar.style == .plain {
            return nil
        }
        return value
    }

    mutating func section(_ name: String) throws -> ConfigSection? {
        ConfigKeyRecorder.current?.note(key(name), type: "mapping")
        guard let value = node(name) else { return nil }
        return try ConfigSection(value, path: key(name))
    }

    /// Reads the optional section `name` with `body`, then rejects its keys `body` left unread.
    mutating func parseSection(_ name: String, _ body: (inout ConfigSection) throws -> Void) throws {
        guard var section = try section(name) else { return }
        try body(&section)
        try section.finish()
    }

    mutating func string(_ name: String) throws -> String? {
        ConfigKeyRecorder.current?.note(key(name), type: "text")
        guard let value = node(name) else { return nil }
        guard let scalar = value.scalar else { throw DDPError(.config, "\(key(name)): expected a text value") }
        return scalar.string
    }

    mutating func string(_ name: String, default fallback: String) throws -> String {
        ConfigKeyRecorder.current?.note(key(name), type: "text", default: fallback)
        return try string(name) ?? fallback
    }

    mutating func choice<T: RawRepresentable>(_ name: String, default fallback: T) throws -> T where T.RawValue == String {
        ConfigKeyRecorder.current?.note(key(name), type: "one of \(Self.options(T.self))", default: fallback.rawValue)
        guard let text = try string(name) else { return fallback }
        guard let value = T(rawValue: text) else {
            throw DDPError(.config, "\(key(name)): '\(text)' is not one of \(Self.options(T.self))")
        }
        return value
    }

    static func options<T: RawRepresentable>(_ type: T.Type) -> String where T.RawValue == String {
        if let all = type as? any CaseIterable.Type {
            return (all.allCases as any Collection).map { "\(($0 as! T).rawValue)" }.joined(separator: ", ")
        }
        return "the documented values"
    }

    mutating func double(_ name: String) throws -> Double? {
        ConfigKeyRecorder.current?.note(key(name), type: "number")
        guard let value = node(name) else { return nil }
        guard let text = value.scalar?.string, let number = Double(text.replacingOccurrences(of: "_", with: "")),
              number.isFinite else {
            throw DDPError(.config, "\(key(name)): expected a number, got '\(Self.describe(value))'")
        }
        return number
    }

    mutating func double(_ name: String, default fallback: Double, in range: ClosedRange<Double>? = nil) throws -> Double {
        ConfigKeyRecorder.current?.note(key(name), type: ConfigKeyRecorder.number(in: range), default: ConfigKeyRecorder.text(fallback))
        let value = try double(name) ?? fallback
        if let range, !range.contains(value) {
            throw DDPError(.config, "\(key(name)): expected a number in [\(range.lowerBound), \(range.upperBound)], got \(value)")
        }
        return value
    }

    /// A number the model computes with in float32: one beyond its range (±3.4e38) would
    /// become infinite there, so it is refused here, naming the key.
    mutating func float(_ name: String, default fallback: Float, in range: ClosedRange<Double>? = nil) throws -> Float {
        ConfigKeyRecorder.current?.note(key(name), type: ConfigKeyRecorder.number(in: range), default: ConfigKeyRecorder.text(fallback))
        let value = try double(name, default: Double(fallback), in: range)
        guard Float(value).isFinite else {
            throw DDPError(.config, "\(key(name)): \(value) is beyond float32's range (±\(Float.greatestFiniteMagnitude))")
        }
        return Float(value)
    }

    mutating func int(_ name: String) throws -> Int? {
        ConfigKeyRecorder.current?.note(key(name), type: "integer")
        guard let value = node(name) else { return nil }
        guard let text = value.scalar?.string, let number = Int(text.replacingOccurrences(of: "_", with: "")) else {
            throw DDPError(.config, "\(key(name)): expected an integer, got '\(Self.describe(value))'")
        }
        return number
    }

    mutating func int(_ name: String, default fallback: Int, min minimum: Int) throws -> Int {
        ConfigKeyRecorder.current?.note(key(name), type: "integer ≥ \(minimum)", default: "\(fallback)")
        let value = try int(name) ?? fallback
        guard value >= minimum else { throw DDPError(.config, "\(key(name)): expected an integer ≥ \(minimum), got \(value)") }
        return value
    }

    mutating func bool(_ name: String, default fallback: Bool) throws -> Bool {
        ConfigKeyRecorder.current?.note(key(name), type: "true or false", default: "\(fallback)")
        guard let value = node(name) else { return fallback }
        switch value.scalar?.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw DDPError(.config, "\(key(name)): expected true or false, got '\(Self.describe(value))'")
        }
    }

    /// Rejects keys that were never read: almost always a typo.
    func finish() throws {
        for (keyNode, _) in mapping {
            let name = keyNode.scalar?.string ?? "?"
            if !consumed.contains(name) {
                let known = consumed.sorted().joined(separator: ", ")
                throw DDPError(.config, "unknown key '\(key(name))'; expected one of: \(known)")
            }
        }
    }

    static func describe(_ node: Node) -> String {
        if let scalar = node.scalar { return scalar.string }
        return node.mapping != nil ? "a mapping" : "a list"
    }
}

/// Applies `--set a.b.c=value` overrides to a parsed YAML document. The value is parsed as YAML,
/// so `--set training.epochs=3` sets an integer and `--set model.init_weights=null` clears it.
/// Numeric path segments index lists: `model.layers.3.rate=0.5`.
enum ConfigOverride {
    static func apply(_ assignment: String, to root: inout Node) throws {
        guard let equals = assignment.firstIndex(of: "=") else {
            throw DDPError(.config, "--set '\(assignment)': expected dotted.key=value")
        }
        let path = assignment[..<equals].split(separator: ".").map(String.init)
        let text = String(assignment[assignment.index(after: equals)...])
        guard !path.isEmpty else { throw DDPError(.config, "--set '\(assignment)': the key is empty") }
        guard path.count <= YAMLLimits.maximumDepth else {
            throw DDPError(.config, "--set: the key has \(path.count) parts; a config nests at most \(YAMLLimits.maximumDepth) levels")
        }
        try YAMLLimits.checkNesting(text, source: "--set \(path.joined(separator: "."))")
        let value: Node
        do {
            value = try Yams.compose(yaml: text) ?? Node("null")
        } catch {
            throw DDPError(.config, "--set \(path.joined(separator: ".")): cannot parse '\(text)' as YAML")
        }
        try set(value, at: path[...], in: &root, full: path.joined(separator: "."))
    }

    private static func set(_ value: Node, at path: ArraySlice<String>, in node: inout Node, full: String) throws {
        guard let head = path.first else {
            node = value
            return
        }
        let rest = path.dropFirst()
        if var sequence = node.sequence {
            guard let index = Int(head), index >= 0, index < sequence.count else {
                throw DDPError(.config, "--set \(full): '\(head)' is not an index of a list with \(sequence.count) entries")
            }
            var child = sequence[index]
            try set(value, at: rest, in: &child, full: full)
            sequence[index] = child
            node = .sequence(sequence)
            return
        }
        var mapping = node.mapping ?? Node.Mapping([])
        var child = mapping[Node(head)] ?? Node.mapping(Node.Mapping([]))
        if !rest.isEmpty, child.mapping == nil, child.sequence == nil { child = .mapping(Node.Mapping([])) }
        try set(value, at: rest, in: &child, full: full)
        mapping[Node(head)] = child
        node = .mapping(mapping)
    }
}
