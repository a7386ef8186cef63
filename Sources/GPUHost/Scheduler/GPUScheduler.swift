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
/// Call `shutdown()` when done: the scheduler thread keeps the scheduler alive until then.
public final class GPUScheduler: @unchecked Sendable {
    public let backend: any ComputeBackend
    public let configuration: SchedulerConfiguration
    private let logger: Logger
    private let monitor = Monitor()
    /// The scheduler thread sleeps on it when no batch can go to the device.
    private let workAvailable: Monitor.Condition
    /// Broadcast whenever a batch retires or is cancelled (transfers and removals wait on it).
    private let progress: Monitor.Condition
    /// Signalled when a batch of `inFlight` has been handed to the device, so
    /// the retiring thread can wait for it.
    private let dispatched: Monitor.Condition
    private let epoch: UInt64

    // Everything below is guarded by `monitor`.
    private var clients: [ClientID: ClientState] = [:]
    /// Attached clients in id order: the round-robin ring.
    private var ring: [ClientID] = []
    private var nextClientID: UInt32 = 1
    /// Batches on the device, in the order they were handed over (a handful: at most
    /// `maxBatchesInFlight` per lane). They may retire out of that order across lanes.
    private var inFlight: [InFlightBatch] = []
    private var currentSlice: SliceRecord?
    private var lastPicked: ClientID?
    private var lastRefill: UInt64
    /// When a share policy has work that must wait for tokens: the earliest refill instant.
    private var wakeAt: UInt64?
    private var stopping = false
    /// The dispatching and the retiring thread, while they run.
    private var threadsRunning = 0
    /// The device time the batches in flight are expected to take (their estimates' sum).
    private var inFlightEstimate = 0.0
    private var lastRetiredAt: UInt64

    // Window metrics.
    private var windowStart: UInt64
    private var busy: UInt64 = 0
    private var decisions: UInt64 = 0
    private var decisionOverhead = GPUScheduler.makeHistogram()
    private var queueing = GPUScheduler.makeHistogram()
    private var slices: UInt64 = 0
    private var overruns: UInt64 = 0
    private var cancelled: UInt64 = 0
    private var heldBack: UInt64 = 0
    private var dispatchBusy: UInt64 = 0
    private var retireBusy: UInt64 = 0
    private var sliceLog: RingBuffer<SliceLogEntry>
    private var removals = RingBuffer<ClientRemoval>(capacity: 64)

