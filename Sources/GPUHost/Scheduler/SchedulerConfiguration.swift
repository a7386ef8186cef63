/// Identifies one client (a vGPU) of a scheduler. Ids are never reused by one scheduler, so
/// a stale id fails with `unknownClient` instead of reaching a newer client.
public struct ClientID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    public static func < (lhs: ClientID, rhs: ClientID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "client#\(rawValue)" }
}

/// The policies operators know from NVIDIA vGPU (`RmPVMRL`).
public enum SchedulingPolicy: Hashable, Sendable, CustomStringConvertible {
    /// Work-conserving round robin over the clients that have work: time a client leaves
    /// idle goes to the others.
    case bestEffort
    /// Each attached client is entitled to 1/N of the device, N changing as clients come and
    /// go. Not work-conserving: the share of an idle client is left idle, so a client's
    /// performance depends only on how many clients are attached.
    case equalShare
    /// Each client is entitled to weight / `totalWeight` of the device (its vGPU profile's
    /// share: a profile that allows 8 per GPU has weight 1 of 8), whatever else is attached.
    /// Not work-conserving. Attaching a client whose weight would push the sum past
    /// `totalWeight` is refused.
    case fixedShare(totalWeight: Double)

    public var name: String {
        switch self {
        case .bestEffort: return "best-effort"
        case .equalShare: return "equal-share"
        case .fixedShare: return "fixed-share"
        }
    }

    public var description: String {
        switch self {
        case let .fixedShare(total): return "fixed-share(total weight \(total))"
        default: return name
        }
    }

    /// False for the two share policies, which leave an idle client's share unused.
    public var isWorkConserving: Bool {
        if case .bestEffort = self { return true }
        return false
    }
}

public struct SchedulerConfiguration: Hashable, Sendable {
    /// NVIDIA's range for the time slice.
    public static let timeSliceRange: ClosedRange<UInt64> = 1_000_000 ... 30_000_000
    public static let averagingFactorRange: ClosedRange<Int> = 1 ... 60

    public var policy: SchedulingPolicy
    /// Target length of one client's turn, in nanoseconds; nil picks NVIDIA's default of
    /// 2 ms, or 1 ms while more than 8 clients are attached.
    public var timeSliceNanoseconds: UInt64?
    /// A slice overrun is repaid from the client's next slices, 1/averagingFactor of the debt
    /// per slice (NVIDIA's adaptive round robin; default 33).
    public var averagingFactor: Int
    /// Entries kept in the scheduler log ring.
    public var sliceLogCapacity: Int
    /// Batches handed to each of the device's lanes (queues) before the oldest has finished:
    /// two keep a queue fed while the scheduler charges the batch that just ended. Past the
    /// first, the scheduler also keeps their expected device time within one slice
    /// (`deviceHasRoom`), so a preemption still bites within a slice.
    public var maxBatchesInFlight: Int
    /// Batches a client may have queued; a submission beyond it is refused (`queueFull`), so
    /// a guest cannot grow host memory without bound.
    public var maxQueuedBatchesPerClient: Int

    public init(policy: SchedulingPolicy = .bestEffort, timeSliceNanoseconds: UInt64? = nil,
                averagingFactor: Int = 33, sliceLogCapacity: Int = 4096, maxBatchesInFlight: Int = 2,
                maxQueuedBatchesPerClient: Int = 1024) {
        self.policy = policy
        self.timeSliceNanoseconds = timeSliceNanoseconds
        self.averagingFactor = averagingFactor
        self.sliceLogCapacity = sliceLogCapacity
        self.maxBatchesInFlight = maxBatchesInFlight
        self.maxQueuedBatchesPerClient = maxQueuedBatchesPerClient
    }

