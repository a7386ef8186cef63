extension GPUScheduler {
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

    /// Overwrites a buffer with zeros in bounded chunks, so a freed buffer never carries a
    /// guest's data into the device allocator.
    func zero(_ buffer: BufferID, byteCount: Int) throws(GPUError) {
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
}
