import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The CLI's side of the control APIs: one request per call over a VM's Unix socket, or the
/// GPU daemon's (`peer` names which in errors).
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

    public func vmInfo() async throws(APIError) -> VMInfo { try await call(.GET, "/vm") }
    public func pause() async throws(APIError) { try await callNoContent(.PUT, "/vm/pause") }
    public func resume() async throws(APIError) { try await callNoContent(.PUT, "/vm/resume") }
    public func shutdown() async throws(APIError) { try await callNoContent(.PUT, "/vm/shutdown") }
    public func vgpus() async throws(APIError) -> [VGPUInfo] { try await call(.GET, "/vgpus") }
    public func vgpu(id: String) async throws(APIError) -> VGPUInfo { try await call(.GET, "/vgpus/\(escaped(id))") }
    public func attachVGPU(_ request: AttachVGPURequest) async throws(APIError) -> VGPUInfo {
        try await call(.POST, "/vgpus", body: request)
    }
    public func detachVGPU(id: String) async throws(APIError) { try await callNoContent(.DELETE, "/vgpus/\(escaped(id))") }

    // The GPU daemon's API.
    public func daemonStatus() async throws(APIError) -> GPUDaemonStatus { try await call(.GET, "/status") }
    public func resetDaemonMetrics() async throws(APIError) { try await callNoContent(.PUT, "/metrics/reset") }

    // MLaaS services, on either API.
    public func mlaasServices() async throws(APIError) -> [MLaaSServiceInfo] { try await call(.GET, "/mlaas") }
    public func loadService(_ request: LoadServiceRequest) async throws(APIError) -> MLaaSServiceInfo {
        try await call(.POST, "/mlaas", body: request)
    }
    public func unloadService(name: String) async throws(APIError) { try await callNoContent(.DELETE, "/mlaas/\(escaped(name))") }

    private func escaped(_ component: String) -> String {
        component.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? component
    }

    private func call<T: Decodable>(_ method: HTTPMethod, _ path: String, body: (some Encodable)? = Optional<String>.none) async throws(APIError) -> T {
        let data = try await send(method, path, body: body)
        do { return try StrictJSON.decoder.decode(T.self, from: data) } catch {
            throw .failed("the \(peer) answered \(method) \(path) with a body that is not a \(T.self)")
        }
    }

    private func callNoContent(_ method: HTTPMethod, _ path: String) async throws(APIError) {
        _ = try await send(method, path, body: Optional<String>.none)
    }

    private func send(_ method: HTTPMethod, _ path: String, body: (some Encodable)?) async throws(APIError) -> Data {
        guard FileManager.default.fileExists(atPath: socketPath) else {
            throw .notFound("no \(peer) API socket at '\(socketPath)'")
        }
        guard let url = URL(httpURLWithSocketPath: socketPath, uri: "/\(APIServer.version)\(path)") else {
            throw .badRequest("API socket path '\(socketPath)' cannot be used in a URL")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        if let body {
            do {
                request.body = .bytes(ByteBuffer(bytes: try StrictJSON.encoder.encode(body)))
                request.headers.add(name: "Content-Type", value: "application/json")
            } catch { throw .badRequest("cannot encode the request: \(error)") }
        }
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: timeout)
            let bytes = try await response.body.collect(upTo: 16 << 20)
            let data = Data(bytes.readableBytesView)
            guard (200..<300).contains(response.status.code) else {
                let message = (try? StrictJSON.decoder.decode(APIErrorBody.self, from: data).error)
                    ?? "HTTP \(response.status.code) \(response.status.reasonPhrase)"
                switch response.status.code {
                case 400: throw APIError.badRequest(message)
                case 404: throw APIError.notFound(message)
                case 409: throw APIError.conflict(message)
                case 503: throw APIError.unavailable(message)
                default: throw APIError.failed(message)
                }
            }
            return data
        } catch let error as APIError {
            throw error
        } catch {
            throw .unavailable("cannot reach the \(peer) at '\(socketPath)': \(error)")
        }
    }
}
