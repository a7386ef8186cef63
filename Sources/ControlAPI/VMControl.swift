/// What the control API can ask of a VM. `MachineController` implements it for a running
/// `Machine`; the HTTP layer only maps these calls to routes and errors to status codes.
public protocol VMControl: Sendable {
    func info() -> VMInfo
    /// The VM's counters now, for `GET /v1/metrics`.
    func metrics() -> VMMetrics
    func pause() throws(APIError)
    func resume() throws(APIError)
    /// Asks the VM to stop; `malvvm run` then exits 0.
    func shutdown() throws(APIError)
    func vgpus() -> [VGPUInfo]
    func vgpu(id: String) throws(APIError) -> VGPUInfo
    /// Creates a vGPU and hot-plugs it into the running guest.
    func attachVGPU(_ request: AttachVGPURequest) async throws(APIError) -> VGPUInfo
    /// Asks the guest to let go of the vGPU (attention button), waits, then removes it.
    func detachVGPU(id: String) async throws(APIError)
    /// The VM's MLaaS services (docs/mlaas.md): the routes under /v1/mlaas.
    var mlaas: any MLaaSControl { get }
}

/// A failed API call: its HTTP status and a one-line message for the client to print.
public enum APIError: Error, Sendable, Equatable, CustomStringConvertible {
    case badRequest(String)
    case notFound(String)
    case conflict(String)
    case unavailable(String)
    case failed(String)

    public var status: Int {
        switch self {
        case .badRequest: 400
        case .notFound: 404
        case .conflict: 409
        case .unavailable: 503
        case .failed: 500
        }
    }

    public var message: String {
        switch self {
        case let .badRequest(m), let .notFound(m), let .conflict(m), let .unavailable(m), let .failed(m): m
        }
    }

    public var description: String { message }
}