    static func makeHistogram() -> Histogram<UInt64> {
        // 1 ns .. 1 h at 3 significant digits; autoResize keeps a freak value from being lost.
        var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
        histogram.autoResize = true
        return histogram
    }

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
        lastRefill = now
        windowStart = now
        lastRetiredAt = now
        sliceLog = RingBuffer(capacity: configuration.sliceLogCapacity)
        try startThreads()
        logger.info("GPUHost scheduler: \(configuration.policy) on \(backend.device.name)")
    }

    // MARK: Clients

    public func addClient(_ client: ClientConfiguration) throws(SchedulerError) -> ClientID {
        guard client.weight.isFinite, client.weight > 0 else {
            throw .invalidConfiguration("client weight must be a positive number, not \(client.weight)")
        }
        guard client.memoryQuotaBytes >= 0 else {
            throw .invalidConfiguration("memory quota must not be negative")
        }
        monitor.lock()
        defer { monitor.unlock() }
        guard !stopping else { throw .stopped }
        if case let .fixedShare(total) = configuration.policy {
            let used = attached.reduce(0) { $0 + $1.configuration.weight }
            // A little slack for weights that are decimal fractions (0.1 + 0.2 ...).
            guard used + client.weight <= total * (1 + 1e-9) else {
                throw .shareUnavailable(requested: client.weight, available: max(0, total - used))
            }
        }
        let now = monotonicNanoseconds()
        refill(now)
        let id = ClientID(rawValue: nextClientID)
        nextClientID += 1
        let state = ClientState(id: id, configuration: client, tokens: Double(timeSlice))
        // A newcomer starts level with the clients running now, not with a head start of
        // all the time they have been charged.
        state.virtualTime = referenceVirtualTime(excluding: nil)
        clients[id] = state
        ring.append(id)
        attachedCount += 1
        recomputeEntitlements()
        return id
    }

    /// Cancels the client's queued batches (they fail with `cancelled`), waits for its
    /// batches already on the device, then zeroes and frees its buffers. Blocks; never call
    /// it from a completion callback.
    public func removeClient(_ id: ClientID) throws(SchedulerError) {
        monitor.lock()
        guard let state = clients[id], !state.removed else {
            monitor.unlock()
            throw .unknownClient(id)
        }
        let now = monotonicNanoseconds()
        refill(now)
        state.removed = true
        attachedCount -= 1
        let dropped = state.queue.removeAll()
        cancelled += UInt64(dropped.count)
        if currentSlice?.client == id { closeCurrentSlice(now) }
        recomputeEntitlements()
        removals.append(ClientRemoval(client: id, name: state.configuration.name, revokedNanoseconds: monotonicNanoseconds() - epoch))
        // Its batches on the device cannot be recalled; its memory is freed after them.
        while state.inFlight > 0 { progress.wait() }
        clients[id] = nil
        ring.removeAll { $0 == id }
        if lastPicked == id { lastPicked = ring.last { $0 < id } ?? ring.last }
        let buffers = state.buffers
        state.buffers = [:]
        state.memoryInUse = 0
        progress.broadcast()
        workAvailable.signal()
        monitor.unlock()

        for pending in dropped { pending.ticket.finish(.failure(.cancelled(id))) }
        var firstError: GPUError?
        for (buffer, bytes) in buffers.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            do throws(GPUError) {
                try zero(buffer, byteCount: bytes)
                try backend.destroyBuffer(buffer)
            } catch {
                logger.error("GPUHost scheduler: freeing \(buffer) of removed \(id) failed: \(error)")
                firstError = firstError ?? error
            }
        }
        if let firstError { throw .backend(firstError) }
    }

    /// Now on the clock of `SliceLogEntry.startNanoseconds` (ns since the scheduler started).
    public func nanosecondsSinceStart() -> UInt64 { monotonicNanoseconds() - epoch }

    public var clientIDs: [ClientID] {
        monitor.withLock { ring }
    }

    /// Blocks until every batch queued so far by `client` has retired.
    public func drain(_ client: ClientID) throws(SchedulerError) {
        monitor.lock()
        defer { monitor.unlock() }
        _ = try waitIdle(client)
    }

    // MARK: Memory

    /// Allocates a zero-filled buffer charged to the client's quota.
    public func createBuffer(for client: ClientID, byteCount: Int,
                             placement: MemoryPlacement = .deviceLocal) throws(SchedulerError) -> BufferID {
        try monitor.withLock { () throws(SchedulerError) in
            guard let state = clients[client], !state.removed else { throw .unknownClient(client) }
            let quota = state.configuration.memoryQuotaBytes
            let (wanted, overflow) = state.memoryInUse.addingReportingOverflow(max(byteCount, 0))
            guard !overflow, wanted <= quota else {
                throw .quotaExceeded(client, requested: byteCount, inUse: state.memoryInUse, quota: quota)
            }
            // Reserve before the device call so concurrent allocations cannot overshoot.
            state.memoryInUse = wanted
        }
        let id: BufferID
        do throws(GPUError) {
            id = try backend.createBuffer(byteCount: byteCount, placement: placement)
        } catch {
            monitor.withLock { clients[client].map { $0.memoryInUse -= byteCount } }
            throw .backend(error)
        }
        let keep = monitor.withLock { () -> Bool in
            guard let state = clients[client], !state.removed else { return false }
            state.buffers[id] = byteCount
            return true
        }
        if !keep {
            // Removed while we allocated: the buffer never became the client's.
            try? backend.destroyBuffer(id)
            throw .unknownClient(client)
        }
        return id
    }

    /// Frees one of the client's buffers. Batches still queued that name it will fail.
    public func destroyBuffer(_ buffer: BufferID, for client: ClientID) throws(SchedulerError) {
        try monitor.withLock { () throws(SchedulerError) in
            guard let state = clients[client], !state.removed else { throw .unknownClient(client) }
            guard let bytes = state.buffers.removeValue(forKey: buffer) else {
                throw .backend(.unknownBuffer(buffer))
            }
            state.memoryInUse -= bytes
        }
        do throws(GPUError) { try backend.destroyBuffer(buffer) } catch { throw .backend(error) }
    }

    /// Writes into one of the client's buffers after every batch it queued before has run,
    /// so a transfer never races the client's own kernels.
    public func write(_ buffer: BufferID, for client: ClientID, byteOffset: Int,
                      from bytes: UnsafeRawBufferPointer) throws(SchedulerError) {
        try ownedAndIdle(buffer, client)
        do throws(GPUError) { try backend.write(buffer, byteOffset: byteOffset, from: bytes) } catch { throw .backend(error) }
    }

    public func read(_ buffer: BufferID, for client: ClientID, byteOffset: Int,
                     into bytes: UnsafeMutableRawBufferPointer) throws(SchedulerError) {
        try ownedAndIdle(buffer, client)
        do throws(GPUError) { try backend.read(buffer, byteOffset: byteOffset, into: bytes) } catch { throw .backend(error) }
    }

    public func memoryInUse(by client: ClientID) -> Int? {
        monitor.withLock { clients[client]?.memoryInUse }
    }

    private func ownedAndIdle(_ buffer: BufferID, _ client: ClientID) throws(SchedulerError) {
        monitor.lock()
        defer { monitor.unlock() }
        let state = try waitIdle(client)
        // Another client's id is reported exactly like one that does not exist.
        guard state.buffers[buffer] != nil else { throw .backend(.unknownBuffer(buffer)) }
    }

    /// Call locked. Waits until the client has nothing queued or on the device.
    private func waitIdle(_ client: ClientID) throws(SchedulerError) -> ClientState {
        while true {
            guard let state = clients[client], !state.removed else { throw .unknownClient(client) }
            if !state.isActive { return state }
            progress.wait()
        }
    }

    /// Overwrites a buffer with zeros in bounded chunks, so a freed buffer never carries a
    /// guest's data into the device allocator.
    private func zero(_ buffer: BufferID, byteCount: Int) throws(GPUError) {
        let chunk = min(byteCount, 1 << 20)
        guard chunk > 0 else { return }
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        var offset = 0
        while offset < byteCount {
            let count = min(chunk, byteCount - offset)
            try backend.write(buffer, byteOffset: offset, from: UnsafeRawBufferPointer(rebasing: zeros[0 ..< count]))
            offset += count
        }
    }

    // MARK: Submission

    /// Queues a batch for the client. Every buffer it names, in kernels and in uploads and
    /// downloads alike, must be the client's own: the batch is validated against the client's
    /// namespace here, in the caller's thread, so a bad batch costs its submitter an error and
    /// nobody else anything. A batch's transfers run in the client's queue order like its
    /// kernels (see `ClientState.canIssue`); its host memory must stay valid until the ticket
    /// has an outcome (`UnsafeHostBytes`).
    @discardableResult
    public func submit(_ batch: CommandBatch, for client: ClientID,
                       completion: (@Sendable (Result<ScheduledCompletion, SchedulerError>) -> Void)? = nil)
        throws(SchedulerError) -> BatchTicket
    {
        monitor.lock()
        defer { monitor.unlock() }
        guard !stopping else { throw .stopped }
        guard let state = clients[client], !state.removed else { throw .unknownClient(client) }
        let owned = state.buffers
        do throws(GPUError) {
            _ = try batch.validate(capacity: { owned[$0] })
        } catch {
            throw .backend(error)
        }
        guard state.queue.count < configuration.maxQueuedBatchesPerClient else {
            throw .queueFull(client, limit: configuration.maxQueuedBatchesPerClient)
        }
        let now = monotonicNanoseconds()
        if !state.isActive {
            // Waking from idle: no credit for the time it was away (else it would hog the
            // device until its virtual time caught up with the others').
            state.virtualTime = max(state.virtualTime, referenceVirtualTime(excluding: state.id))
        }
        if state.queue.isEmpty, currentSlice?.client != client { state.readySince = now }
        let ticket = BatchTicket(client: client, callback: completion)
        state.queue.append(PendingBatch(batch: batch, ticket: ticket, enqueuedAt: now))
        state.demanded = true
        workAvailable.signal()
        return ticket
    }

    /// Stops the scheduler thread after the batches on the device have retired; queued
    /// batches fail with `stopped`. Idempotent.
    public func shutdown() {
        monitor.lock()
        stopping = true
        var dropped: [PendingBatch] = []
        for state in clients.values { dropped += state.queue.removeAll() }
        workAvailable.signal()
        dispatched.signal()
        while threadsRunning > 0 { progress.wait() }
        monitor.unlock()
        for pending in dropped { pending.ticket.finish(.failure(.stopped)) }
    }

    // MARK: Metrics

    /// Starts a new measurement window: counters, histograms and the slice log restart.
    public func resetMetrics() {
        monitor.withLock {
            windowStart = monotonicNanoseconds()
            busy = 0
            decisions = 0
            decisionOverhead.reset()
            queueing.reset()
            slices = 0
            overruns = 0
            cancelled = 0
            heldBack = 0
            dispatchBusy = 0
            retireBusy = 0
            sliceLog.removeAll()
            for state in clients.values { state.resetWindow() }
        }
    }

    public func metrics() -> SchedulerMetrics {
        monitor.withLock {
            let now = monotonicNanoseconds()
            let window = max(now - windowStart, 1)
            let states = attached
            let totalCharged = states.reduce(UInt64(0)) { $0 + $1.charged }
            let demanding = states.filter { $0.demanded || $0.charged > 0 }
            let weightOf: (ClientState) -> Double = { [configuration] state in
                if case .fixedShare = configuration.policy { return state.configuration.weight }
                return 1
            }
            let demandWeight = demanding.reduce(0) { $0 + weightOf($1) }
            var ratios: [Double] = []
            var maxError = 0.0
            let clientMetrics = states.map { state -> ClientMetrics in
                let measured = totalCharged > 0 ? Double(state.charged) / Double(totalCharged) : 0
                let asked = state.demanded || state.charged > 0
                let target = asked && demandWeight > 0 ? weightOf(state) / demandWeight : 0
                var error: Double?
                if asked, totalCharged > 0 {
                    error = measured - target
                    maxError = max(maxError, abs(measured - target))
                    if target > 0 { ratios.append(measured / target) }
                }
                return ClientMetrics(
                    id: state.id, name: state.configuration.name, weight: state.configuration.weight,
                    entitledShare: state.entitledShare, chargedNanoseconds: state.charged, measuredShare: measured,
                    targetShare: target, shareError: error, deviceShare: Double(state.charged) / Double(window),
                    batches: state.batches, failedBatches: state.failed, slices: state.slices,
                    sliceOverruns: state.overruns, overrunNanoseconds: state.overrunNanoseconds,
                    outstandingDebtNanoseconds: UInt64(max(0, state.debt)),
                    cumulativePreemptionNanoseconds: state.cumulativePreemption,
                    queueing: Self.summary(state.latency), queuedBatches: state.queue.count,
                    memoryInUseBytes: state.memoryInUse, memoryQuotaBytes: state.configuration.memoryQuotaBytes)
            }
            return SchedulerMetrics(
                policy: configuration.policy, timeSliceNanoseconds: timeSlice, windowNanoseconds: window,
                busyNanoseconds: busy, utilisation: Double(busy) / Double(window), clients: clientMetrics,
                jainIndex: SchedulerMetrics.jain(ratios), maxAbsoluteShareError: maxError,
                queueing: Self.summary(queueing), decisions: decisions,
                decisionOverhead: Self.summary(decisionOverhead), slices: slices, sliceOverruns: overruns,
                cancelledBatches: cancelled, heldBackNanoseconds: heldBack, dispatchNanoseconds: dispatchBusy,
                retireNanoseconds: retireBusy, sliceLog: sliceLog.elements,
                removals: removals.elements)
        }
    }

    static func summary(_ histogram: Histogram<UInt64>) -> LatencySummary {
        guard histogram.totalCount > 0 else {
            return LatencySummary(count: 0, p50Nanoseconds: 0, p99Nanoseconds: 0, maxNanoseconds: 0, meanNanoseconds: 0)
        }
        return LatencySummary(count: histogram.totalCount, p50Nanoseconds: histogram.valueAtPercentile(50),
                              p99Nanoseconds: histogram.valueAtPercentile(99), maxNanoseconds: histogram.max,
                              meanNanoseconds: histogram.mean)
    }

    // MARK: Policy (all called with the monitor held)

    private var attached: [ClientState] {
        ring.compactMap { clients[$0] }.filter { !$0.removed }
    }

    private var timeSlice: UInt64 {
        configuration.timeSlice(forClients: attachedCount)
    }

    /// Attached (not removed) clients; kept as a count so the hot path does not filter.
    private var attachedCount = 0

    private func recomputeEntitlements() {
        let states = attached
        for state in states {
            switch configuration.policy {
            case let .fixedShare(total):
                state.entitledShare = state.configuration.weight / total
            case .equalShare, .bestEffort:
                state.entitledShare = 1 / Double(states.count)
            }
        }
    }

    /// The virtual time a (re)joining client is levelled up to: the least among clients
    /// with work, or the last picked client's when nobody has any.
    private func referenceVirtualTime(excluding: ClientID?) -> Double {
        let active = attached.filter { $0.id != excluding && $0.isActive }
        if let least = active.map(\.virtualTime).min() { return least }
        if let last = lastPicked, let state = clients[last] { return state.virtualTime }
        return 0
    }

    /// Accrues every client's entitlement. The bucket holds two slices, or two of the
    /// client's batches when those are longer, so a backlogged client never loses accrued time
    /// merely because its batches are big, while an idle one cannot bank more.
    private func refill(_ now: UInt64) {
        guard now > lastRefill else { return }
        let elapsed = Double(now - lastRefill)
        lastRefill = now
        guard !configuration.policy.isWorkConserving else { return }
        let slice = Double(timeSlice)
        for id in ring {
            guard let state = clients[id], !state.removed else { continue }
            let cap = 2 * max(slice, state.batchEstimate)
            state.tokens = min(cap, state.tokens + elapsed * state.entitledShare)
        }
    }

    /// Whether the share policy lets the client put one more batch on the device now.
    private func withinShare(_ state: ClientState) -> Bool {
        configuration.policy.isWorkConserving || state.tokens - state.inFlightEstimate > 0
    }

    /// Picks the client whose slice starts now, or nil. Timed: this is the scheduler's
    /// per-decision overhead.
    private func decide(_ now: UInt64) -> ClientState? {
        let started = monotonicNanoseconds()
        var chosen: ClientState?
        var anyWork = false
        wakeAt = nil
        switch configuration.policy {
        case .bestEffort:
            // Round robin: the first client with work after the last one picked.
            let count = ring.count
            let start = lastPicked.flatMap { last in ring.firstIndex { $0 > last } } ?? 0
            for step in 0 ..< count {
                guard let state = clients[ring[(start + step) % count]], !state.removed, state.hasWork else { continue }
                anyWork = true
                // Waiting for its own batch to retire before a transfer batch: skip a turn.
                guard state.canIssue else { continue }
                chosen = state
                break
            }
        case .equalShare, .fixedShare:
            refill(now)
            var earliest: Double?
            for id in ring {
                guard let state = clients[id], !state.removed, state.hasWork else { continue }
                anyWork = true
                // Waiting for its own batch to retire before a transfer batch: that batch's
                // retirement wakes the scheduler, not a token refill.
                guard state.canIssue else { continue }
                if withinShare(state) {
                    if chosen.map({ state.virtualTime < $0.virtualTime }) ?? true { chosen = state }
                } else if state.entitledShare > 0 {
                    let wait = (state.inFlightEstimate - state.tokens) / state.entitledShare
                    earliest = min(earliest ?? wait, wait)
                }
            }
            if chosen == nil, let earliest {
                // Nobody may run until a bucket refills: the device idles (the policy does
                // not give an idle share away) and the thread sleeps until then.
                wakeAt = now + UInt64(max(earliest, 0)) + 1_000
            }
        }
        if anyWork {
            decisions += 1
            decisionOverhead.record(monotonicNanoseconds() - started)
        }
        return chosen
    }

    private func closeCurrentSlice(_ now: UInt64) {
        guard let slice = currentSlice else { return }
        currentSlice = nil
        slice.closed = true
        if let state = clients[slice.client], state.hasWork, !state.removed { state.readySince = now }
        if slice.pending == 0 { finalize(slice) }
    }

    private func finalize(_ slice: SliceRecord) {
        slices += 1
        if let state = clients[slice.client] {
            state.slices += 1
            if slice.charged > slice.target {
                let overrun = slice.charged - slice.target
                overruns += 1
                state.overruns += 1
                state.overrunNanoseconds += overrun
                state.debt += Double(overrun)
                state.repaymentPerSlice = state.debt / Double(configuration.averagingFactor)
            }
        }
        sliceLog.append(SliceLogEntry(
            client: slice.client, startNanoseconds: slice.startedAt - epoch, runNanoseconds: slice.charged,
            targetNanoseconds: slice.target, cumulativePreemptionNanoseconds: slice.preemptionAtStart,
            batches: slice.batches))
    }

    /// The next batch to hand the device: more of the current slice while it has room, else
    /// the first batch of a new slice for whichever client the policy picks.
    private func takeNextBatch(_ now: UInt64) -> InFlightBatch? {
        var slice: SliceRecord
        var state: ClientState
        if let current = currentSlice, let owner = clients[current.client], !owner.removed, owner.canIssue,
           Double(current.charged) + current.inFlightEstimate < Double(current.target),
           { refill(now); return withinShare(owner) }()
        {
            slice = current
            state = owner
        } else {
            closeCurrentSlice(now)
            guard let picked = decide(now) else { return nil }
            state = picked
            lastPicked = picked.id
            let length = Double(timeSlice)
            // Repay overrun by shortening this slice, but keep at least a quarter of it so
            // a client deep in debt still makes progress every turn.
            let repayment = min(state.debt, state.repaymentPerSlice, length * 0.75)
            state.debt = max(0, state.debt - repayment)
            if state.debt < 1 { state.debt = 0; state.repaymentPerSlice = 0 }
            if let ready = state.readySince {
                state.cumulativePreemption += now - min(ready, now)
                state.readySince = nil
            }
            slice = SliceRecord(client: state.id, startedAt: now, target: UInt64(length - repayment),
                                preemptionAtStart: state.cumulativePreemption)
            currentSlice = slice
        }
        guard let pending = state.queue.popFirst() else { return nil }
        let estimate = state.batchEstimate
        let entry = InFlightBatch(client: state, slice: slice, ticket: pending.ticket, enqueuedAt: pending.enqueuedAt,
                                  submittedAt: now, estimate: estimate)
        state.inFlight += 1
        state.inFlightEstimate += estimate
        inFlightEstimate += estimate
        if pending.batch.hasHostTransfers {
            entry.carriesHostTransfers = true
            state.transferBatchesInFlight += 1
        }
        slice.inFlightEstimate += estimate
        slice.pending += 1
        slice.batches += 1
        let waited = now - min(pending.enqueuedAt, now)
        queueing.record(waited)
        state.latency.record(waited)
        entry.batch = pending.batch
        inFlight.append(entry)
        return entry
    }

    /// Charges a retired batch; returns the outcome for its ticket.
    private func retire(_ entry: InFlightBatch, _ outcome: Result<BatchCompletion, GPUError>,
                        at now: UInt64) -> Result<ScheduledCompletion, SchedulerError> {
        let state = entry.client
        let slice = entry.slice
        state.inFlight -= 1
        state.inFlightEstimate -= entry.estimate
        inFlightEstimate = max(0, inFlightEstimate - entry.estimate)
        if entry.carriesHostTransfers { state.transferBatchesInFlight -= 1 }
        slice.inFlightEstimate -= entry.estimate
        slice.pending -= 1
        defer {
            if slice.closed, slice.pending == 0 { finalize(slice) }
            progress.broadcast()
        }
        let completion: BatchCompletion
        switch outcome {
        case let .failure(error):
            state.failed += 1
            lastRetiredAt = now
            return .failure(.backend(error))
        case let .success(value):
            completion = value
        }
        // The device's own measurement when it has one; otherwise host time from when the
        // batch could start (handed over, or the previous batch finished) to retirement.
        let charged = completion.executionNanoseconds
            ?? (now - min(now, max(entry.submittedAt, lastRetiredAt)))
        lastRetiredAt = now
        busy += charged
        state.charged += charged
        state.batches += 1
        state.tokens -= Double(charged)
        state.virtualTime += Double(charged) / max(state.entitledShare, 1e-9)
        // An 1/8 moving average follows a change of workload within a few batches.
        state.batchEstimate = state.batchEstimate == 0 ? Double(charged)
            : state.batchEstimate + (Double(charged) - state.batchEstimate) / 8
        slice.charged += charged
        return .success(ScheduledCompletion(
            client: state.id, batch: completion, chargedNanoseconds: charged,
            queueingNanoseconds: entry.submittedAt - min(entry.enqueuedAt, entry.submittedAt),
            enqueuedAt: entry.enqueuedAt, submittedAt: entry.submittedAt, completedAt: now))
    }

    // MARK: The scheduler's threads

    /// Two threads, so handing batches over never waits for the device: the dispatching
    /// thread decides and records while earlier batches run, and the retiring thread waits
    /// for them in order, charges them and completes their tickets. With one thread doing
    /// both, every batch's host-side cost (recording, queue submission, waking the waiter)
    /// sat between two device runs, and clients sharing the device could never get more done
    /// together than one got alone.
    private func startThreads() throws(SchedulerError) {
        threadsRunning = 2
        let context = Unmanaged.passRetained(self)
        let retainedAgain = Unmanaged.passRetained(self)
        do {
            _ = try NativeThread(name: "gpu-dispatch", detached: true) { context.takeRetainedValue().dispatchLoop() }
        } catch {
            context.release()
            retainedAgain.release()
            threadsRunning = 0
            throw .invalidConfiguration("cannot start the scheduler's dispatching thread (errno \(error.errno))")
        }
        do {
            _ = try NativeThread(name: "gpu-retire", detached: true) { retainedAgain.takeRetainedValue().retireLoop() }
        } catch {
            retainedAgain.release()
            monitor.withLock { stopping = true; threadsRunning -= 1; workAvailable.signal() }
            throw .invalidConfiguration("cannot start the scheduler's retiring thread (errno \(error.errno))")
        }
    }

    /// Whether one more batch may go to the device: below the count limit, and, past the
    /// first, only while what is queued there is expected to finish within a time slice. Short
    /// batches then queue several deep (their host-side costs overlap the device's work),
    /// while long ones never stack up ahead of another client's turn.
    private var deviceHasRoom: Bool {
        inFlight.count == 0
            || (inFlight.count < configuration.maxBatchesInFlight * max(1, backend.lanes) && inFlightEstimate < Double(timeSlice))
    }

    private func dispatchLoop() {
        monitor.lock()
        while true {
            let now = monotonicNanoseconds()
            if !stopping, deviceHasRoom, let entry = takeNextBatch(now) {
                var batch = entry.batch ?? CommandBatch()
                // Each client on a queue of its own (as far as the device has them): one
                // client's batches keep their order, different clients' run side by side.
                batch.lane = Int(entry.client.id.rawValue) % max(1, backend.lanes)
                entry.batch = nil
                // The device call happens unlocked: clients keep submitting and the retiring
                // thread keeps retiring meanwhile (the CPU backend runs the batch inside submit).
                monitor.unlock()
                let handing = monotonicNanoseconds()
                let submitted: Result<SubmissionID, GPUError>
                do throws(GPUError) {
                    submitted = .success(try backend.submit(batch))
                } catch {
                    submitted = .failure(error)
                }
                let handed = monotonicNanoseconds()
                monitor.lock()
                dispatchBusy += handed - handing
                switch submitted {
                case let .success(id): entry.submission = id
                case let .failure(error): entry.failure = error
                }
                entry.dispatched = true
                dispatched.signal()
                continue
            }
            if stopping && inFlight.isEmpty { break }
            if let wake = wakeAt, !stopping {
                // Work is queued but every client that has some is over its share: the
                // device idles on purpose. Counted, so "not work-conserving" is measurable.
                let from = monotonicNanoseconds()
                workAvailable.wait(until: wake)
                heldBack += monotonicNanoseconds() - from
            } else {
                workAvailable.wait()
            }
        }
        threadsRunning -= 1
        dispatched.signal()
        progress.broadcast()
        monitor.unlock()
    }

    /// Retires batches as the device finishes them: one wait covers every dispatched batch,
    /// and every batch found finished is retired at that wake-up, oldest first. A client's
    /// batches share a lane, so they finish, and retire, in their order.
    private func retireLoop() {
        monitor.lock()
        while true {
            let dispatchedNow = inFlight.filter(\.dispatched)
            guard !dispatchedNow.isEmpty else {
                if stopping && inFlight.isEmpty && threadsRunning == 1 { break }
                dispatched.wait()
                continue
            }
            // Handing over failed: nothing runs, it retires at once with its error.
            let refused = dispatchedNow.filter { $0.submission == nil }
            let waiting = dispatchedNow.compactMap(\.submission)
            monitor.unlock()
            var collecting = monotonicNanoseconds()
            var outcomes: [(InFlightBatch, Result<BatchCompletion, GPUError>)] = refused.map {
                ($0, .failure($0.failure ?? .unknownSubmission(SubmissionID(rawValue: 0))))
            }
            if !waiting.isEmpty {
                // Bounded, so batches dispatched meanwhile join the next wait.
                let finished: [SubmissionID]
                do throws(GPUError) {
                    finished = refused.isEmpty ? try backend.waitForAny(waiting, timeoutNanoseconds: 2_000_000) : []
                } catch {
                    finished = []
                    logger.error("GPUHost scheduler: waiting for the device failed: \(error)")
                }
                collecting = monotonicNanoseconds()
                for entry in dispatchedNow {
                    guard let id = entry.submission, finished.contains(id) else { continue }
                    do throws(GPUError) {
                        outcomes.append((entry, .success(try backend.wait(id, timeoutNanoseconds: .max))))
                    } catch {
                        outcomes.append((entry, .failure(error)))
                    }
                }
            }
            let finishedAt = monotonicNanoseconds()
            monitor.lock()
            retireBusy += finishedAt - collecting
            var results: [(BatchTicket, Result<ScheduledCompletion, SchedulerError>)] = []
            for (entry, outcome) in outcomes {
                inFlight.removeAll { $0 === entry }
                results.append((entry.ticket, retire(entry, outcome, at: finishedAt)))
            }
            if !results.isEmpty {
                // Room on the device, and perhaps a client whose transfer batch may go now.
                workAvailable.signal()
                monitor.unlock()
                for (ticket, result) in results { ticket.finish(result) }
                monitor.lock()
            }
        }
        threadsRunning -= 1
        progress.broadcast()
        monitor.unlock()
    }
}
