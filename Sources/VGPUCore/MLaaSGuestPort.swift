/// The VM's MLaaS services as its guest reaches them through a vGPU (docs/vgpu-protocol.md,
/// "MLaaS requests"): list, enable NAME with parameters, disable NAME.
///
/// The VM's process implements it over its service registry (ControlAPI's `MLaaSController`)
/// and binds it to its vGPUs (`VGPU.bindMLaaS`); the device only decodes and checks the
/// guest's requests and encodes the answers, so no vGPU kind depends on the registry.
public protocol MLaaSGuestPort: AnyObject, Sendable {
    /// The services this VM is permitted (its `--mlaas` list), in that order.
    func mlaasServices() -> [MLaaSGuestService]
    /// Hands `parameters` (the service's own format) to the service's `configure` and marks it
    /// enabled for this VM; `gpu` is the vGPU the request came through (the contexts the
    /// service may compute on), nil for a vGPU that offers none.
    func mlaasEnable(_ name: String, parameters: [UInt8], gpu: (any MLaaSContextGPU)?) throws(MLaaSGuestError)
    func mlaasDisable(_ name: String) throws(MLaaSGuestError)
    /// A request to a service this guest enabled (the service's own format); at most
    /// `capacity` bytes come back.
    func mlaasRequest(_ name: String, request: [UInt8], capacity: Int) throws(MLaaSGuestError) -> [UInt8]
}

/// One entry of the guest's service list.
public struct MLaaSGuestService: Sendable, Equatable {
    public var name: String
    /// The ABI's kind (1 OS-for-ML, 2 ML-for-OS); 0 while the service is not loaded.
    public var kind: UInt32
    public var loaded: Bool
    public var enabled: Bool

    public init(name: String, kind: UInt32, loaded: Bool, enabled: Bool) {
        self.name = name
        self.kind = kind
        self.loaded = loaded
        self.enabled = enabled
    }
}

/// Why a guest's MLaaS request was refused: a reason code the guest can act on (the wire's
/// `mlaas_status`) and one line for its log.
public struct MLaaSGuestError: Error, Sendable, Equatable {
    public enum Reason: UInt32, Sendable {
        /// A malformed name, a parameter block too long, non-zero reserved fields.
        case malformed = 1
        /// No module offers a service of that name.
        case unknownService = 2
        /// Not in this VM's `--mlaas` list.
        case notPermitted = 3
        /// Permitted, but not loaded now (unloaded through the API).
        case notLoaded = 4
        /// The service's `configure` refused the parameters.
        case refused = 5
        /// DISABLE of a service that is not enabled.
        case notEnabled = 6
        /// This vGPU carries no MLaaS requests (a GPU daemon's vGPU, a VM without services).
        case unavailable = 7
        case internalError = 8
    }

    public var reason: Reason
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }
}
