#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with a condition variable. The device's state is touched by the device
/// thread and by every context's completion thread, so each shared structure sits behind one.
final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    /// Call locked.
    func wait() { pthread_cond_wait(condition, mutex) }
    func broadcast() { pthread_cond_broadcast(condition) }

    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// Runs jobs one at a time, in order, on a thread of its own: a context's completion thread.
/// A context's submissions, transfers and the frees that must follow them go through it, so
/// they happen in the order the guest queued them, and waiting on the GPU for one context
/// never holds up the device thread or another context. The queue needs no bound of its
/// own: every job answers a chain the driver has not had back, so the control queue's size
/// bounds it.
final class SerialWorker: @unchecked Sendable {
    private let lock = Lock()
    // Guarded by `lock`.
    private var jobs: [() -> Void] = []
    private var head = 0
    private var stopping = false
    private var exited = false

    init(name: String) throws(VirtioGPUError) {
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { argument in
            let worker = Unmanaged<SerialWorker>.fromOpaque(argument!).takeRetainedValue()
            worker.run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<SerialWorker>.fromOpaque(context).release()
            throw .threadFailed(name: name, errno: rc)
        }
        pthread_detach(thread)
    }

    /// Queues a job; false once the worker is stopping (the job is dropped).
    @discardableResult
    func enqueue(_ job: @escaping () -> Void) -> Bool {
        lock.withLock {
            guard !stopping else { return false }
            jobs.append(job)
            lock.broadcast()
            return true
        }
    }

    /// Lets the queued jobs run, then ends the thread. With `wait`, returns once it has
    /// ended; never wait from a job of this worker.
    func stop(wait: Bool) {
        lock.lock()
        defer { lock.unlock() }
        stopping = true
        lock.broadcast()
        while wait && !exited { lock.wait() }
    }

    private func run() {
        lock.lock()
        while true {
            if head < jobs.count {
                let job = jobs[head]
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
            lock.wait()
        }
        exited = true
        lock.broadcast()
        lock.unlock()
    }
}