    public func validate() throws(SchedulerError) {
        if let slice = timeSliceNanoseconds, !Self.timeSliceRange.contains(slice) {
            throw .invalidConfiguration("time slice \(slice) ns outside 1-30 ms")
        }
        if !Self.averagingFactorRange.contains(averagingFactor) {
            throw .invalidConfiguration("averaging factor \(averagingFactor) outside 1-60")
        }
        if case let .fixedShare(total) = policy, !(total.isFinite && total > 0) {
            throw .invalidConfiguration("fixed-share total weight must be a positive number, not \(total)")
        }
        if sliceLogCapacity < 1 { throw .invalidConfiguration("slice log capacity must be at least 1") }
        if maxBatchesInFlight < 1 { throw .invalidConfiguration("batches in flight must be at least 1") }
        if maxQueuedBatchesPerClient < 1 { throw .invalidConfiguration("queued batches per client must be at least 1") }
    }

    /// The slice in force with `clients` attached.
    public func timeSlice(forClients clients: Int) -> UInt64 {
        timeSliceNanoseconds ?? (clients > 8 ? 1_000_000 : 2_000_000)
    }
}

/// The vGPU a client works for, and which of its contexts. A vGPU's standing (its share, its
/// departure) is the sum over its clients, so callers group clients by owner; names are for
/// people and may be anything.
public struct ClientOwner: Hashable, Sendable, CustomStringConvertible {
    /// The VM, where the vGPU's server knows it (the GPU daemon does; a vGPU inside the VM's
    /// own process is the VM's anyway).
    public var vm: String?
    public var vgpu: String
    /// The guest's compute context, for a para-vGPU (one client each); nil for a full vGPU,
    /// whose single client serves all its channels.
    public var context: UInt32?

    public init(vm: String? = nil, vgpu: String, context: UInt32? = nil) {
        self.vm = vm
        self.vgpu = vgpu
        self.context = context
    }

    /// Whether the client belongs to that vGPU, whichever context it serves.
    public func belongs(toVM vm: String?, vgpu: String) -> Bool {
        self.vm == vm && self.vgpu == vgpu
    }

    public var description: String {
        [vm, vgpu, context.map { "ctx\($0)" }].compactMap { $0 }.joined(separator: "/")
    }
}

/// What a client is allowed: its share weight (fixed share only) and its GPU memory quota.
public struct ClientConfiguration: Hashable, Sendable {
    /// For people: logs, metrics and the daemon's status.
    public var name: String
    /// The vGPU the client serves; nil for a client that serves none (a benchmark, a
    /// workload of the host's own).
    public var owner: ClientOwner?
    /// Share weight under fixed share; ignored by the other policies.
    public var weight: Double
    /// Bytes of device memory the client may hold at once; an allocation beyond it is
    /// refused with `quotaExceeded`.
    public var memoryQuotaBytes: Int

    public init(name: String, owner: ClientOwner? = nil, weight: Double = 1, memoryQuotaBytes: Int = Int.max) {
        self.name = name
        self.owner = owner
        self.weight = weight
        self.memoryQuotaBytes = memoryQuotaBytes
    }
}

public enum SchedulerError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidConfiguration(String)
    case unknownClient(ClientID)
    /// The client was removed while this batch was queued; the batch never ran.
    case cancelled(ClientID)
    case quotaExceeded(ClientID, requested: Int, inUse: Int, quota: Int)
    /// A fixed-share client whose weight does not fit beside the ones attached.
    case shareUnavailable(requested: Double, available: Double)
    case queueFull(ClientID, limit: Int)
    case stopped
    /// The device refused or failed the operation.
    case backend(GPUError)

    public var description: String {
        switch self {
        case let .invalidConfiguration(reason): return "invalid scheduler configuration: \(reason)"
        case let .unknownClient(id): return "unknown \(id)"
        case let .cancelled(id): return "batch cancelled: \(id) was removed"
        case let .quotaExceeded(id, requested, inUse, quota):
            return "\(id): allocation of \(requested) bytes refused, \(inUse) of \(quota) bytes quota in use"
        case let .shareUnavailable(requested, available):
            return "fixed-share weight \(requested) does not fit (\(available) left)"
        case let .queueFull(id, limit): return "\(id) has \(limit) batches queued already"
        case .stopped: return "the scheduler has stopped"
        case let .backend(error): return "device: \(error)"
        }
    }
}
