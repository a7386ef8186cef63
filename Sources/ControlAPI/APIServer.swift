import Foundation
import Hummingbird
import Logging
import NIOCore
import Platform
import ServiceLifecycle
import Synchronization

/// Serves a REST API (HTTP/1.1, JSON) on a Unix socket, in the manner of Firecracker's and
/// Cloud Hypervisor's API sockets: the VM control API (docs/api/malvvm.yaml, `VMAPI.routes`) or
/// the GPU daemon's (docs/api/gpud.yaml, `GPUDaemonAPI.routes`). The socket is created 0600 in
/// a 0700 directory: whoever can reach it controls the VM or the GPU.
public final class APIServer: Sendable {
    public static let version = "v1"
    public let socketPath: String
    private let task: Task<Void, Never>
    private let services: ServiceGroup
    private let executor: ThreadTaskExecutor

    /// Serves the VM control API for `control`.
    public convenience init(socketPath: String, control: any VMControl, version: APIVersion) throws(APIError) {
        try self.init(socketPath: socketPath, control: control, routes: VMAPI.routes, version: version)
    }

    /// Binds `socketPath` (a stale socket left by a dead VM is replaced; a live one is an
    /// error) and starts serving in the background. Besides `routes`, every API answers
    /// `GET /v1/version` with `version`.
    public init<Control: Sendable>(socketPath: String, control: Control, routes: [APIRoute<Control>], version: APIVersion,
                                   logger: Logger = Logger(label: "malvvm.api")) throws(APIError) {
        try SocketPath.claim(socketPath)
        self.socketPath = socketPath
        let router = Router()
        router.add(middleware: JSONErrorMiddleware())
        Self.addRoutes(routes + [APIVersion.route(version)], to: router, control: control)
        let ready = DispatchSemaphore(value: 0)
        // The socket is created with the umask's bits: 0600 from its first moment, never
        // world-accessible between bind and a chmod. The mask is the process's, so it is
        // restored as soon as the socket is bound (this runs before the VM starts).
        let previousMask = umask(0o177)
        let app = Application(router: router,
                              // A new responder per connection: it answers what the parser rejects.
                              server: .http1(configuration: .init(additionalChannelHandlers: [MalformedRequestResponder()])),
                              configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: "malvvm"),
                              onServerRunning: { _ in
                                  umask(previousMask)
                                  ready.signal()
                              },
                              logger: logger)
        let failure = LockedBox<String?>(nil)
        let services = ServiceGroup(configuration: .init(services: [app], logger: logger))
        self.services = services
        // The server's own tasks run on a thread of theirs: starting to listen must not wait for
        // a cooperative pool that other work may be blocking.
        let executor: ThreadTaskExecutor
        do { executor = try ThreadTaskExecutor(name: "api-server") } catch {
            umask(previousMask)
            throw .failed("cannot serve the API on '\(socketPath)': \(error)")
        }
        self.executor = executor
        task = Task(executorPreference: executor) {
            do { try await services.run() } catch {
                failure.value = "\(error)"
                ready.signal()
            }
        }
        // Bind before returning, so a client started right after us finds the socket; the VM
        // boots meanwhile on its own thread, so this costs boot nothing.
        // A loaded host can take seconds to start the server's event loop; returning before the
        // socket is bound would make the first client fail to connect.
        let bound = ready.wait(timeout: .now() + .seconds(30)) == .success
        umask(previousMask)
        if let error = failure.value { throw .failed("cannot serve the API on '\(socketPath)': \(error)") }
        if !bound {
            task.cancel()
            throw .failed("cannot serve the API on '\(socketPath)': not listening after 30 s")
        }
    }

    /// Stops serving and removes the socket.
    public func stop() {
        let services = services, task = task
        let done = DispatchSemaphore(value: 0)
        Task(executorPreference: executor) {
            await services.triggerGracefulShutdown()
            await task.value
            done.signal()
        }
        // A client holding a connection open must not keep the VM process alive. The thread
        // goes only once nothing of the server can still need it.
        if done.wait(timeout: .now() + .seconds(2)) == .success { executor.stop() }
        unlink(socketPath)
    }

    static func addRoutes<Control: Sendable>(_ routes: [APIRoute<Control>], to router: Router<BasicRequestContext>, control: Control) {
        var methods: [String: [HTTPRequest.Method]] = [:]
        for route in routes {
            // OpenAPI's {id} is Hummingbird's :id.
            let path = "/\(version)" + route.path.replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: "")
            methods[path, default: []].append(route.method)
            router.on(RouterPath(path), method: route.method) { request, context in
                try await route.handle(request, context, control)
            }
        }
        // A resource that exists, asked with a method it does not take: 405 with the methods
        // it does take (RFC 9110 §15.5.6), not the 404 of a path that does not exist.
        let known: [HTTPRequest.Method] = [.get, .head, .post, .put, .patch, .delete, .options]
        for (path, allowed) in methods {
            let allow = allowed.map(\.rawValue).joined(separator: ", ")
            for method in known where !allowed.contains(method) {
                router.on(RouterPath(path), method: method) { request, _ -> Response in
                    throw MethodNotAllowed(method: request.method, path: request.uri.path, allow: allow)
                }
            }
        }
    }

    static func body(of request: Request) async throws -> Data {
        var request = request
        do {
            let buffer = try await request.collectBody(upTo: StrictJSON.maxBodyBytes)
            return Data(buffer.readableBytesView)
        } catch {
            throw APIError.badRequest("the body is larger than \(StrictJSON.maxBodyBytes) bytes")
        }
    }

    static func noContent(_ action: () throws(APIError) -> Void) throws -> Response {
        try action()
        return Response(status: .noContent)
    }
}

