/// What was wrong with a request body, in one line for the client's author: the generated
/// server's decoding errors name a coding path, Foundation's say nothing a client can act on.
extension DecodingError {
    var requestBodyMessage: String {
        switch self {
        case let .dataCorrupted(context) where context.codingPath.isEmpty:
            return "the body is not valid JSON"
        case let .dataCorrupted(context) where context.debugDescription.hasPrefix("Additional properties are disabled"):
            // The generated decoder names the first unknown key (sorted) as the error's path.
            return "unknown field '\(Self.field(context.codingPath))'"
        case let .dataCorrupted(context):
            // An enum's: "Cannot initialize KindPayload from invalid String value quantum".
            let value = context.debugDescription.components(separatedBy: "invalid String value ").dropFirst().first
            return "field '\(Self.field(context.codingPath))' does not take the value" + (value.map { " '\($0)'" } ?? " given")
        case let .keyNotFound(key, context):
            return "missing field '\(Self.field(context.codingPath + [key]))'"
        case let .typeMismatch(_, context) where context.codingPath.isEmpty:
            return "the body must be a JSON object"
        case let .typeMismatch(_, context):
            return "field '\(Self.field(context.codingPath))' has the wrong type"
        case let .valueNotFound(_, context):
            return "field '\(Self.field(context.codingPath))' is null"
        @unknown default:
            return "the body does not match the API document"
        }
    }

    private static func field(_ path: [any CodingKey]) -> String {
        path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}
