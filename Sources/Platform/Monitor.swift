import Glibc

/// A pthread mutex with condition variables bound to it: the lock every module uses where it
/// also waits (the scheduler needs timed waits on the monotonic clock, since token refills fall
/// due at a known instant, which Synchronization's Mutex does not offer).
public final class Monitor: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    /// A condition on this monitor's mutex, waiting on CLOCK_MONOTONIC.
    public final class Condition: @unchecked Sendable {
        private let cond: UnsafeMutablePointer<pthread_cond_t>
        private unowned let monitor: Monitor

        fileprivate init(_ monitor: Monitor) {
            self.monitor = monitor
            cond = .allocate(capacity: 1)
            var attributes = pthread_condattr_t()
            pthread_condattr_init(&attributes)
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
            pthread_cond_init(cond, &attributes)
            pthread_condattr_destroy(&attributes)
        }

        deinit {
            pthread_cond_destroy(cond)
            cond.deallocate()
        }

        /// Call with the monitor locked.
        public func wait() { pthread_cond_wait(cond, monitor.mutex) }

        /// Call with the monitor locked; returns at `deadline` (monotonic ns) at the latest.
        public func wait(until deadline: UInt64) {
            var spec = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            pthread_cond_timedwait(cond, monitor.mutex, &spec)
        }

        public func signal() { pthread_cond_signal(cond) }
        public func broadcast() { pthread_cond_broadcast(cond) }
    }

    public func makeCondition() -> Condition { Condition(self) }
}
