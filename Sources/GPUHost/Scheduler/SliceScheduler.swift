/// The scheduling policy's state and arithmetic, apart from queues, buffers, threads and the
/// device: who is entitled to what, whose slice starts next, how long it may run, and what a
/// retired batch costs its client. `GPUScheduler` drives it under its monitor; tests drive it
/// with a clock of their own, since every operation takes the time as a parameter and none
/// reads a clock.
///
/// The policy never sees a client's queue. Where it needs to know whether a client has work,
/// it asks a `demand` function, evaluated at the moment of the question, so it cannot hold a
/// stale copy of the queues.
struct SliceScheduler {
    /// What a client's queue allows at the moment the policy asks.
    enum Demand {
        /// Nothing queued, nothing on the device.
        case idle
        /// Nothing queued, batches still on the device.
        case running
        /// Work queued, but its next batch must wait for the client's own batches to retire
        /// (see `ClientState.canIssue`).
        case blocked
        /// Work queued that may go to the device now.
        case ready

        var hasWork: Bool { self == .blocked || self == .ready }
        var isActive: Bool { self != .idle }
    }

    /// One client's standing with the policy.
    struct Account {
        let id: ClientID
        /// Share weight under fixed share.
        let weight: Double
        /// Removed: never picked again, no longer entitled, but kept until its batches on the
        /// device have retired so they are still charged to it.
        var detached = false
        /// The policy's entitlement, a fraction of device time.
        var entitledShare: Double = 0
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
        /// Moving average of charged time per submitted batch, all its pieces together when a
        /// batch-duration model cut it (else the same as `batchEstimate`): what the token
        /// bucket must hold for the client to run one of its batches without losing time.
        var submissionEstimate: Double = 0
        /// The device time this client's batches in flight are expected to take.
        var inFlightEstimate: Double = 0
        var readySince: UInt64?
        var cumulativePreemption: UInt64 = 0
    }

    /// One client's turn on the device. Its batches may still be running after the policy has
    /// moved on (pipelining), so it is finished when the last one retires.
    struct Slice {
        /// Distinguishes slices so a retiring batch finds its own.
        let serial: UInt64
        let client: ClientID
        let startedAt: UInt64
        let target: UInt64
        let preemptionAtStart: UInt64
        var charged: UInt64 = 0
        var inFlightEstimate: Double = 0
        var pending = 0
        var batches = 0

        /// How far the slice ran past its target, when it did.
        var overrun: UInt64? { charged > target ? charged - target : nil }
    }

    /// A batch handed to the device, as the policy needs to find it again when it retires.
    struct Dispatch {
        let client: ClientID
        let slice: UInt64
        /// What the policy expected the batch to cost when it let it go.
        let estimate: Double
    }

    /// The outcome of `decide`.
    struct Decision {
        var client: ClientID?
        /// Some client had work queued, picked or not: only such decisions count in the
        /// scheduler's metrics.
        var anyWork = false
    }

    let configuration: SchedulerConfiguration

    /// In id order, which is attach order: the round-robin ring. Few, so a sorted array beats
    /// a dictionary both for the ring walk and for the lookups.
    private(set) var accounts: [Account] = []
    private(set) var attachedCount = 0
    private(set) var current: Slice?
    /// Closed slices with batches still on the device.
    private var closing: [Slice] = []
    private var nextSerial: UInt64 = 1
    private(set) var lastPicked: ClientID?
    private var lastRefill: UInt64
    /// When a share policy has work that must wait for tokens: the earliest refill instant.
    private(set) var wakeAt: UInt64?
    /// The device time all batches in flight are expected to take (their estimates' sum).
    private(set) var inFlightEstimate = 0.0

    init(configuration: SchedulerConfiguration, now: UInt64) {
        self.configuration = configuration
        lastRefill = now
    }

    var timeSlice: UInt64 {
        configuration.timeSlice(forClients: attachedCount)
    }

    var clientIDs: [ClientID] { accounts.map(\.id) }

