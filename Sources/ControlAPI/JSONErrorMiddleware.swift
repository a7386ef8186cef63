import Hummingbird
import NIOCore
import OpenAPIRuntime

/// Every error becomes `{"error": "..."}` with its status, as both documents promise: our
/// `APIError`s (thrown by a handler, they reach us inside the generated server's `ServerError`),
/// a body the generated decoder refused (400), Hummingbird's own (unknown route, body too
/// large) and anything unexpected (500).
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ServerError {
            switch error.underlyingError {
            case let error as APIError: return Self.response(error.message, status: .init(code: error.status))
            case let error as DecodingError: return Self.response(error.requestBodyMessage, status: .badRequest)
            default:
                // The generated server's own refusals (a missing body, a content type it does not
                // take) carry their status; their description names the operation and the cause.
                return Self.response("\(error.operationID): \(error.causeDescription)", status: error.httpStatus)
            }
        } catch let error as APIError {
            return Self.response(error.message, status: .init(code: error.status))
        } catch let error as MethodNotAllowed {
            var response = Self.response("\(error.method) is not allowed on \(error.path); it takes \(error.allow)",
                                         status: .methodNotAllowed)
            response.headers[.allow] = error.allow
            return response
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound
                ? "no such resource: \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return Self.response(message, status: error.status)
        } catch {
            return Self.response("\(error)", status: .internalServerError)
        }
    }

    static func response(_ message: String, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: APIWire.errorBody(message))))
    }
}
