@testable import GPUHost
import Platform
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A client that keeps `depth` batches queued until stopped: each completion callback
/// resubmits, so the load is closed-loop and needs no thread of its own.
final class BackloggedClient: Sendable {
    let id: ClientID
    let batch: CommandBatch
    private let scheduler: GPUScheduler
    private let stopped = Atomic<Bool>(false)
    let completions = Atomic<Int>(0)
    let failures = Atomic<Int>(0)

    /// `size`: the SGEMM edge; the batch is `kernels` SGEMMs on the client's own buffers.
    init(_ scheduler: GPUScheduler, name: String, weight: Double = 1, size: Int = 48, kernels: Int = 1) throws {
        self.scheduler = scheduler
        let id = try scheduler.addClient(ClientConfiguration(name: name, weight: weight))
        self.id = id
        let bytes = size * size * 4
        let a = try scheduler.createBuffer(for: id, byteCount: bytes)
        let b = try scheduler.createBuffer(for: id, byteCount: bytes)
        let c = try scheduler.createBuffer(for: id, byteCount: bytes)
        let ones = [Float](repeating: 0.5, count: size * size)
        try ones.withUnsafeBytes { raw in
            try scheduler.write(a, for: id, byteOffset: 0, from: raw)
            try scheduler.write(b, for: id, byteOffset: 0, from: raw)
        }
        let kernel = Kernel.sgemm(SGEMMParams(m: size, n: size, k: size, a: BufferRange(a, count: size * size),
                                              b: BufferRange(b, count: size * size), c: BufferRange(c, count: size * size)))
        batch = CommandBatch([Kernel](repeating: kernel, count: kernels))
    }

    func start(depth: Int = 4) throws {
        stopped.store(false, ordering: .relaxed)
        for _ in 0 ..< depth { try submitOne() }
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    private func submitOne() throws {
        try scheduler.submit(batch, for: id) { [self] result in
            switch result {
            case .success: completions.add(1, ordering: .relaxed)
            case .failure: failures.add(1, ordering: .relaxed)
            }
            guard case .success = result, !stopped.load(ordering: .relaxed) else { return }
            // A removed client or a stopped scheduler refuses; the loop just ends.
            try? submitOne()
        }
    }

    /// Stops and waits for the client's queue to drain.
    func stopAndDrain() throws {
        stop()
        try scheduler.drain(id)
    }
}

func sleepSeconds(_ seconds: Double) {
    usleep(useconds_t(seconds * 1_000_000))
}

/// Waits until the scheduler has charged at least `nanoseconds` of GPU time in the current
/// window, or `wallLimit` seconds passed; share tests compare charged time, so they run for
/// a fixed amount of *work*, however loaded the machine is.
func runUntilCharged(_ scheduler: GPUScheduler, nanoseconds: UInt64, wallLimit: Double = 20) {
    let start = monotonicNanoseconds()
    while scheduler.metrics().busyNanoseconds < nanoseconds,
          Double(monotonicNanoseconds() - start) < wallLimit * 1e9 {
        sleepSeconds(0.05)
    }
}
