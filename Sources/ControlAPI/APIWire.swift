import Foundation
import OpenAPIRuntime

/// Where malvvm's own resource types (`VMInfo`, `AttachVGPURequest`, ...) meet the types
/// swift-openapi-generator made from docs/api/*.yaml (MalvvmOpenAPI, GPUDaemonOpenAPI).
///
/// The two describe the same JSON: ours in camelCase Swift turned snake_case on the wire, the
/// generated ones with the document's field names as their coding keys. A value crosses by way
/// of that JSON, so the document decides what goes over the socket: a field the document lacks
/// cannot reach a client, and a client's domain value that lacks a field the document requires
/// fails to decode (the "document and code in step" check, made by the generated code itself).
enum APIWire {
    /// Request bodies are small JSON objects; a larger one is a client's mistake or an attack.
    static let maxBodyBytes = 64 * 1024

    /// The generated code's settings: compact JSON with sorted keys, paths unescaped.
    static let configuration = Configuration(jsonEncodingOptions: [.sortedKeys, .withoutEscapingSlashes])

    /// The path prefix every operation of both documents sits under (their `servers` entry).
    static let serverURL = URL(string: "/v1")!

    /// `value`, one of our types, as the generated type of the same resource. Failing is a bug
    /// of ours, not the client's: our type and the document disagree (a 500 on the server).
    static func generated<Generated: Decodable>(_ value: some Encodable) throws(APIError) -> Generated {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        do { return try JSONDecoder().decode(Generated.self, from: encoder.encode(value)) } catch {
            throw .failed("\(type(of: value)) does not fit the API document's \(Generated.self): \(error)")
        }
    }

    /// `generated`, a value of a generated type, as our type of the same resource.
    static func domain<Domain: Decodable>(_ generated: some Encodable) throws(APIError) -> Domain {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do { return try decoder.decode(Domain.self, from: JSONEncoder().encode(generated)) } catch {
            throw .failed("the API document's \(type(of: generated)) does not fit \(Domain.self): \(error)")
        }
    }

    /// The one-line error body every 4xx/5xx carries (`APIErrorBody`) as JSON.
    static func errorBody(_ message: String) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(APIErrorBody(error: message))) ?? Data(#"{"error":"unprintable error"}"#.utf8)
    }
}
