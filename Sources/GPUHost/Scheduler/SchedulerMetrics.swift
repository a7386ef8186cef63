/// One turn of one client on the device, like a line of NVIDIA's scheduler log
/// (`nvidia-smi vgpu -sl`).
public struct SliceLogEntry: Hashable, Sendable {
    public var client: ClientID
    /// When the slice's first batch was handed to the device, ns since the scheduler started.
    public var startNanoseconds: UInt64
    /// GPU time the slice's batches were charged.
    public var runNanoseconds: UInt64
    /// The slice length aimed at: the time slice less any overrun being repaid.
    public var targetNanoseconds: UInt64
    /// Total time this client has spent with work queued while other clients ran (or while
    /// its share was used up), up to the start of this slice.
    public var cumulativePreemptionNanoseconds: UInt64
    public var batches: Int
}

/// A client removed: from this instant its share was the others' (its queued batches
/// cancelled, the entitlements recomputed), though batches it had on the device still ran.
public struct ClientRemoval: Hashable, Sendable {
    public var client: ClientID
    public var name: String
    public var owner: ClientOwner?
    /// On the slice log's clock (ns since the scheduler started).
    public var revokedNanoseconds: UInt64
}

/// Latency summary from an HdrHistogram (3 significant digits).
public struct LatencySummary: Hashable, Sendable {
    public var count: UInt64
    public var p50Nanoseconds: UInt64
    public var p99Nanoseconds: UInt64
    public var maxNanoseconds: UInt64
    public var meanNanoseconds: Double
}

public struct ClientMetrics: Hashable, Sendable {
    public var id: ClientID
    public var name: String
    public var owner: ClientOwner?
    public var weight: Double
    /// The policy's entitlement now, as a fraction of device time (best effort: an equal
    /// part among the clients that have work).
    public var entitledShare: Double
    /// Charged GPU time in the window.
    public var chargedNanoseconds: UInt64
    /// This client's part of all GPU time charged in the window.
    public var measuredShare: Double
    /// What `measuredShare` should be: the entitlement normalised over the clients that
    /// asked for time in the window (what a perfect scheduler would have given them).
    public var targetShare: Double
    /// measuredShare - targetShare; nil for a client that asked for nothing.
    public var shareError: Double?
    /// Charged GPU time / window wall time.
    public var deviceShare: Double
    public var batches: UInt64
    public var failedBatches: UInt64
    public var slices: UInt64
    public var sliceOverruns: UInt64
    public var overrunNanoseconds: UInt64
    public var outstandingDebtNanoseconds: UInt64
    public var cumulativePreemptionNanoseconds: UInt64
    public var queueing: LatencySummary
    public var queuedBatches: Int
    public var memoryInUseBytes: Int
    public var memoryQuotaBytes: Int
    /// Learned-slice: whether the client's VM has a batch-duration model installed
    /// (`GPUScheduler.setBatchModel`), batches cut into pieces since the client was added, and
    /// the pieces they became.
    public var learnedSlice: Bool = false
    public var batchesCut: UInt64 = 0
    public var piecesMade: UInt64 = 0
}

public struct SchedulerMetrics: Hashable, Sendable {
    public var policy: SchedulingPolicy
    public var timeSliceNanoseconds: UInt64
    /// Wall time of the window (since the scheduler started or `resetMetrics()`).
    public var windowNanoseconds: UInt64
    /// GPU time charged in the window, all clients.
    public var busyNanoseconds: UInt64
    /// busy / wall, as nvidia-smi's utilisation.
    public var utilisation: Double
    public var clients: [ClientMetrics]
    /// Jain's fairness index over measured/target share of the clients that asked for time.
    public var jainIndex: Double
    public var maxAbsoluteShareError: Double
    public var queueing: LatencySummary
    public var decisions: UInt64
    /// Time to pick the next client, per decision.
    public var decisionOverhead: LatencySummary
    public var slices: UInt64
    public var sliceOverruns: UInt64
    public var cancelledBatches: UInt64
    /// Time the device sat idle although work was queued, because every client with work
    /// had used its share (always 0 under best effort, which is work-conserving).
    public var heldBackNanoseconds: UInt64
    /// Wall time the dispatching thread spent handing batches to the device (recording and
    /// queue submission), and the retiring thread spent collecting them (after the device
    /// finished: timestamps, downloads, charging): near the window, that thread is what bounds
    /// how many batches per second the device can get, whatever the GPU could do.
    public var dispatchNanoseconds: UInt64 = 0
    public var retireNanoseconds: UInt64 = 0
    /// Newest entries last.
    public var sliceLog: [SliceLogEntry]
    /// The latest removals (not reset with the window), newest last.
    public var removals: [ClientRemoval] = []

    /// Jain's index (Σx)² / (n Σx²): 1 when all x are equal, 1/n when one takes all.
    public static func jain(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 1 }
        let sum = values.reduce(0, +)
        let squares = values.reduce(0) { $0 + $1 * $1 }
        guard squares > 0 else { return 1 }
        return sum * sum / (Double(values.count) * squares)
    }

    public func client(_ id: ClientID) -> ClientMetrics? {
        clients.first { $0.id == id }
    }
}
