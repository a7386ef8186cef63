import Platform

extension GPUScheduler {
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
        try policy.admit(weight: client.weight)
        let id = ClientID(rawValue: nextClientID)
        nextClientID += 1
        policy.attach(id, weight: client.weight, at: monotonicNanoseconds()) { self.demand(of: $0) }
        clients[id] = ClientState(id: id, configuration: client)
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
        state.removed = true
        let (dropped, submissions) = state.dropQueue()
        cancelled += UInt64(submissions)
        policy.detach(id, at: now) { self.record($0) }
        removals.append(ClientRemoval(client: id, name: state.configuration.name, owner: state.configuration.owner,
                                      revokedNanoseconds: monotonicNanoseconds() - epoch))
        // Its batches on the device cannot be recalled; its memory is freed after them.
        while state.inFlight > 0 { progress.wait() }
        clients[id] = nil
        policy.forget(id)
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
        monitor.withLock { policy.clientIDs }
    }

    /// Blocks until every batch queued so far by `client` has retired.
    public func drain(_ client: ClientID) throws(SchedulerError) {
        monitor.lock()
        defer { monitor.unlock() }
        _ = try waitIdle(client)
    }

    /// Call locked. Waits until the client has nothing queued or on the device.
    func waitIdle(_ client: ClientID) throws(SchedulerError) -> ClientState {
        while true {
            guard let state = clients[client], !state.removed else { throw .unknownClient(client) }
            if !state.isActive { return state }
            progress.wait()
        }
    }

    /// Call locked. Clients not removed, in id order.
    var attached: [ClientState] {
        policy.clientIDs.compactMap { clients[$0] }.filter { !$0.removed }
    }

    /// Call locked. The policy's view of a client's queue.
    func demand(of id: ClientID) -> SliceScheduler.Demand {
        clients[id]?.demand ?? .idle
    }
}
