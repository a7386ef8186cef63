import Foundation
import Testing
@testable import GVMCS

/// docs/gvmcs.md is the specification readers use; these tests fail when a field, error,
/// check or exit reason changes in code but not in the document.
@Suite("docs/gvmcs.md matches the code")
struct DocsTests {
    static let lines: [Substring] = {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/gvmcs.md")
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        return text.split(separator: "\n")
    }()

    static func hasRow(_ cells: String...) -> Bool {
        lines.contains { line in line.hasPrefix("|") && cells.allSatisfy { line.contains($0) } }
    }

    @Test("every field's row has its encoding, name and width", arguments: GVMCSField.allCases)
    func field(field: GVMCSField) {
        let width = switch field.width {
        case .bits16: "16-bit"
        case .bits32: "32-bit"
        case .bits64: "64-bit"
        case .natural: "natural"
        }
        #expect(Self.hasRow("`\(field.encoding)`", "| \(field.description) |", width))
    }

    @Test("every instruction error has its row", arguments: GVMInstructionError.allCases)
    func error(error: GVMInstructionError) {
        #expect(Self.hasRow("| \(error.rawValue) | \(error.description) |"))
    }

    @Test("every entry check has its row", arguments: GVMEntryCheck.allCases)
    func check(check: GVMEntryCheck) {
        #expect(Self.hasRow("| \(check.rawValue) | \(check.description) |"))
    }

    @Test("every exit reason has its row", arguments: GVMExitReason.allCases)
    func reason(reason: GVMExitReason) {
        let name = reason == .entryFailure ? "entry failure" : reason.description
        #expect(Self.hasRow("| \(reason.rawValue)", "| \(name) |"))
    }
}
