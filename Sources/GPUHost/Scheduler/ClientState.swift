import Histogram

/// A batch waiting in a client's queue.
struct PendingBatch {
    var batch: ValidatedBatch
    var ticket: BatchTicket
    var enqueuedAt: UInt64
    /// Set for the batches of a client with a batch-duration model: the submitted batch this one
    /// is (a piece of).
    var group: BatchGroup?
}

/// One submitted batch of a client with a batch-duration model, run as one or more pieces that
/// share its ticket: what they cost so far, and what the model learns from once all have
/// retired (the model it was cut by, even if the VM's model changed meanwhile). Guarded by the
/// scheduler's monitor.
final class BatchGroup {
    let model: any BatchDurationModel
    let signature: UInt64
    let work: Double
    let pieces: Int
    /// Pieces still in the client's queue.
    private(set) var piecesQueued: Int
    var retired = 0
    var failed = false
    var merged: ScheduledCompletion?

    init(model: any BatchDurationModel, signature: UInt64, work: Double, pieces: Int) {
        self.model = model
        self.signature = signature
        self.work = work
        self.pieces = pieces
        piecesQueued = pieces
    }

    /// A piece left the queue for the device; whether it was the batch's last.
    func pieceTaken() -> Bool {
        piecesQueued -= 1
        return piecesQueued == 0
    }

    /// Adds a retired piece's completion; returns the whole batch's once the last has come.
    func add(_ piece: ScheduledCompletion) -> ScheduledCompletion? {
        retired += 1
        if var whole = merged {
            whole.batch.kernelCount += piece.batch.kernelCount
            whole.batch.dispatchCount += piece.batch.dispatchCount
            whole.batch.barrierCount += piece.batch.barrierCount
            whole.batch.executionNanoseconds = whole.batch.executionNanoseconds.flatMap { sum in
                piece.batch.executionNanoseconds.map { sum + $0 }
            }
            whole.batch.uploadNanoseconds += piece.batch.uploadNanoseconds
            whole.batch.downloadNanoseconds += piece.batch.downloadNanoseconds
            whole.batch.submitNanoseconds += piece.batch.submitNanoseconds
            whole.batch.replayedRecording = whole.batch.replayedRecording && piece.batch.replayedRecording
            whole.batch.zeroCopyBytes += piece.batch.zeroCopyBytes
            whole.batch.submission = piece.batch.submission
            whole.chargedNanoseconds += piece.chargedNanoseconds
            whole.completedAt = piece.completedAt
            merged = whole
        } else {
            merged = piece
        }
        return retired == pieces ? merged : nil
    }
}

/// A batch handed to the backend (or about to be: `submission` is set once `submit`
/// returns). Retired strictly in order, as the device's single queue runs them.
final class InFlightBatch {
    let client: ClientState
    /// Where the policy charges it when it retires.
    let dispatch: SliceScheduler.Dispatch
    let ticket: BatchTicket
    let enqueuedAt: UInt64
    let submittedAt: UInt64
    /// Held only until the backend has it.
    var batch: ValidatedBatch?
    /// The submitted batch it is (a piece of), for a client with a batch-duration model.
    var group: BatchGroup?
    /// The batch moves bytes between host memory and its buffers (see `ClientState.canIssue`).
    var carriesHostTransfers = false
    var submission: SubmissionID?
    var failure: GPUError?
    /// The backend call that hands it over has returned (`submission` or `failure` is set):
    /// from here the retiring thread may wait for it.
    var dispatched = false

    init(client: ClientState, dispatch: SliceScheduler.Dispatch, ticket: BatchTicket, enqueuedAt: UInt64,
         submittedAt: UInt64) {
        self.client = client
        self.dispatch = dispatch
        self.ticket = ticket
        self.enqueuedAt = enqueuedAt
        self.submittedAt = submittedAt
    }
}

/// What the scheduler knows about one client apart from the policy's account of it
/// (`SliceScheduler.Account`); guarded by the scheduler's monitor.
final class ClientState {
    let id: ClientID
    let configuration: ClientConfiguration
    var queue = FIFO<PendingBatch>()
    /// Submitted batches with a piece still queued: what the queue limit and the metrics count
    /// (a batch cut into pieces is one batch to its client).
    var queuedSubmissions = 0
    var inFlight = 0
    /// Of `inFlight`, the batches with host transfers (at most one: see `canIssue`).
    var transferBatchesInFlight = 0
    /// The client's namespace: only these ids can appear in its batches and transfers.
    var buffers: [BufferID: Int] = [:]
    /// Bytes allocated or being allocated (reserved before the device call, so two racing
    /// allocations cannot both squeeze under the quota).
    var memoryInUse = 0
    var removed = false
    /// Batches cut into pieces, and pieces made, since the client was added.
    var batchesCut: UInt64 = 0
    var piecesMade: UInt64 = 0

    // Window metrics.
    var charged: UInt64 = 0
    var batches: UInt64 = 0
    var failed: UInt64 = 0
    var slices: UInt64 = 0
    var overruns: UInt64 = 0
    var overrunNanoseconds: UInt64 = 0
    var demanded = false
    var latency = GPUScheduler.makeHistogram()

    init(id: ClientID, configuration: ClientConfiguration) {
        self.id = id
        self.configuration = configuration
    }

    var hasWork: Bool { !queue.isEmpty }

    /// Empties the queue: what was in it, and how many submitted batches that was.
    func dropQueue() -> (pending: [PendingBatch], submissions: Int) {
        defer { queuedSubmissions = 0 }
        return (queue.removeAll(), queuedSubmissions)
    }

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

    /// The policy sees the queue only through this, so it never holds a copy that could go stale.
    var demand: SliceScheduler.Demand {
        if hasWork { return canIssue ? .ready : .blocked }
        return inFlight > 0 ? .running : .idle
    }

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
