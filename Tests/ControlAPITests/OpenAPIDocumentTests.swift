import ControlAPI
import Foundation
import Testing

/// docs/api/malvvm.yaml is the API's contract: it documents every route the server has, and
/// nothing it does not.
@Suite struct OpenAPIDocumentTests {
    static let document: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("docs/api/malvvm.yaml"), encoding: .utf8)) ?? ""
    }()

    /// "METHOD /path" for every operation under `paths:` (a path is a 2-space-indented key,
    /// its operations 4-space-indented HTTP method keys).
    static var documentedOperations: Set<String> {
        var operations = Set<String>()
        var path: String?
        var inPaths = false
        for line in document.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("paths:") { inPaths = true; continue }
            if inPaths, let first = line.first, first != " " { break }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     ") {
                let key = line.dropFirst(4).prefix { $0 != ":" }
                if ["get", "put", "post", "delete", "patch"].contains(String(key)) {
                    operations.insert("\(key.uppercased()) \(path)")
                }
            }
        }
        return operations
    }

    @Test func everyRouteIsDocumentedAndNothingElse() {
        let served = Set(VMAPI.routes.map { "\($0.method) \($0.path)" })
        #expect(!Self.documentedOperations.isEmpty, "could not read docs/api/malvvm.yaml")
        #expect(served == Self.documentedOperations,
                "served only: \(served.subtracting(Self.documentedOperations)); documented only: \(Self.documentedOperations.subtracting(served))")
    }

    @Test func theDocumentIsVersionedLikeTheServer() {
        #expect(Self.document.contains("/\(APIServer.version)\n"), "servers url must end in /\(APIServer.version)")
    }
}
