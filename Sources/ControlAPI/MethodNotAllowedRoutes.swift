import HTTPTypes
import Hummingbird
import OpenAPIHummingbird
import OpenAPIRuntime

/// Registers the generated handlers on a router and then answers, on each of their paths, the
/// methods none of them takes with 405 and the methods it does take (RFC 9110 §15.5.6), not
/// the 404 of a path that does not exist. The generated code registers one handler per
/// operation and knows nothing of the others on the same path, so the paths are collected as
/// it registers them.
final class MethodNotAllowedRoutes: ServerTransport {
    private let router: Router<BasicRequestContext>
    /// Each path, as registered ("/v1/vgpus/{id}"), with its methods in document order.
    private var paths: [(path: String, methods: [HTTPRequest.Method])] = []

    init(router: Router<BasicRequestContext>) { self.router = router }

    func register(_ handler: @escaping @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?),
                  method: HTTPRequest.Method, path: String) throws {
        router.register(handler, method: method, path: path)
        if let index = paths.firstIndex(where: { $0.path == path }) { paths[index].methods.append(method) } else {
            paths.append((path, [method]))
        }
    }

    /// Adds the 405 routes; call once every handler is registered.
    func refuseOtherMethods() {
        let known: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]
        for (path, allowed) in paths {
            let allow = allowed.map(\.rawValue).joined(separator: ", ")
            for method in known where !allowed.contains(method) {
                router.on(RouterPath(path), method: method) { request, _ -> Response in
                    throw MethodNotAllowed(method: request.method, path: request.uri.path, allow: allow)
                }
            }
        }
    }
}

/// A route asked with a method it does not serve.
struct MethodNotAllowed: Error {
    let method: HTTPRequest.Method
    let path: String
    /// The methods it serves, as the Allow header lists them.
    let allow: String
}
