import Foundation
import Hummingbird
import Logging
import OpenAPIRuntime
import Platform
import ServiceLifecycle
import Synchronization

/// Serves a REST API (HTTP/1.1, JSON) on a Unix socket, in the manner of Firecracker's and
/// Cloud Hypervisor's API sockets: the VM control API (docs/api/malvvm.yaml, `VMAPIHandler`) or
/// the GPU daemon's (docs/api/gpud.yaml, `GPUDaemonAPIHandler`), each through the server code
/// swift-openapi-generator made from its document. The socket is created 0600 in a 0700
/// directory: whoever can reach it controls the VM or the GPU.
public final class APIServer: Sendable {
    public static let version = "v1"
    public let socketPath: String
    private let task: Task<Void, Never>
    private let services: ServiceGroup
    private let executor: ThreadTaskExecutor
    private let ready: DispatchSemaphore
    private let failure: LockedBox<String?>
    private let previousMask: mode_t
    /// Whether `waitUntilListening` has seen the socket bound (once is enough).
    private let listening = LockedBox(false)

    /// Serves the VM control API for `control`, listening when it returns.
    public convenience init(socketPath: String, control: any VMControl, version: APIVersion) throws(APIError) {
        try self.init(startingOn: socketPath, control: control, version: version)
        try waitUntilListening()
    }

    /// Starts serving the VM control API for `control` without waiting for the socket: the
    /// server's event loops start on their own threads while the caller goes on building the
    /// VM (`malvvm run` does, with a `PendingVMControl`), and `waitUntilListening` joins them.
    /// The socket path is claimed before this returns, so a live VM of the same name is an
    /// error here.
    public convenience init(startingOn socketPath: String, control: any VMControl, version: APIVersion) throws(APIError) {
        let handler = VMAPIHandler(control: control, version: version)
        try self.init(socketPath: socketPath) { transport in
            try handler.registerHandlers(on: transport, serverURL: APIWire.serverURL, configuration: APIWire.configuration)
        }
    }

    /// Serves the GPU daemon's API for `daemon`, listening when it returns.
    public convenience init(socketPath: String, daemon: GPUDaemonController, version: APIVersion) throws(APIError) {
        let handler = GPUDaemonAPIHandler(control: daemon, version: version)
        try self.init(socketPath: socketPath) { transport in
            try handler.registerHandlers(on: transport, serverURL: APIWire.serverURL, configuration: APIWire.configuration)
        }
        try waitUntilListening()
    }

    /// Claims `socketPath` (a stale socket left by a dead VM is replaced; a live one is an
    /// error) and starts serving in the background the operations `registerHandlers` puts on
    /// the transport it is given (a generated `APIProtocol`'s `registerHandlers`); the socket is
    /// bound once `waitUntilListening` returns.
    init(socketPath: String, logger: Logger = Logger(label: "malvvm.api"),
         registerHandlers: (any ServerTransport) throws -> Void) throws(APIError) {
        let router = Router()
        router.add(middleware: JSONErrorMiddleware())
        router.add(middleware: RequestBodyLimitMiddleware())
        let routes = MethodNotAllowedRoutes(router: router)
        do { try registerHandlers(routes) } catch { throw .failed("cannot serve the API on '\(socketPath)': \(error)") }
        routes.refuseOtherMethods()
        try SocketPath.claim(socketPath)
        self.socketPath = socketPath
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
        self.ready = ready
        self.failure = failure
        self.previousMask = previousMask
    }

    /// Returns once the socket is bound, so a client started after this finds it; throws if
    /// the server failed to start. A loaded host can take seconds to start the server's event
    /// loops, hence the long bound. Until it returns the process's umask is the socket's (0177).
    public func waitUntilListening() throws(APIError) {
        if listening.value { return }
        let bound = ready.wait(timeout: .now() + .seconds(30)) == .success
        umask(previousMask)
        if let error = failure.value { throw .failed("cannot serve the API on '\(socketPath)': \(error)") }
        if !bound {
            task.cancel()
            throw .failed("cannot serve the API on '\(socketPath)': not listening after 30 s")
        }
        listening.value = true
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
