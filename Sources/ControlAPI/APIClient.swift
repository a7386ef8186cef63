import AsyncHTTPClient
import Foundation
import GPUDaemonOpenAPI
import MalvvmOpenAPI
import NIOCore
import OpenAPIAsyncHTTPClient
import OpenAPIRuntime

/// The CLI's side of the control APIs: one request per call over a VM's Unix socket, or the
/// GPU daemon's (`peer` names which in errors), through the clients swift-openapi-generator
/// made from docs/api/malvvm.yaml and docs/api/gpud.yaml.
public struct APIClient: Sendable {
    public let socketPath: String
    let peer: String
    let timeout: TimeAmount

    public init(socketPath: String, peer: String = "VM", timeout: Duration = .seconds(30)) {
        self.socketPath = socketPath
        self.peer = peer
        let (seconds, attoseconds) = timeout.components
        self.timeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    public func vmInfo() async throws(APIError) -> VMInfo { try await vm { try APIWire.domain(try await $0.getVM().ok.body.json) } }
    public func pause() async throws(APIError) { try await vm { _ = try await $0.pauseVM().noContent } }
    public func resume() async throws(APIError) { try await vm { _ = try await $0.resumeVM().noContent } }
    public func shutdown() async throws(APIError) { try await vm { _ = try await $0.shutdownVM().noContent } }
    public func vgpus() async throws(APIError) -> [VGPUInfo] {
        try await vm { try APIWire.domain(try await $0.listVGPUs().ok.body.json) }
    }
    public func vgpu(id: String) async throws(APIError) -> VGPUInfo {
        try await vm { try APIWire.domain(try await $0.getVGPU(path: .init(id: id)).ok.body.json) }
    }
    public func attachVGPU(_ request: AttachVGPURequest) async throws(APIError) -> VGPUInfo {
        try await vm { try APIWire.domain(try await $0.attachVGPU(body: .json(APIWire.generated(request))).created.body.json) }
    }
    public func detachVGPU(id: String) async throws(APIError) {
        try await vm { _ = try await $0.detachVGPU(path: .init(id: id)).noContent }
    }

    // The GPU daemon's API.
    public func daemonStatus() async throws(APIError) -> GPUDaemonStatus {
        try await daemon { try APIWire.domain(try await $0.getStatus().ok.body.json) }
    }
    public func resetDaemonMetrics() async throws(APIError) { try await daemon { _ = try await $0.resetMetrics().noContent } }

    // MLaaS services, on either API. Both documents declare these operations alike (the same
    // paths and schemas), so the VM document's client serves the daemon as well.
    public func mlaasServices() async throws(APIError) -> [MLaaSServiceInfo] {
        try await vm { try APIWire.domain(try await $0.listServices().ok.body.json) }
    }
    public func loadService(_ request: LoadServiceRequest) async throws(APIError) -> MLaaSServiceInfo {
        try await vm { try APIWire.domain(try await $0.loadService(body: .json(APIWire.generated(request))).created.body.json) }
    }
    public func unloadService(name: String) async throws(APIError) {
        try await vm { _ = try await $0.unloadService(path: .init(name: name)).noContent }
    }

    /// One call through the VM document's client.
    private func vm<Answer>(_ call: (MalvvmOpenAPI.Client) async throws -> Answer) async throws(APIError) -> Answer {
        let (serverURL, transport) = try connection()
        return try await answer {
            try await call(MalvvmOpenAPI.Client(serverURL: serverURL, configuration: APIWire.configuration, transport: transport,
                                                middlewares: [APIErrorResponseMiddleware()]))
        }
    }

    /// One call through the daemon document's client.
    private func daemon<Answer>(_ call: (GPUDaemonOpenAPI.Client) async throws -> Answer) async throws(APIError) -> Answer {
        let (serverURL, transport) = try connection()
        return try await answer {
            try await call(GPUDaemonOpenAPI.Client(serverURL: serverURL, configuration: APIWire.configuration, transport: transport,
                                                   middlewares: [APIErrorResponseMiddleware()]))
        }
    }

    /// The socket's URL (`http+unix://`, the API's path prefix) and the transport to reach it.
    private func connection() throws(APIError) -> (URL, AsyncHTTPClientTransport) {
        guard FileManager.default.fileExists(atPath: socketPath) else {
            throw .notFound("no \(peer) API socket at '\(socketPath)'")
        }
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: APIWire.serverURL.path) else {
            throw .badRequest("API socket path '\(socketPath)' cannot be used in a URL")
        }
        return (url, AsyncHTTPClientTransport(configuration: .init(client: .shared, timeout: timeout)))
    }

    /// `call`'s answer, or its failure as the `APIError` the CLI prints: the server's own error
    /// (`APIErrorResponseMiddleware`), an answer that does not fit the document, or no answer.
    private func answer<Answer>(_ call: () async throws -> Answer) async throws(APIError) -> Answer {
        do {
            return try await call()
        } catch let error as APIError {
            throw error
        } catch let error as ClientError {
            switch error.underlyingError {
            case let error as APIError: throw error
            case is DecodingError:
                throw .failed("the \(peer) answered \(error.operationID) with a body that does not fit the API document: "
                    + "\(error.underlyingError)")
            default: throw .unavailable("cannot reach the \(peer) at '\(socketPath)': \(error.underlyingError)")
            }
        } catch {
            // A success status the document does not list for the operation.
            throw .failed("the \(peer) answered unexpectedly: \(error)")
        }
    }
}
