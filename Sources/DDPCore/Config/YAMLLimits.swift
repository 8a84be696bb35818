// CYaml is the libyaml that Yams wraps (a target of the Yams package): its event parser is
// iterative, so it can measure a document that Yams's recursive composer could not survive.
import CYaml
import Yams

/// Bounds a YAML config must stay within, checked before anything recursive touches it.
///
/// Yams composes nodes recursively, so a document nested a few thousand levels deep
/// (`[[[[…]]]]`) overflows the stack and kills the process with a segmentation fault; aliases
/// can make a small document expand exponentially ("billion laughs") once it is walked or
/// serialized. So libyaml's events measure the nesting first, and after composing (and the
/// `--set` overrides) an iterative walk bounds the depth and the number of values, aliases
/// expanded. A real config nests 4 levels and holds a few hundred values.
enum YAMLLimits {
    static let maximumDepth = 64
    static let maximumValues = 100_000

    /// Throws when `text` nests deeper than `maximumDepth`. Syntax errors are left to Yams,
    /// whose messages say more.
    static func checkNesting(_ text: String, source: String) throws {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw DDPError(.config, "\(source): cannot start the YAML parser") }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        bytes.append(0)
        try bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count - 1)
            var depth = 0
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return }
                defer { yaml_event_delete(&event) }
                switch event.type {
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    depth += 1
                    if depth > maximumDepth {
                        throw DDPError(.config, "\(source): line \(event.start_mark.line + 1): lists and mappings nest more than \(maximumDepth) levels deep")
                    }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    depth -= 1
                case YAML_STREAM_END_EVENT:
                    return
                default:
                    break
                }
            }
        }
    }

    /// Throws when the composed document (aliases expanded) nests deeper than `maximumDepth`
    /// or holds more than `maximumValues` values, or when a mapping names one key twice (YAML
    /// forbids it; the composer would keep both and readers one, silently). Walks with an
    /// explicit stack and stops at the first limit crossed, so it never expands more than the
    /// limit.
    static func checkSize(_ root: Node, source: String) throws {
        var pending: [(node: Node, depth: Int, path: String)] = [(root, 0, "")]
        var count = 0
        while let (node, depth, path) = pending.popLast() {
            count += 1
            if count > maximumValues {
                throw DDPError(.config, "\(source): more than \(maximumValues) values (aliases expanded); a config holds far fewer")
            }
            if depth > maximumDepth {
                throw DDPError(.config, "\(source): lists and mappings nest more than \(maximumDepth) levels deep")
            }
            switch node {
            case .scalar: break
            case .mapping(let mapping):
                var seen: [String: Mark?] = [:]
                for (key, value) in mapping {
                    if let name = key.scalar?.string {
                        if let first = seen[name] {
                            let lines = [first, key.mark].compactMap { $0.map { "line \($0.line)" } }
                            throw DDPError(.config, "\(source): key '\(path.isEmpty ? name : path + "." + name)' is given twice"
                                           + (lines.isEmpty ? "" : " (" + lines.joined(separator: " and ") + ")")
                                           + "; YAML keeps one of them silently, so remove the other")
                        }
                        seen[name] = key.mark
                    }
                    let child = path.isEmpty ? key.scalar?.string ?? "?" : path + "." + (key.scalar?.string ?? "?")
                    pending.append((key, depth + 1, child))
                    pending.append((value, depth + 1, child))
                }
            case .sequence(let sequence):
                for (index, element) in sequence.enumerated() { pending.append((element, depth + 1, "\(path)[\(index)]")) }
            }
        }
    }
}
