import Platform
/// What a batch cost once the scheduler ran it.
public struct ScheduledCompletion: Hashable, Sendable {
    public var client: ClientID
    /// The device's report: kernels, dispatches, barriers and measured execution time.
    public var batch: BatchCompletion
    /// GPU time charged to the client: the device timestamps when the backend has them,
    /// otherwise the host time from hand-off to completion.
    public var chargedNanoseconds: UInt64
    /// Queued → handed to the device, on the monotonic clock.
    public var queueingNanoseconds: UInt64
    public var enqueuedAt: UInt64
    public var submittedAt: UInt64
    public var completedAt: UInt64
}

/// A handle on one submitted batch: wait on it, poll it, or have a callback run when it
/// finishes. The callback runs on the scheduler thread, so it must be short and must not
/// call back into the scheduler's blocking operations (read, write, removeClient).
public final class BatchTicket: @unchecked Sendable {
    public let client: ClientID
    private let monitor = Monitor()
    private let done: Monitor.Condition
    // Guarded by `monitor`.
    private var outcome: Result<ScheduledCompletion, SchedulerError>?
    private let callback: (@Sendable (Result<ScheduledCompletion, SchedulerError>) -> Void)?

    init(client: ClientID, callback: (@Sendable (Result<ScheduledCompletion, SchedulerError>) -> Void)?) {
        self.client = client
        self.callback = callback
        done = monitor.makeCondition()
    }

    /// Blocks until the batch has run, failed, or been cancelled.
    public func wait() -> Result<ScheduledCompletion, SchedulerError> {
        monitor.lock()
        defer { monitor.unlock() }
        while true {
            if let outcome { return outcome }
            done.wait()
        }
    }

    /// As `wait()`, but nil once `timeoutNanoseconds` have passed without an outcome.
    public func wait(timeoutNanoseconds: UInt64) -> Result<ScheduledCompletion, SchedulerError>? {
        let deadline = monotonicNanoseconds() &+ timeoutNanoseconds
        monitor.lock()
        defer { monitor.unlock() }
        while outcome == nil, monotonicNanoseconds() < deadline {
            done.wait(until: deadline)
        }
        return outcome
    }

    public var result: Result<ScheduledCompletion, SchedulerError>? {
        monitor.withLock { outcome }
    }

    /// Called by the scheduler; the first outcome stands (a learned-slice batch's pieces share
    /// one ticket, and a failed piece or a cancellation finishes it before the others retire).
    func finish(_ result: Result<ScheduledCompletion, SchedulerError>) {
        let first = monitor.withLock { () -> Bool in
            guard outcome == nil else { return false }
            outcome = result
            done.broadcast()
            return true
        }
        if first { callback?(result) }
    }
}
