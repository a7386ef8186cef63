import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Answers a request the HTTP parser rejects (a malformed request line, a bad version, a bad or
/// duplicate Content-Length, Content-Length with chunked, a bad chunk size, oversized headers)
/// with `400 {"error": ...}` as the OpenAPI documents promise, then closes the connection.
///
/// Hummingbird answers these itself with an empty 400; this handler sits after the HTTP codec,
/// sees the parser's error first and answers instead, unless a response to the request is
/// already on its way (then the error goes on, and the connection closes after that response).
/// After a parser error the byte stream cannot be trusted, so the connection always closes.
final class MalformedRequestResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// A response head went out and its end has not.
    private var responding = false
    private var answered = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head: responding = true
        case .end: responding = false
        case .body: break
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        guard !responding, !answered else {
            context.fireErrorCaught(error)
            return
        }
        answered = true
        let body = Self.body(for: parserError)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.contentLength] = String(body.readableBytes)
        headers[.connection] = "close"
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .badRequest, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        // The request cannot be read on, so nothing else is answered on this connection; the
        // error is not passed on, or the server would answer it a second time, without a body.
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            context.close(promise: nil)
        }
    }

    static func body(for error: HTTPParserError) -> ByteBuffer {
        ByteBuffer(bytes: APIWire.errorBody(message(for: error)))
    }

    /// One line a client's author can act on.
    static func message(for error: HTTPParserError) -> String {
        switch error {
        case .headerOverflow: return "malformed HTTP request: the headers are too large"
        case .invalidContentLength: return "malformed HTTP request: bad Content-Length"
        case .unexpectedContentLength: return "malformed HTTP request: Content-Length given twice or with chunked encoding"
        case .invalidChunkSize: return "malformed HTTP request: bad chunk size"
        case .invalidVersion: return "malformed HTTP request: unsupported HTTP version"
        case .invalidMethod: return "malformed HTTP request: bad method"
        case .invalidURL: return "malformed HTTP request: bad request target"
        default: return "malformed HTTP request: \(error)"
        }
    }
}
