import Dispatch
import Synchronization

/// Parks the vCPU thread between a pause and a resume, as Firecracker's and Cloud
/// Hypervisor's pause do: vCPUs stop at an exit boundary, devices keep serving what is in
/// flight, guest memory stays as it is. `pause` returns only once the vCPU is parked, so a
/// caller that snapshots or inspects the guest sees it still.
final class PauseGate: Sendable {
    private struct State {
        var requested = false
        var parked = false
    }

    private let state = Mutex(State())
    private let parkedSignal = DispatchSemaphore(value: 0)
    private let resumeSignal = DispatchSemaphore(value: 0)

    var isPaused: Bool { state.withLock { $0.requested } }

    /// Asks the vCPU to park. False if a pause is already requested.
    func request() -> Bool {
        state.withLock { state in
            guard !state.requested else { return false }
            state.requested = true
            return true
        }
    }

    /// Waits for the vCPU to report parked.
    func waitUntilParked(timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
        return parkedSignal.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success
    }

    /// Lets a parked (or about to park) vCPU go on. False if no pause was requested.
    func release() -> Bool {
        let wasRequested = state.withLock { state -> Bool in
            guard state.requested else { return false }
            state.requested = false
            return true
        }
        if wasRequested { resumeSignal.signal() }
        return wasRequested
    }

    /// On the vCPU thread, between runs: parks while a pause is requested.
    func parkIfRequested() {
        let park = state.withLock { state -> Bool in
            guard state.requested, !state.parked else { return false }
            state.parked = true
            return true
        }
        guard park else { return }
        parkedSignal.signal()
        resumeSignal.wait()
        state.withLock { $0.parked = false }
    }
}
