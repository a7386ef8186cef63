/// A plain-text table with aligned columns, for CLI output and benchmark reports.
public struct TextTable: Sendable {
    public var header: [String]
    public var rows: [[String]] = []
    /// Columns aligned right (numbers); the rest align left.
    public var rightAligned: Set<Int> = []
    /// Whether a line of dashes separates the header from the rows.
    public var rule: Bool = true

    public init(header: [String], rightAligned: Set<Int> = [], rule: Bool = true) {
        self.header = header
        self.rightAligned = rightAligned
        self.rule = rule
    }

    public mutating func append(_ row: [String]) {
        rows.append(row)
    }

    public func render() -> String {
        let columns = max(header.count, rows.map(\.count).max() ?? 0)
        func cell(_ row: [String], _ column: Int) -> String { column < row.count ? row[column] : "" }
        let widths = (0 ..< columns).map { column in
            ([header] + rows).map { cell($0, column).count }.max() ?? 0
        }
        func line(_ row: [String]) -> String {
            (0 ..< columns).map { column -> String in
                let text = cell(row, column)
                let pad = String(repeating: " ", count: widths[column] - text.count)
                return rightAligned.contains(column) ? pad + text : text + pad
            }.joined(separator: "  ").replacingTrailingSpaces()
        }
        let dashes = rule ? [widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] : []
        return ([line(header)] + dashes + rows.map(line)).joined(separator: "\n")
    }
}

extension String {
    fileprivate func replacingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}
