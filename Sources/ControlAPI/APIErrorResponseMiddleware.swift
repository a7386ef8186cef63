import Foundation
import HTTPTypes
import OpenAPIRuntime

/// The client's side of `{"error": "..."}`: any 4xx/5xx answer becomes the `APIError` of its
/// status with the server's one line, whatever operation it answered and whether or not the
/// document lists that status for it (a 405, a 404 from an older server).
struct APIErrorResponseMiddleware: ClientMiddleware {
    /// An error body is one line; more is not an error body.
    static let maxErrorBodyBytes = 64 * 1024

    func intercept(_ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
                   next: (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)) async throws -> (HTTPResponse, HTTPBody?) {
        let (response, responseBody) = try await next(request, body, baseURL)
        guard response.status.code >= 400 else { return (response, responseBody) }
        var message = "HTTP \(response.status.code) \(response.status.reasonPhrase)"
        if let responseBody, let data = try? await Data(collecting: responseBody, upTo: Self.maxErrorBodyBytes),
           let line = try? JSONDecoder().decode(APIErrorBody.self, from: data).error {
            message = line
        }
        switch response.status.code {
        case 400: throw APIError.badRequest(message)
        case 404: throw APIError.notFound(message)
        case 409: throw APIError.conflict(message)
        case 503: throw APIError.unavailable(message)
        default: throw APIError.failed(message)
        }
    }
}
