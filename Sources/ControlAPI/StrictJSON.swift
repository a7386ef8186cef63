import Foundation

/// A request body type that names the keys it accepts: an unknown key is a client mistake
/// (a typo of an optional field would otherwise be ignored silently), so it gets a 400.
public protocol StrictlyDecodable: Decodable {
    static var allowedKeys: Set<String> { get }
}

enum StrictJSON {
    static let maxBodyBytes = 64 * 1024

    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// Decodes `data` as a JSON object of `T`, refusing malformed JSON, non-objects, unknown
    /// keys and values of the wrong type, each with a message that says which.
    static func decode<T: StrictlyDecodable>(_ type: T.Type, from data: Data) throws(APIError) -> T {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw .badRequest("the body is not valid JSON")
        }
        guard let fields = object as? [String: Any] else { throw .badRequest("the body must be a JSON object") }
        let unknown = Set(fields.keys).subtracting(T.allowedKeys).sorted()
        guard unknown.isEmpty else {
            throw .badRequest("unknown field\(unknown.count > 1 ? "s" : "") \(unknown.map { "'\($0)'" }.joined(separator: ", ")); "
                + "allowed: \(T.allowedKeys.sorted().joined(separator: ", "))")
        }
        do { return try decoder.decode(T.self, from: data) } catch let DecodingError.keyNotFound(key, _) {
            throw .badRequest("missing field '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .badRequest("field '\(context.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch let DecodingError.valueNotFound(_, context) {
            throw .badRequest("field '\(context.codingPath.map(\.stringValue).joined(separator: "."))' is null")
        } catch {
            throw .badRequest("the body does not describe a \(T.self)")
        }
    }
}
