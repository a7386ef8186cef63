import Foundation
import GPUHost

/// How every command prints what it lists: one JSON encoder and one table for the whole CLI.

/// The JSON every `--json` (and `vm info`, and the `--metrics` file) is written with:
/// snake_case keys, sorted, indented, and '/' left as it is (paths stay readable).
func jsonEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return encoder
}

/// Prints `value` as JSON on stdout, one document ending in a newline.
func printJSON<T: Encodable>(_ value: T) throws {
    let data: Data
    do { data = try jsonEncoder().encode(value) } catch {
        throw RuntimeFailure(message: "cannot encode the output as JSON: \(error)")
    }
    print(String(decoding: data, as: UTF8.self))
}

/// Prints a table: the header, then a row per entry; the first column aligned left, the others
/// right (numbers), two spaces between columns, no rule under the header.
func printTable(_ header: [String], _ rows: [[String]]) {
    var table = TextTable(header: header, rightAligned: Set(1 ..< max(1, header.count)), rule: false)
    rows.forEach { table.append($0) }
    print(table.render())
}

