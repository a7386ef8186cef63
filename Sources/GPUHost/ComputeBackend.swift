#if canImport(Glibc)
import Glibc
import Platform
#endif
/// Identifies one submitted batch until `wait` retires it.
public struct SubmissionID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public var description: String { "submission#\(rawValue)" }
}

/// The kernels one client hands the device in one go, with the host copies that feed and
/// drain them. A backend records a batch into one command buffer with barriers only between
/// dependent kernels, and charges the batch its measured device time, so the batch is the
/// unit a scheduler preempts at and bills.
///
/// Uploads land before the first kernel and downloads are taken after the last one and are
/// in host memory when `wait` returns, so a batch with host data is one submission and one
/// wait, however many ranges it moves. The host memory follows `UnsafeHostBytes`'s lifetime
/// contract. Uploads must not overlap one another in a buffer; downloads may.
public struct CommandBatch: Hashable, Sendable {
    public var kernels: [Kernel]
    /// Which of the device's queues runs the batch (modulo `ComputeBackend.lanes`). Batches
    /// on one lane run in submission order; batches on different lanes may run at once, so a
    /// scheduler puts each client on a lane of its own and keeps a client on it.
    public var lane: Int = 0
    /// Host → buffer copies, done before the first kernel.
    public var uploads: [HostTransfer]
    /// Buffer → host copies, done after the last kernel, in this order.
    public var downloads: [HostTransfer]

    public init(_ kernels: [Kernel] = [], uploads: [HostTransfer] = [], downloads: [HostTransfer] = []) {
        self.kernels = kernels
        self.uploads = uploads
        self.downloads = downloads
    }

    public mutating func append(_ kernel: Kernel) {
        kernels.append(kernel)
    }
}

public enum TimingSource: String, Hashable, Sendable {
    /// Device timestamps around the batch (vkCmdWriteTimestamp), scaled by timestampPeriod.
    case deviceTimestamps
    /// CPU time of the host thread that ran the batch (CPU reference backend): execution only,
    /// like device timestamps, so a loaded host does not inflate a client's bill.
    case hostClock
    /// The queue cannot write timestamps.
    case unavailable
}

/// What a finished batch cost.
public struct BatchCompletion: Hashable, Sendable {
    public var submission: SubmissionID
    public var kernelCount: Int
    /// Shader dispatches recorded; some kernels take more than one.
    public var dispatchCount: Int
    /// Barriers recorded between dependent dispatches (not counting the batch's entry and
    /// exit barriers).
    public var barrierCount: Int
    /// Execution time of the batch, from `timing`; nil when unavailable. On a device it
    /// includes the batch's staged transfer copies, which are device work too.
    public var executionNanoseconds: UInt64?
    public var timing: TimingSource
    /// Host time spent on the batch's uploads: copying them into mapped buffers or staging
    /// memory (at submit).
    public var uploadNanoseconds: UInt64
    /// Host time spent copying the batch's downloads out to host memory (at wait).
    public var downloadNanoseconds: UInt64
    /// Host time `submit` took besides the uploads: lowering kernels to dispatches, recording
    /// the command buffer (or finding one to replay) and handing it to the queue. On a real
    /// GPU's driver this, not the device, is most of a small batch's cost.
    public var submitNanoseconds: UInt64
    /// The batch ran a command buffer recorded for an earlier submission of the same
    /// validated kernels (`ValidatedBatch.kernelList`) instead of a fresh recording.
    public var replayedRecording: Bool
    /// Transfer bytes the device copied straight out of or into host memory shared with it
    /// (`ComputeBackend.shareHostMemory`): no host copy, no staging; their cost is device time.
    public var zeroCopyBytes: UInt64

    public init(submission: SubmissionID, kernelCount: Int, dispatchCount: Int, barrierCount: Int,
                executionNanoseconds: UInt64?, timing: TimingSource,
                uploadNanoseconds: UInt64 = 0, downloadNanoseconds: UInt64 = 0,
                submitNanoseconds: UInt64 = 0, replayedRecording: Bool = false, zeroCopyBytes: UInt64 = 0) {
        self.submission = submission
        self.kernelCount = kernelCount
        self.dispatchCount = dispatchCount
        self.barrierCount = barrierCount
        self.executionNanoseconds = executionNanoseconds
        self.timing = timing
        self.uploadNanoseconds = uploadNanoseconds
        self.downloadNanoseconds = downloadNanoseconds
        self.submitNanoseconds = submitNanoseconds
        self.replayedRecording = replayedRecording
        self.zeroCopyBytes = zeroCopyBytes
    }
}