    func account(_ id: ClientID) -> Account? {
        index(of: id).map { accounts[$0] }
    }

    // MARK: Clients

    /// Refuses a fixed-share client whose weight does not fit beside the attached ones.
    func admit(weight: Double) throws(SchedulerError) {
        guard case let .fixedShare(total) = configuration.policy else { return }
        var used = 0.0
        for account in accounts where !account.detached { used += account.weight }
        // A little slack for weights that are decimal fractions (0.1 + 0.2 ...).
        guard used + weight <= total * (1 + 1e-9) else {
            throw .shareUnavailable(requested: weight, available: max(0, total - used))
        }
    }

    /// `id` must be above every id attached so far (the ring stays in id order).
    mutating func attach(_ id: ClientID, weight: Double, at now: UInt64, demand: (ClientID) -> Demand) {
        precondition(accounts.last.map { $0.id < id } ?? true, "client ids must grow")
        refill(now)
        var account = Account(id: id, weight: weight, tokens: Double(timeSlice))
        // A newcomer starts level with the clients running now, not with a head start of
        // all the time they have been charged.
        account.virtualTime = referenceVirtualTime(excluding: nil, demand: demand)
        accounts.append(account)
        attachedCount += 1
        recomputeEntitlements()
    }

    /// The client's share goes to the others from now; its batches still on the device are
    /// charged to it when they retire. `forget` it once they have.
    mutating func detach(_ id: ClientID, at now: UInt64, finished: (Slice) -> Void) {
        guard let index = index(of: id), !accounts[index].detached else { return }
        refill(now)
        accounts[index].detached = true
        attachedCount -= 1
        if current?.client == id { closeCurrentSlice(at: now, demand: { _ in .idle }, finished: finished) }
        recomputeEntitlements()
    }

    mutating func forget(_ id: ClientID) {
        guard let index = index(of: id) else { return }
        if !accounts[index].detached { attachedCount -= 1 }
        accounts.remove(at: index)
        if lastPicked == id { lastPicked = accounts.last { $0.id < id }?.id ?? accounts.last?.id }
    }

    /// A batch is about to be queued for the client (`demand` still tells the state before it).
    mutating func workQueued(for id: ClientID, at now: UInt64, demand: (ClientID) -> Demand) {
        guard let index = index(of: id) else { return }
        let before = demand(id)
        if !before.isActive {
            // Waking from idle: no credit for the time it was away (else it would hog the
            // device until its virtual time caught up with the others').
            accounts[index].virtualTime = max(accounts[index].virtualTime,
                                              referenceVirtualTime(excluding: id, demand: demand))
        }
        if !before.hasWork, current?.client != id { accounts[index].readySince = now }
    }

    private mutating func recomputeEntitlements() {
        let attached = Double(attachedCount)
        for index in accounts.indices where !accounts[index].detached {
            switch configuration.policy {
            case let .fixedShare(total):
                accounts[index].entitledShare = accounts[index].weight / total
            case .equalShare, .bestEffort:
                accounts[index].entitledShare = 1 / attached
            }
        }
    }

    /// The virtual time a (re)joining client is levelled up to: the least among clients
    /// with work, or the last picked client's when nobody has any.
    private func referenceVirtualTime(excluding: ClientID?, demand: (ClientID) -> Demand) -> Double {
        var least: Double?
        for account in accounts where !account.detached && account.id != excluding && demand(account.id).isActive {
            least = min(least ?? account.virtualTime, account.virtualTime)
        }
        if let least { return least }
        if let last = lastPicked, let account = account(last) { return account.virtualTime }
        return 0
    }

    // MARK: Tokens

