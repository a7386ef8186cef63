import Platform

/// Parks the vCPU threads between a pause and a resume, as Firecracker's and Cloud
/// Hypervisor's pause do: vCPUs stop at an exit boundary, devices keep serving what is in
/// flight, guest memory stays as it is. `pause` returns only once every vCPU is parked, so a
/// caller that snapshots or inspects the guest sees it still.
final class PauseGate: @unchecked Sendable {
    private let monitor = Monitor()
    private let changed: Monitor.Condition
    private var requested = false
    private var parked = 0

    init() { changed = monitor.makeCondition() }

    var isPaused: Bool { monitor.withLock { requested } }

    /// Asks the vCPUs to park. False if a pause is already requested.
    func request() -> Bool {
        monitor.withLock {
            guard !requested else { return false }
            requested = true
            return true
        }
    }

    /// Waits until `count` vCPUs report parked.
    func waitUntilParked(count: Int, timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        let deadline = monotonicNanoseconds() + UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
        return monitor.withLock {
            while parked < count {
                guard requested, monotonicNanoseconds() < deadline else { return false }
                changed.wait(until: deadline)
            }
            return true
        }
    }

    /// Lets parked (or about to park) vCPUs go on. False if no pause was requested.
    func release() -> Bool {
        monitor.withLock {
            guard requested else { return false }
            requested = false
            changed.broadcast()
            return true
        }
    }

    /// On a vCPU thread, between runs: parks while a pause is requested.
    func parkIfRequested() {
        monitor.withLock {
            guard requested else { return }
            parked += 1
            changed.broadcast()
            while requested { changed.wait() }
            parked -= 1
        }
    }
}
