/// The aligned plain-text tables `ddp compare`, `ddp compare --repeats` and `ddp cv` print.
enum TextTable {
    /// Plain text: the first column left-aligned, the others right; a rule under the header and
    /// above the footer.
    static func aligned(header: [String], rows: [[String]], footer: [String]?) -> String {
        let all = [header] + rows + (footer.map { [$0] } ?? [])
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                let pad = String(repeating: " ", count: widths[index] - cell.count)
                return index == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        return ([line(header), rule] + rows.map(line) + (footer.map { [rule, line($0)] } ?? [])).joined(separator: "\n")
    }
}