    /// Accrues every client's entitlement. The bucket holds two slices, or two of the
    /// client's submitted batches when those are longer, so a backlogged client never loses
    /// accrued time merely because its batches are big, while an idle one cannot bank more.
    /// Submitted, not pieces: a batch cut into slice-sized pieces still has to be paid for
    /// whole, and a bucket of two pieces overflows, and the client loses accrued time, whenever
    /// the host delays its next piece by more than two pieces' worth of its share.
    mutating func refill(_ now: UInt64) {
        guard now > lastRefill else { return }
        let elapsed = Double(now - lastRefill)
        lastRefill = now
        guard !configuration.policy.isWorkConserving else { return }
        let slice = Double(timeSlice)
        for index in accounts.indices where !accounts[index].detached {
            let cap = 2 * max(slice, accounts[index].submissionEstimate)
            accounts[index].tokens = min(cap, accounts[index].tokens + elapsed * accounts[index].entitledShare)
        }
    }

    /// Whether the share policy lets the client put one more batch on the device now.
    private func withinShare(_ account: Account) -> Bool {
        configuration.policy.isWorkConserving || account.tokens - account.inFlightEstimate > 0
    }

    // MARK: Slices

    /// Whether the current slice's client may put one more batch on the device now: it has a
    /// batch that may go, the slice has room for it and the client's share allows it.
    mutating func mayContinueSlice(at now: UInt64, demand: (ClientID) -> Demand) -> Bool {
        guard let slice = current, let index = index(of: slice.client), !accounts[index].detached,
              demand(slice.client) == .ready,
              Double(slice.charged) + slice.inFlightEstimate < Double(slice.target) else { return false }
        refill(now)
        return withinShare(accounts[index])
    }

    mutating func closeCurrentSlice(at now: UInt64, demand: (ClientID) -> Demand, finished: (Slice) -> Void) {
        guard let slice = current else { return }
        current = nil
        if let index = index(of: slice.client), !accounts[index].detached, demand(slice.client).hasWork {
            accounts[index].readySince = now
        }
        if slice.pending == 0 {
            finish(slice, finished)
        } else {
            closing.append(slice)
        }
    }

    /// Picks the client whose slice starts now, or none (then `wakeAt` says when a share
    /// policy's buckets will have refilled enough, if that is what everyone waits for).
    mutating func decide(at now: UInt64, demand: (ClientID) -> Demand) -> Decision {
        var decision = Decision()
        wakeAt = nil
        switch configuration.policy {
        case .bestEffort:
            // Round robin: the first client with work after the last one picked.
            let count = accounts.count
            let start = lastPicked.flatMap { last in accounts.firstIndex { $0.id > last } } ?? 0
            for step in 0 ..< count {
                let account = accounts[(start + step) % count]
                guard !account.detached else { continue }
                let wants = demand(account.id)
                guard wants.hasWork else { continue }
                decision.anyWork = true
                // Waiting for its own batch to retire before a transfer batch: skip a turn.
                guard wants == .ready else { continue }
                decision.client = account.id
                break
            }
        case .equalShare, .fixedShare:
            refill(now)
            var chosen: Int?
            var earliest: Double?
            for index in accounts.indices where !accounts[index].detached {
                let account = accounts[index]
                let wants = demand(account.id)
                guard wants.hasWork else { continue }
                decision.anyWork = true
                // Waiting for its own batch to retire before a transfer batch: that batch's
                // retirement wakes the scheduler, not a token refill.
                guard wants == .ready else { continue }
                if withinShare(account) {
                    if chosen.map({ account.virtualTime < accounts[$0].virtualTime }) ?? true { chosen = index }
                } else if account.entitledShare > 0 {
                    let wait = (account.inFlightEstimate - account.tokens) / account.entitledShare
                    earliest = min(earliest ?? wait, wait)
                }
            }
            decision.client = chosen.map { accounts[$0].id }
            if chosen == nil, let earliest {
                // Nobody may run until a bucket refills: the device idles (the policy does
                // not give an idle share away) and the thread sleeps until then.
                wakeAt = now + UInt64(max(earliest, 0)) + 1_000
            }
        }
        return decision
    }

