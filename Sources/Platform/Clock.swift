import Glibc

/// Nanoseconds on CLOCK_MONOTONIC: the one clock every module's wall-time figures use (the
/// scheduler's utilisation and queueing, the vGPUs' stage times), so they compare.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
}

/// CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID): what work on that thread
/// cost, without what else the host ran meanwhile.
public func threadCPUNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
}
