import Dispatch
import Synchronization

/// The VM control API's `VMControl` while the VM is still being built. `malvvm run` starts the
/// API server first and builds the VM while the server's event loops come up on their threads
/// (starting them took as long as everything else before the first guest instruction), then
/// hands the finished controller to `resolve`. A request that arrives in between waits for it;
/// one that arrives after a failed start never gets an answer, and the process is ending then.
public final class PendingVMControl: VMControl, Sendable {
    private let resolved = DispatchGroup()
    private let target = Mutex<(any VMControl)?>(nil)

    public init() {
        resolved.enter()
    }

    /// Every request from now on, and those waiting, go to `control`. Call once.
    public func resolve(_ control: any VMControl) {
        let first = target.withLock { current in
            defer { current = current ?? control }
            return current == nil
        }
        precondition(first, "PendingVMControl resolved twice")
        resolved.leave()
    }

    private var control: any VMControl {
        resolved.wait()
        return target.withLock { $0! }
    }

    public func info() -> VMInfo { control.info() }
    public func metrics() -> VMMetrics { control.metrics() }
    public func pause() throws(APIError) { try control.pause() }
    public func resume() throws(APIError) { try control.resume() }
    public func shutdown() throws(APIError) { try control.shutdown() }
    public func vgpus() -> [VGPUInfo] { control.vgpus() }
    public func vgpu(id: String) throws(APIError) -> VGPUInfo { try control.vgpu(id: id) }
    public func attachVGPU(_ request: AttachVGPURequest) async throws(APIError) -> VGPUInfo {
        try await control.attachVGPU(request)
    }
    public func detachVGPU(id: String) async throws(APIError) { try await control.detachVGPU(id: id) }
    public var mlaas: any MLaaSControl { control.mlaas }
}
