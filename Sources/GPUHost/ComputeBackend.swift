/// Identifies one submitted batch until `wait` retires it.
public struct SubmissionID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public var description: String { "submission#\(rawValue)" }
}

/// The kernels one client hands the device in one go. A backend records a batch into one
/// command buffer with barriers only between dependent kernels, and charges the batch its
/// measured device time, so the batch is the unit a scheduler preempts at and bills.
public struct CommandBatch: Hashable, Sendable {
    public var kernels: [Kernel]

    public init(_ kernels: [Kernel] = []) {
        self.kernels = kernels
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
    /// Execution time of the batch, from `timing`; nil when unavailable.
    public var executionNanoseconds: UInt64?
    public var timing: TimingSource

    public init(submission: SubmissionID, kernelCount: Int, dispatchCount: Int, barrierCount: Int,
                executionNanoseconds: UInt64?, timing: TimingSource) {
        self.submission = submission
        self.kernelCount = kernelCount
        self.dispatchCount = dispatchCount
        self.barrierCount = barrierCount
        self.executionNanoseconds = executionNanoseconds
        self.timing = timing
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
/// in flight that uses the same buffer (the scheduler orders them); every kernel of a batch
/// is validated before any of it runs, and a batch with one invalid kernel runs nothing.
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

    /// Validates and enqueues a batch; returns before it has run on asynchronous devices.
    func submit(_ batch: CommandBatch) throws(GPUError) -> SubmissionID
    func isComplete(_ submission: SubmissionID) throws(GPUError) -> Bool
    /// Blocks until the batch has run, then retires the id and reports the batch's cost.
    /// On `timedOut` the batch stays in flight and may be waited for again.
    func wait(_ submission: SubmissionID, timeoutNanoseconds: UInt64) throws(GPUError) -> BatchCompletion
}
