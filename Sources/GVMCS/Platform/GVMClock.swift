/// Time as the unit sees it, in nanoseconds from an arbitrary origin.
///
/// Injected so the preemption timer and the time-run fields are deterministic in tests (a
/// manual clock advanced by the fake executor) and real in the device (`MonotonicClock`).
public protocol GVMClock: AnyObject {
    func now() -> UInt64
}

import Platform

/// CLOCK_MONOTONIC: never steps backwards, which a time slice must not.
public final class MonotonicClock: GVMClock {
    public init() {}

    public func now() -> UInt64 { monotonicNanoseconds() }
}
