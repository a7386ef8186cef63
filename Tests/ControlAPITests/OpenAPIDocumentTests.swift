import ControlAPI
import Foundation
import Testing

/// docs/api/malvvm.yaml and docs/api/gpud.yaml are the APIs' contracts: each documents every
/// route its server has, and nothing it does not.
@Suite struct OpenAPIDocumentTests {
    static func read(_ name: String) -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("docs/api/\(name)"), encoding: .utf8)) ?? ""
    }

    static let document = read("malvvm.yaml")
    static let daemonDocument = read("gpud.yaml")

    /// "METHOD /path" for every operation under `paths:` (a path is a 2-space-indented key,
    /// its operations 4-space-indented HTTP method keys).
    static func documentedOperations(in document: String) -> Set<String> {
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

    /// Every API also serves these (`APIServer`).
    static let everyServerServes = ["GET /version"]

    @Test(arguments: [("malvvm.yaml", VMAPI.routes.map { "\($0.method) \($0.path)" } + everyServerServes),
                      ("gpud.yaml", GPUDaemonAPI.routes.map { "\($0.method) \($0.path)" } + everyServerServes)])
    func everyRouteIsDocumentedAndNothingElse(document name: String, routes: [String]) {
        let served = Set(routes)
        let documented = Self.documentedOperations(in: Self.read(name))
        #expect(!documented.isEmpty, "could not read docs/api/\(name)")
        #expect(served == documented, "served only: \(served.subtracting(documented)); documented only: \(documented.subtracting(served))")
    }

    @Test func theDocumentsAreVersionedLikeTheServer() {
        #expect(Self.document.contains("/\(APIServer.version)\n"), "servers url must end in /\(APIServer.version)")
        #expect(Self.daemonDocument.contains("/\(APIServer.version)\n"), "servers url must end in /\(APIServer.version)")
    }
}
