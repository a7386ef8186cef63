@testable import GPUHost
import Synchronization
import Testing

/// The scheduler holds its backend as `any ComputeBackend`, so a backend's own `lanes`,
/// `waitForAny` and `shareHostMemory` reach it only if the protocol declares them. Until
/// 2026-12-05 two of them lived only in a protocol extension: statically dispatched, the
/// scheduler saw one lane and polled completions even on the H200's eight queues.
@Suite("What a backend implements reaches the scheduler")
struct BackendRequirementsTests {
    /// The CPU reference backend, offering three lanes and noting what the scheduler asks of
    /// it. Everything else is the real backend's.
    final class ThreeLaneBackend: ComputeBackend, @unchecked Sendable {
        let base = CPUBackend()
        let lanesUsed = Mutex(Set<Int>())
        let waitsForAny = Mutex(0)

        var kind: BackendKind { base.kind }
        var device: DeviceInfo { base.device }
        var lanes: Int { 3 }

        func createBuffer(byteCount: Int, placement: MemoryPlacement) throws(GPUError) -> BufferID {
            try base.createBuffer(byteCount: byteCount, placement: placement)
        }
        func destroyBuffer(_ buffer: BufferID) throws(GPUError) { try base.destroyBuffer(buffer) }
        func capacity(of buffer: BufferID) -> Int? { base.capacity(of: buffer) }
        func write(_ buffer: BufferID, byteOffset: Int, from bytes: UnsafeRawBufferPointer) throws(GPUError) {
            try base.write(buffer, byteOffset: byteOffset, from: bytes)
        }
        func read(_ buffer: BufferID, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws(GPUError) {
            try base.read(buffer, byteOffset: byteOffset, into: bytes)
        }
        func submit(_ batch: ValidatedBatch) throws(GPUError) -> SubmissionID {
            _ = lanesUsed.withLock { $0.insert(batch.batch.lane) }
            return try base.submit(batch)
        }
        func isComplete(_ submission: SubmissionID) throws(GPUError) -> Bool { try base.isComplete(submission) }
        func wait(_ submission: SubmissionID, timeoutNanoseconds: UInt64) throws(GPUError) -> BatchCompletion {
            try base.wait(submission, timeoutNanoseconds: timeoutNanoseconds)
        }
        func waitForAny(_ submissions: [SubmissionID], timeoutNanoseconds: UInt64) throws(GPUError) -> [SubmissionID] {
            waitsForAny.withLock { $0 += 1 }
            return try base.waitForAny(submissions, timeoutNanoseconds: timeoutNanoseconds)
        }
    }

    @Test("the scheduler spreads clients over the backend's lanes and waits through its waitForAny")
    func schedulerUsesTheBackendsOwnLanesAndWait() throws {
        let backend = ThreeLaneBackend()
        let scheduler = try GPUScheduler(backend: backend)
        defer { scheduler.stop() }
        var tickets: [BatchTicket] = []
        for index in 0 ..< 3 {
            let client = try scheduler.addClient(ClientConfiguration(name: "client\(index)"))
            let buffer = try scheduler.createBuffer(for: client, byteCount: 64)
            let batch = CommandBatch([.scale(ScaleParams(count: 16, alpha: 2, x: BufferRange(buffer, count: 16)))])
            for _ in 0 ..< 4 { tickets.append(try scheduler.submit(batch, for: client)) }
        }
        for ticket in tickets {
            if case let .failure(error) = ticket.wait() { Issue.record("\(error)") }
        }
        #expect(backend.lanesUsed.withLock { $0 } == [0, 1, 2])
        #expect(backend.waitsForAny.withLock { $0 } > 0)
    }
}
