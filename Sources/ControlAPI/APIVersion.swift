/// What `GET /v1/version` answers on both APIs: the build serving it and the API version, so
/// an operator's tooling can tell what it talks to before it relies on a field.
public struct APIVersion: Codable, Sendable, Equatable {
    /// The semantic version, "0.1.0".
    public var version: String
    /// The commit built from ("1a2b3c4", "1a2b3c4-dirty"), or "unknown commit".
    public var commit: String
    /// The API's version, the path prefix: "v1".
    public var api: String

    public init(version: String, commit: String) {
        self.version = version
        self.commit = commit
        api = APIServer.version
    }
}