    /// Starts the slice `decide` picked the client for.
    mutating func openSlice(for id: ClientID, at now: UInt64) {
        guard let index = index(of: id) else { return }
        lastPicked = id
        let length = Double(timeSlice)
        // Repay overrun by shortening this slice, but keep at least a quarter of it so
        // a client deep in debt still makes progress every turn.
        let repayment = min(accounts[index].debt, accounts[index].repaymentPerSlice, length * 0.75)
        accounts[index].debt = max(0, accounts[index].debt - repayment)
        if accounts[index].debt < 1 {
            accounts[index].debt = 0
            accounts[index].repaymentPerSlice = 0
        }
        if let ready = accounts[index].readySince {
            accounts[index].cumulativePreemption += now - min(ready, now)
            accounts[index].readySince = nil
        }
        current = Slice(serial: nextSerial, client: id, startedAt: now, target: UInt64(length - repayment),
                        preemptionAtStart: accounts[index].cumulativePreemption)
        nextSerial += 1
    }

    /// A slice whose batches have all retired: an overrun becomes debt, repaid from the
    /// client's next slices at 1/averagingFactor a slice.
    private mutating func finish(_ slice: Slice, _ finished: (Slice) -> Void) {
        if let index = index(of: slice.client), let overrun = slice.overrun {
            accounts[index].debt += Double(overrun)
            accounts[index].repaymentPerSlice = accounts[index].debt / Double(configuration.averagingFactor)
        }
        finished(slice)
    }

    // MARK: Batches

    /// A batch of the current slice's client goes to the device.
    mutating func dispatch() -> Dispatch? {
        guard var slice = current, let index = index(of: slice.client) else { return nil }
        let estimate = accounts[index].batchEstimate
        accounts[index].inFlightEstimate += estimate
        inFlightEstimate += estimate
        slice.inFlightEstimate += estimate
        slice.pending += 1
        slice.batches += 1
        current = slice
        return Dispatch(client: slice.client, slice: slice.serial, estimate: estimate)
    }

    /// A batch has left the device: `charged` is the device time it cost, nil when it
    /// failed (a failed batch costs nothing). Finishes its slice if that was the last batch
    /// of a closed one.
    mutating func retire(_ batch: Dispatch, charged: UInt64?, finished: (Slice) -> Void) {
        let index = index(of: batch.client)
        if let index { accounts[index].inFlightEstimate -= batch.estimate }
        inFlightEstimate = max(0, inFlightEstimate - batch.estimate)
        if let charged, let index {
            accounts[index].tokens -= Double(charged)
            accounts[index].virtualTime += Double(charged) / max(accounts[index].entitledShare, 1e-9)
            // An 1/8 moving average follows a change of workload within a few batches.
            let estimate = accounts[index].batchEstimate
            accounts[index].batchEstimate = estimate == 0 ? Double(charged) : estimate + (Double(charged) - estimate) / 8
        }
        if current?.serial == batch.slice {
            current!.inFlightEstimate -= batch.estimate
            current!.pending -= 1
            if let charged { current!.charged += charged }
            return
        }
        guard let position = closing.firstIndex(where: { $0.serial == batch.slice }) else { return }
        closing[position].inFlightEstimate -= batch.estimate
        closing[position].pending -= 1
        if let charged { closing[position].charged += charged }
        if closing[position].pending == 0 {
            finish(closing.remove(at: position), finished)
        }
    }

    /// A submitted batch has retired whole (all its pieces, when it was cut) after `charged`
    /// ns of device time in all.
    mutating func submissionRetired(_ id: ClientID, charged: UInt64) {
        guard let index = index(of: id) else { return }
        let estimate = accounts[index].submissionEstimate
        accounts[index].submissionEstimate = estimate == 0 ? Double(charged) : estimate + (Double(charged) - estimate) / 8
    }

    private func index(of id: ClientID) -> Int? {
        var low = 0, high = accounts.count
        while low < high {
            let middle = (low + high) / 2
            if accounts[middle].id < id { low = middle + 1 } else { high = middle }
        }
        return low < accounts.count && accounts[low].id == id ? low : nil
    }
}
