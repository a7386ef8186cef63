import Platform

/// A batch's way through the scheduler: queued by its client, handed to the device when the
/// policy gives the client a slice, charged when it retires.
extension GPUScheduler {
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
        try enqueue(for: client, completion: completion) { owned throws(GPUError) in
            try ValidatedBatch(batch, capacity: { owned[$0] })
        }
    }

    /// Queues a batch validated where it entered the host (the para-vGPU's decoder): only
    /// checked here to fit the client's own buffers (`ValidatedBatch.fits`), not validated again.
    @discardableResult
    public func submit(_ batch: ValidatedBatch, for client: ClientID,
                       completion: (@Sendable (Result<ScheduledCompletion, SchedulerError>) -> Void)? = nil)
        throws(SchedulerError) -> BatchTicket
    {
        try enqueue(for: client, completion: completion) { owned throws(GPUError) in
            try batch.fits(capacity: { owned[$0] })
            return batch
        }
    }

    /// The batch `check` returns, after it passed against the client's buffers, queued.
    private func enqueue(for client: ClientID,
                         completion: (@Sendable (Result<ScheduledCompletion, SchedulerError>) -> Void)?,
                         check: ([BufferID: Int]) throws(GPUError) -> ValidatedBatch) throws(SchedulerError) -> BatchTicket {
        monitor.lock()
        defer { monitor.unlock() }
        guard !stopping else { throw .stopped }
        guard let state = clients[client], !state.removed else { throw .unknownClient(client) }
        let batch: ValidatedBatch
        do throws(GPUError) {
            batch = try check(state.buffers)
        } catch {
            throw .backend(error)
        }
        // A batch counts once against the limit, however many pieces it is cut into.
        guard state.queuedSubmissions < configuration.maxQueuedBatchesPerClient else {
            throw .queueFull(client, limit: configuration.maxQueuedBatchesPerClient)
        }
        let now = monotonicNanoseconds()
        policy.workQueued(for: client, at: now) { self.demand(of: $0) }
        let ticket = BatchTicket(client: client, callback: completion)
        if let model = batchModel(of: state) {
            let (pieces, group) = cut(batch, for: state, by: model)
            for piece in pieces {
                state.queue.append(PendingBatch(batch: piece, ticket: ticket, enqueuedAt: now, group: group))
            }
        } else {
            state.queue.append(PendingBatch(batch: batch, ticket: ticket, enqueuedAt: now))
        }
        state.queuedSubmissions += 1
        state.demanded = true
        workAvailable.signal()
        return ticket
    }

    /// The most pieces one batch is cut into: each costs a submission and a fence of its own.
    static let maxPieces = 32

    /// Call locked. The batch of a client with a batch-duration model as it goes to the device:
    /// whole when its predicted device time fits a time slice and a half (or nothing is known
    /// yet), else in pieces of about three quarters of a slice (so a piece that runs a little
    /// long still ends inside its slice), cut where the kernels' work (`kernelWork`) divides evenly.
    private func cut(_ batch: ValidatedBatch, for state: ClientState,
                     by model: any BatchDurationModel) -> ([ValidatedBatch], BatchGroup) {
        let work = batch.kernelWork
        let total = work.reduce(0, +)
        let quantum = Double(policy.timeSlice)
        let signature = batch.kernelList.serial
        let whole = BatchGroup(model: model, signature: signature, work: total, pieces: 1)
        guard batch.kernels.count > 1, quantum > 0,
              let predicted = model.predict(client: state.id, signature: signature, work: total),
              predicted.isFinite, predicted > 1.5 * quantum else {
            return ([batch], whole)
        }
        let count = min(batch.kernels.count, Self.maxPieces, Int((predicted / (0.75 * quantum)).rounded(.up)))
        var cuts: [Int] = []
        var accumulated = 0.0
        for index in 1 ..< work.count where cuts.count < count - 1 {
            accumulated += work[index - 1]
            // Cut before the first kernel that starts past the next piece's share of the work.
            if accumulated >= Double(cuts.count + 1) * total / Double(count) { cuts.append(index) }
        }
        let pieces = batch.segments(cuttingBefore: cuts)
        if pieces.count > 1 {
            state.batchesCut += 1
            state.piecesMade += UInt64(pieces.count)
        }
        return (pieces, BatchGroup(model: model, signature: signature, work: total, pieces: pieces.count))
    }

    /// Call locked. The next batch to hand the device: more of the current slice while it
    /// has room, else the first batch of a new slice for whichever client the policy picks.
    func takeNextBatch(_ now: UInt64) -> InFlightBatch? {
        let state: ClientState
        if policy.mayContinueSlice(at: now, demand: { self.demand(of: $0) }),
           let owner = policy.current.flatMap({ clients[$0.client] })
        {
            state = owner
        } else {
            policy.closeCurrentSlice(at: now, demand: { self.demand(of: $0) }, finished: { self.record($0) })
            // The scheduler's per-decision overhead: the decision alone, not the slice's
            // bookkeeping around it.
            let started = monotonicNanoseconds()
            let decision = policy.decide(at: now) { self.demand(of: $0) }
            if decision.anyWork {
                decisions += 1
                decisionOverhead.record(monotonicNanoseconds() - started)
            }
            guard let picked = decision.client, let chosen = clients[picked] else { return nil }
            policy.openSlice(for: picked, at: now)
            state = chosen
        }
        guard let pending = state.queue.popFirst(), let dispatch = policy.dispatch() else { return nil }
        if pending.group?.pieceTaken() ?? true { state.queuedSubmissions -= 1 }
        let entry = InFlightBatch(client: state, dispatch: dispatch, ticket: pending.ticket, enqueuedAt: pending.enqueuedAt,
                                  submittedAt: now)
        entry.group = pending.group
        state.inFlight += 1
        if pending.batch.hasHostTransfers {
            entry.carriesHostTransfers = true
            state.transferBatchesInFlight += 1
        }
        let waited = now - min(pending.enqueuedAt, now)
        queueing.record(waited)
        state.latency.record(waited)
        entry.batch = pending.batch
        inFlight.append(entry)
        return entry
    }

    /// Call locked. Charges a retired batch; returns the outcome for its ticket, nil while
    /// more pieces of a learned-slice batch are to come.
    func retire(_ entry: InFlightBatch, _ outcome: Result<BatchCompletion, GPUError>,
                at now: UInt64) -> Result<ScheduledCompletion, SchedulerError>? {
        let result = charge(entry, outcome, at: now)
        guard let group = entry.group else {
            if case let .success(whole) = result {
                policy.submissionRetired(entry.client.id, charged: whole.chargedNanoseconds)
            }
            return result
        }
        switch result {
        case .failure:
            group.failed = true
            return result
        case let .success(piece):
            guard let whole = group.add(piece) else { return nil }
            policy.submissionRetired(entry.client.id, charged: whole.chargedNanoseconds)
            group.model.observe(client: entry.client.id, signature: group.signature, work: group.work,
                                nanoseconds: Double(whole.chargedNanoseconds))
            return group.failed ? nil : .success(whole)
        }
    }

    /// Call locked. Charges a retired batch (or piece); its outcome.
    private func charge(_ entry: InFlightBatch, _ outcome: Result<BatchCompletion, GPUError>,
                        at now: UInt64) -> Result<ScheduledCompletion, SchedulerError> {
        let state = entry.client
        state.inFlight -= 1
        if entry.carriesHostTransfers { state.transferBatchesInFlight -= 1 }
        defer { progress.broadcast() }
        let completion: BatchCompletion
        switch outcome {
        case let .failure(error):
            state.failed += 1
            lastRetiredAt = now
            policy.retire(entry.dispatch, charged: nil) { self.record($0) }
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
        policy.retire(entry.dispatch, charged: charged) { self.record($0) }
        return .success(ScheduledCompletion(
            client: state.id, batch: completion, chargedNanoseconds: charged,
            queueingNanoseconds: entry.submittedAt - min(entry.enqueuedAt, entry.submittedAt),
            enqueuedAt: entry.enqueuedAt, submittedAt: entry.submittedAt, completedAt: now))
    }
}
