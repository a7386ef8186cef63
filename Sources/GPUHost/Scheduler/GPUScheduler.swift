#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Histogram
import Logging
import Platform

/// The time-sliced scheduler that owns the physical device. Clients (vGPUs) allocate
/// buffers within a quota and submit command batches to their own queues from any thread;
/// one scheduler thread decides whose batches go to the device next, hands them over at
/// batch boundaries (the device cannot be preempted inside a batch) and charges each client
/// the GPU time the device measured for its batches.
///
/// Policies (`SchedulingPolicy`) follow NVIDIA vGPU: best effort is a work-conserving round
/// robin of time slices; equal and fixed share give each client an entitlement of device
/// time, enforced with a token bucket against wall time (so an idle client's share stays
/// idle) and ordered by virtual time (charged / entitlement), so backlogged clients split
/// the device in proportion to their entitlements. A slice that overruns its target is
/// repaid from the client's next slices, 1/averagingFactor of the debt per slice.
///
/// The policy's arithmetic is `SliceScheduler`, a value this class drives under its monitor,
/// so that it can be tested on a clock of the test's own. The rest is split by job, an
/// extension per file: clients (`+Clients`), buffer ownership (`+Memory`), a batch's way
/// from queue to device to ticket (`+Submission`), metrics (`+Metrics`) and the dispatching
/// and retiring threads (`+Threads`).
///
/// Call `stop()` when done: the scheduler thread keeps the scheduler alive until then.
public final class GPUScheduler: @unchecked Sendable {
    public let backend: any ComputeBackend
    public let configuration: SchedulerConfiguration
    let logger: Logger
    let monitor = Monitor()
    /// The scheduler thread sleeps on it when no batch can go to the device.
    let workAvailable: Monitor.Condition
    /// Broadcast whenever a batch retires or is cancelled (transfers and removals wait on it).
    let progress: Monitor.Condition
    /// Signalled when a batch of `inFlight` has been handed to the device, so
    /// the retiring thread can wait for it.
    let dispatched: Monitor.Condition
    let epoch: UInt64

    // Everything below is guarded by `monitor`.
    var clients: [ClientID: ClientState] = [:]
    /// Batch-duration models by owner VM (`setBatchModel`): the learned-slice policy's.
    var batchModels: [String: any BatchDurationModel] = [:]
    /// Entitlements, tokens, virtual time, slices and their debts; also the round-robin ring.
    var policy: SliceScheduler
    var nextClientID: UInt32 = 1
    /// Batches on the device, in the order they were handed over (a handful: at most
    /// `maxBatchesInFlight` per lane). They may retire out of that order across lanes.
    var inFlight: [InFlightBatch] = []
    var stopping = false
    /// The dispatching and the retiring thread, while they run.
    var threadsRunning = 0
    var lastRetiredAt: UInt64

    // Window metrics.
    var windowStart: UInt64
    var busy: UInt64 = 0
    var decisions: UInt64 = 0
    var decisionOverhead = GPUScheduler.makeHistogram()
    var queueing = GPUScheduler.makeHistogram()
    var slices: UInt64 = 0
    var overruns: UInt64 = 0
    var cancelled: UInt64 = 0
    var heldBack: UInt64 = 0
    var dispatchBusy: UInt64 = 0
    var retireBusy: UInt64 = 0
    var sliceLog: RingBuffer<SliceLogEntry>
    var removals = RingBuffer<ClientRemoval>(capacity: 64)

    public init(backend: any ComputeBackend, configuration: SchedulerConfiguration = SchedulerConfiguration(),
                logger: Logger = Logger(label: "malvvm.gpuhost.scheduler")) throws(SchedulerError) {
        try configuration.validate()
        self.backend = backend
        self.configuration = configuration
        self.logger = logger
        workAvailable = monitor.makeCondition()
        progress = monitor.makeCondition()
        dispatched = monitor.makeCondition()
        let now = monotonicNanoseconds()
        epoch = now
        policy = SliceScheduler(configuration: configuration, now: now)
        windowStart = now
        lastRetiredAt = now
        sliceLog = RingBuffer(capacity: configuration.sliceLogCapacity)
        try startThreads()
        logger.info("GPUHost scheduler: \(configuration.policy) on \(backend.device.name)")
    }
}
