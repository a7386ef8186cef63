/// Time as the unit sees it, in nanoseconds from an arbitrary origin.
///
/// Injected so the preemption timer and the time-run fields are deterministic in tests (a
/// manual clock advanced by the fake executor) and real in the device (`MonotonicClock`).
public protocol GVMClock: AnyObject {
    func now() -> UInt64
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CLOCK_MONOTONIC: never steps backwards, which a time slice must not.
public final class MonotonicClock: GVMClock {
    public init() {}

    public func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