public enum BackendKind: String, Hashable, Sendable {
    case vulkan
    case cpuReference
}

/// One compute device and the memory on it. The scheduler (a later slice) owns one backend
/// and is its only submitter; implementations are nevertheless internally locked so that
/// submission and completion can happen on different threads.
///
/// Contract: buffers are zero-filled at creation; host reads and writes must not race a batch
/// in flight that uses the same buffer (the scheduler orders them). A batch's own transfers
/// count as such host accesses wherever a backend serves them by memcpy into mapped memory:
/// its uploads at submit, its downloads at wait; the scheduler therefore never has another
/// batch of the same client on the device beside a batch with transfers. Every kernel and
/// transfer of a batch is validated before any of it runs, and a batch with one invalid
/// kernel or transfer runs nothing.
public protocol ComputeBackend: AnyObject, Sendable {
    var kind: BackendKind { get }
    var device: DeviceInfo { get }

    func createBuffer(byteCount: Int, placement: MemoryPlacement) throws(GPUError) -> BufferID
    /// Forgets the id at once; the memory is freed when no batch in flight uses it any more.
    func destroyBuffer(_ buffer: BufferID) throws(GPUError)
    /// Size in bytes, or nil when the id is unknown.
    func capacity(of buffer: BufferID) -> Int?
    func write(_ buffer: BufferID, byteOffset: Int, from bytes: UnsafeRawBufferPointer) throws(GPUError)
    func read(_ buffer: BufferID, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws(GPUError)

    /// Checks that a validated batch still fits this backend's buffers (`ValidatedBatch.fits`)
    /// and enqueues it; returns before it has run on asynchronous devices. A batch's uploads
    /// have been read from host memory when this returns.
    func submit(_ batch: ValidatedBatch) throws(GPUError) -> SubmissionID
    /// Whether the device has finished the batch; its downloads reach host memory only in
    /// `wait`.
    func isComplete(_ submission: SubmissionID) throws(GPUError) -> Bool
    /// Blocks until the batch has run and its downloads are in host memory, then retires the
    /// id and reports the batch's cost. On `timedOut` the batch stays in flight and may be
    /// waited for again (its downloads are not done yet).
    func wait(_ submission: SubmissionID, timeoutNanoseconds: UInt64) throws(GPUError) -> BatchCompletion

    // Requirements with defaults below. Declared here, not only in the extension, so a call
    // through `any ComputeBackend` (the scheduler's) reaches a backend's own implementation:
    // an extension-only method is dispatched statically, and until 2026-12-05 the scheduler
    // saw one lane and the polling `waitForAny` even on a device with 8 queues.

    /// Queues batches run on side by side (`CommandBatch.lane`).
    var lanes: Int { get }
    /// The submissions that have finished, waiting up to the timeout for at least one; empty
    /// on timeout.
    func waitForAny(_ submissions: [SubmissionID], timeoutNanoseconds: UInt64) throws(GPUError) -> [SubmissionID]
    /// Lets the device copy batch transfers straight out of and into `bytes` (a VM's RAM),
    /// with no host copy and no staging, until the returned share is released; nil where the
    /// backend gains nothing by it or the device cannot (the transfers then take the usual
    /// way). The bytes must stay mapped until the share is released and every batch that
    /// transferred through them has retired.
    func shareHostMemory(_ bytes: UnsafeMutableRawBufferPointer) -> HostMemoryShare?
}

extension ComputeBackend {
    /// One queue unless the backend says otherwise.
    public var lanes: Int { 1 }

    /// The CPU reference reads and writes host memory in place already.
    public func shareHostMemory(_ bytes: UnsafeMutableRawBufferPointer) -> HostMemoryShare? { nil }

    /// Validates `batch` in full against this backend's buffers and enqueues it.
    public func submit(_ batch: CommandBatch) throws(GPUError) -> SubmissionID {
        try submit(try ValidatedBatch(batch, capacity: { capacity(of: $0) }))
    }

    /// Polls `isComplete` (a backend that runs batches inside `submit`, like the CPU
    /// reference, answers at once); sleeps 20 µs between rounds until the timeout.
    public func waitForAny(_ submissions: [SubmissionID], timeoutNanoseconds: UInt64) throws(GPUError) -> [SubmissionID] {
        let deadline = monotonicNanoseconds() &+ min(timeoutNanoseconds, UInt64(Int64.max))
        while true {
            var done: [SubmissionID] = []
            for id in submissions where try isComplete(id) { done.append(id) }
            if !done.isEmpty || monotonicNanoseconds() >= deadline { return done }
            usleep(20)
        }
    }
}
