/// A task executor with a thread of its own: async work given it as a preference runs there,
/// never waiting for Swift's cooperative pool. The pool has one thread per core; a process
/// (or a test runner) whose other work blocks those threads would otherwise starve, say, an
/// API server that has to start listening.
public final class ThreadTaskExecutor: TaskExecutor, @unchecked Sendable {
    private let worker: SerialWorker

    public init(name: String) throws(ThreadStartError) {
        worker = try SerialWorker(name: name)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        worker.enqueue { job.runSynchronously(on: executor) }
    }

    /// Lets the queued jobs run, then ends the thread.
    public func stop() { worker.stop(wait: false) }
}
