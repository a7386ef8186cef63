import Glibc

/// Runs jobs one at a time, in order, on a thread of its own. A para-vGPU context's
/// submissions, transfers and the frees that must follow them go through one, so they happen
/// in the order the guest queued them, and waiting on the GPU for one context never holds up
/// the device thread or another context. The queue has no bound of its own: its users bound
/// what they enqueue (a vGPU context: by the control queue's size).
public final class SerialWorker: @unchecked Sendable {
    private let lock = Monitor()
    private let changed: Monitor.Condition
    // Guarded by `lock`. A job is dropped (nil) the moment it is taken: a job's closure holds
    // what it works on (a vGPU context holds its worker, whose finished jobs held the context
    // and its device back: a reference cycle that kept every served VM's guest memory mapped
    // in gpud).
    private var jobs: [(() -> Void)?] = []
    private var head = 0
    private var stopping = false
    private var exited = false

    public init(name: String) throws(ThreadStartError) {
        changed = lock.makeCondition()
        _ = try NativeThread(name: name, detached: true) { [self] in run() }
    }

    /// Queues a job; false once the worker is stopping (the job is dropped).
    @discardableResult
    public func enqueue(_ job: @escaping () -> Void) -> Bool {
        lock.withLock {
            guard !stopping else { return false }
            jobs.append(job)
            changed.broadcast()
            return true
        }
    }

    /// Lets the queued jobs run, then ends the thread. With `wait`, returns once it has
    /// ended; never wait from a job of this worker.
    public func stop(wait: Bool) {
        lock.lock()
        defer { lock.unlock() }
        stopping = true
        changed.broadcast()
        while wait && !exited { changed.wait() }
    }

    private func run() {
        lock.lock()
        while true {
            if head < jobs.count, let job = jobs[head] {
                jobs[head] = nil
                head += 1
                if head > 64 && head * 2 > jobs.count {
                    jobs.removeFirst(head)
                    head = 0
                }
                lock.unlock()
                job()
                lock.lock()
                continue
            }
            if stopping { break }
            changed.wait()
        }
        jobs.removeAll()
        head = 0
        exited = true
        changed.broadcast()
        lock.unlock()
    }
}
