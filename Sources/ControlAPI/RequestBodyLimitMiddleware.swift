import Hummingbird

/// Reads a request's body before any handler does, refusing one over `APIWire.maxBodyBytes`
/// with a 400: the generated handlers collect a JSON body whole, with no limit of their own.
struct RequestBodyLimitMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var request = request
        do { _ = try await request.collectBody(upTo: APIWire.maxBodyBytes) } catch {
            throw APIError.badRequest("the body is larger than \(APIWire.maxBodyBytes) bytes")
        }
        return try await next(request, context)
    }
}
