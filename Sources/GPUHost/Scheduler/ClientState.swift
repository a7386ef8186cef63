import Histogram

/// A batch waiting in a client's queue.
struct PendingBatch {
    var batch: CommandBatch
    var ticket: BatchTicket
    var enqueuedAt: UInt64
}

/// One client's turn on the device. Its batches may still be running after the scheduler
/// has moved on (pipelining), so it is finalised into the log when the last one retires.
final class SliceRecord {
    let client: ClientID
    let startedAt: UInt64
    let target: UInt64
    let preemptionAtStart: UInt64
    var charged: UInt64 = 0
    var inFlightEstimate: Double = 0
    var pending = 0
    var batches = 0
    var closed = false

    init(client: ClientID, startedAt: UInt64, target: UInt64, preemptionAtStart: UInt64) {
        self.client = client
        self.startedAt = startedAt
        self.target = target
        self.preemptionAtStart = preemptionAtStart
    }
}

/// A batch handed to the backend (or about to be: `submission` is set once `submit`
/// returns). Retired strictly in order, as the device's single queue runs them.
final class InFlightBatch {
    let client: ClientState
    let slice: SliceRecord
    let ticket: BatchTicket
    let enqueuedAt: UInt64
    let submittedAt: UInt64
    /// What the scheduler expected the batch to cost when it let it go.
    let estimate: Double
    /// Held only until the backend has it.
    var batch: CommandBatch?
    /// The batch moves bytes between host memory and its buffers (see `ClientState.canIssue`).
    var carriesHostTransfers = false
    var submission: SubmissionID?
    var failure: GPUError?
    /// The backend call that hands it over has returned (`submission` or `failure` is set):
    /// from here the retiring thread may wait for it.
    var dispatched = false

    init(client: ClientState, slice: SliceRecord, ticket: BatchTicket, enqueuedAt: UInt64, submittedAt: UInt64,
         estimate: Double) {
        self.client = client
        self.slice = slice
        self.ticket = ticket
        self.enqueuedAt = enqueuedAt
        self.submittedAt = submittedAt
        self.estimate = estimate
    }
}

/// Everything the scheduler knows about one client; guarded by the scheduler's monitor.
final class ClientState {
    let id: ClientID
    let configuration: ClientConfiguration
    /// The policy's entitlement, a fraction of device time.
    var entitledShare: Double = 0
    var queue = FIFO<PendingBatch>()
    var inFlight = 0
    var inFlightEstimate: Double = 0
    /// Of `inFlight`, the batches with host transfers (at most one: see `canIssue`).
    var transferBatchesInFlight = 0
    /// The client's namespace: only these ids can appear in its batches and transfers.
    var buffers: [BufferID: Int] = [:]
    /// Bytes allocated or being allocated (reserved before the device call, so two racing
    /// allocations cannot both squeeze under the quota).
    var memoryInUse = 0
    var removed = false

    // Share accounting (share policies).
    /// Device time the client may still use now, in ns; refilled at `entitledShare` of wall
    /// time, capped so an idle client cannot bank time, and driven negative by an overrun.
    var tokens: Double
    /// Charged time divided by entitlement: the client furthest behind runs next.
    var virtualTime: Double = 0
    /// Overrun still to repay from coming slices, and the part repaid per slice.
    var debt: Double = 0
    var repaymentPerSlice: Double = 0
    /// Moving average of charged time per batch; how far ahead of the measurement the
    /// scheduler looks when deciding whether one more batch fits in a slice.
    var batchEstimate: Double = 0
    var readySince: UInt64?
    var cumulativePreemption: UInt64 = 0

    // Window metrics.
    var charged: UInt64 = 0
    var batches: UInt64 = 0
    var failed: UInt64 = 0
    var slices: UInt64 = 0
    var overruns: UInt64 = 0
    var overrunNanoseconds: UInt64 = 0
    var demanded = false
    var latency = GPUScheduler.makeHistogram()

    init(id: ClientID, configuration: ClientConfiguration, tokens: Double) {
        self.id = id
        self.configuration = configuration
        self.tokens = tokens
    }

    var hasWork: Bool { !queue.isEmpty }

    /// Whether the client's next batch may go to the device now. A batch with host transfers
    /// goes alone among the client's batches: backends serve transfers of host-mapped memory
    /// by memcpy, uploads at submit and downloads at wait, outside the device queue's order,
    /// so such a batch must not share the device with an earlier batch (its uploads would
    /// race that batch's kernels) or a later one (whose kernels would race its downloads).
    /// Other clients' batches never touch its buffers and keep the device busy meanwhile.
    var canIssue: Bool {
        guard let next = queue.first else { return false }
        return inFlight == 0 || (transferBatchesInFlight == 0 && !next.batch.hasHostTransfers)
    }
    var isActive: Bool { !queue.isEmpty || inFlight > 0 }

    func resetWindow() {
        charged = 0
        batches = 0
        failed = 0
        slices = 0
        overruns = 0
        overrunNanoseconds = 0
        demanded = isActive
        latency.reset()
    }
}