/// One route of an API; its OpenAPI document lists exactly these (a test keeps them in step).
public struct APIRoute<Control: Sendable>: Sendable {
    public let method: HTTPRequest.Method
    /// Below /v1, with `{name}` for a path parameter as OpenAPI writes it.
    public let path: String
    let handle: @Sendable (Request, BasicRequestContext, Control) async throws -> Response
}

/// The VM control API (docs/api/malvvm.yaml).
public enum VMAPI {
    public static let routes: [APIRoute<any VMControl>] = [
        APIRoute(method: .get, path: "/vm") { _, _, control in try json(control.info()) },
        APIRoute(method: .get, path: "/metrics") { _, _, control in prometheus(control.metrics().prometheusText) },
        APIRoute(method: .put, path: "/vm/pause") { _, _, control in try APIServer.noContent { () throws(APIError) in try control.pause() } },
        APIRoute(method: .put, path: "/vm/resume") { _, _, control in try APIServer.noContent { () throws(APIError) in try control.resume() } },
        APIRoute(method: .put, path: "/vm/shutdown") { _, _, control in try APIServer.noContent { () throws(APIError) in try control.shutdown() } },
        APIRoute(method: .get, path: "/vgpus") { _, _, control in try json(control.vgpus()) },
        APIRoute(method: .post, path: "/vgpus") { request, _, control in
            let attach = try StrictJSON.decode(AttachVGPURequest.self, from: try await APIServer.body(of: request))
            return try json(try await control.attachVGPU(attach), status: .created)
        },
        APIRoute(method: .get, path: "/vgpus/{id}") { _, context, control in
            try json(try control.vgpu(id: context.parameters.require("id")))
        },
        APIRoute(method: .delete, path: "/vgpus/{id}") { _, context, control in
            try await control.detachVGPU(id: try context.parameters.require("id"))
            return Response(status: .noContent)
        },
    ] + MLaaSAPI.routes { $0.mlaas }
}

/// A JSON response of `value`.
func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try StrictJSON.encoder.encode(value)
    return Response(status: status, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// A Prometheus text page (`GET /v1/metrics`).
func prometheus(_ text: String) -> Response {
    Response(status: .ok, headers: [.contentType: PrometheusPage.contentType], body: .init(byteBuffer: ByteBuffer(string: text)))
}

/// Every error becomes `{"error": "..."}` with its status: our `APIError`s, Hummingbird's own
/// (unknown route, body too large) and anything unexpected (500).
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try json(APIErrorBody(error: error.message), status: .init(code: error.status))
        } catch let error as MethodNotAllowed {
            var response = try json(APIErrorBody(error: "\(error.method) is not allowed on \(error.path); it takes \(error.allow)"),
                                    status: .methodNotAllowed)
            response.headers[.allow] = error.allow
            return response
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound
                ? "no such resource: \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return try json(APIErrorBody(error: message), status: error.status)
        } catch {
            return try json(APIErrorBody(error: "\(error)"), status: .internalServerError)
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

/// A value shared with an escaping closure (a `Mutex` cannot be captured by one).
final class LockedBox<Value: Sendable>: Sendable {
    private let stored: Mutex<Value>
    init(_ value: Value) { stored = Mutex(value) }
    var value: Value {
        get { stored.withLock { $0 } }
        set { stored.withLock { $0 = newValue } }
    }
}
