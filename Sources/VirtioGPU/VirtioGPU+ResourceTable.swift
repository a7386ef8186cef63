import GPUHost
import Hypervisor
import Logging
import VGPUCore
import Platform

/// The resource and context tables: the capset a guest builds its contexts from, compute
/// contexts (each one scheduler client and two serial threads), and blob resources with their
/// guest backing. Every command here checks the guest's values before changing anything, and
/// everything that frees GPU memory or guest pages waits for the owning context's queued work,
/// because that work may still be using them.
extension VirtioGPU {
    // MARK: Capset

    /// Our capset (docs/vgpu-protocol.md, "Capset"): what a guest library needs to know to
    /// build command streams this device accepts. Version 1 is unchanged for old guests;
    /// version 2 uses the reserved last word for MLaaS flags (bit 0: this vGPU carries the
    /// VM's MLaaS requests).
    func capset(version: UInt32 = VirtioGPU.computeCapsetVersion) -> [UInt8] {
        var w = WireWriter(capacity: Self.capsetSize)
        w.u32(version >= 2 ? 2 : 1)
        w.u32(UInt32(ComputeStream.version))
        var opcodes: UInt32 = 0
        for opcode in ComputeStream.Opcode.allCases { opcodes |= 1 << UInt32(opcode.rawValue) }
        w.u32(opcodes)
        w.u32(UInt32(ComputeStream.maxCommands))
        w.u32(UInt32(ComputeStream.maxStreamBytes))
        w.u32(UInt32(clamping: profile.maxContexts))
        w.u64(UInt64(profile.memoryBytes))
        w.u32(scheduler.backend.kind == .vulkan ? 1 : 0)
        w.u32(version >= 2 && mlaasLock.withLock({ mlaasPort }) != nil ? Self.capsetMLaaSRequests : 0)
        return w.bytes
    }

    // MARK: Contexts

    func createContext(_ header: ControlHeader, _ body: WireReader) throws(VirtioGPUProtocol.Response) {
        var r = body
        let nameLength = try r.field32()
        let contextInit = try r.field32()
        let debugName = Array(bytes(of: r, count: 64))
        let id = header.contextID
        guard id != 0 else { throw .errorInvalidContextID }
        // context_init: the capset in the low 8 bits, the rest reserved. 0 would be a legacy
        // virgl context, which this device does not have.
        guard contextInit & ~VirtioGPUProtocol.contextInitCapsetMask == 0,
              contextInit & VirtioGPUProtocol.contextInitCapsetMask == Self.computeCapsetID else {
            throw .errorInvalidParameter
        }
        guard nameLength <= 64 else { throw .errorInvalidParameter }
        let printable = debugName.prefix(Int(nameLength)).map { (0x20 ..< 0x7f).contains($0) ? $0 : UInt8(ascii: "?") }
        let label = "\(name)/ctx\(id)" + (printable.isEmpty ? "" : "(\(String(decoding: printable, as: UTF8.self)))")

        try stateLock.withLock { () throws(VirtioGPUProtocol.Response) in
            guard state.contexts[id] == nil else { throw .errorInvalidContextID }
            guard state.contexts.count < profile.maxContexts else { throw .errorOutOfMemory }
        }
        let client: ClientID
        do throws(SchedulerError) {
            client = try scheduler.addClient(profile.clientConfiguration(
                name: label, owner: ClientOwner(vm: owner.vm, vgpu: owner.vgpu, context: id)))
        } catch {
            logger.warning("vGPU context refused by the scheduler: \(error)", metadata: ["device": "\(name)"])
            if case .shareUnavailable = error { throw .errorOutOfMemory }
            throw .errorUnspecified
        }
        let worker: SerialWorker, completions: SerialWorker
        do {
            worker = try SerialWorker(name: label)
            do { completions = try SerialWorker(name: label + "/completions") } catch {
                worker.stop(wait: false)
                throw error
            }
        } catch {
            try? scheduler.removeClient(client)
            throw .errorOutOfMemory
        }
        let context = Context(id: id, name: label, client: client, worker: worker, completions: completions)
        // The device thread is the only creator, so the id is still free.
        stateLock.withLock { state.contexts[id] = context }
    }

    private func bytes(of reader: WireReader, count: Int) -> ArraySlice<UInt8> {
        let start = min(reader.position, reader.bytes.count)
        return reader.bytes[start ..< min(start + count, reader.bytes.count)]
    }

    func destroyContext(_ request: Request) throws(VirtioGPUProtocol.Response) -> Disposition {
        let id = request.header.contextID
        let context = try stateLock.withLock { () throws(VirtioGPUProtocol.Response) -> Context in
            guard let context = state.contexts.removeValue(forKey: id) else { throw .errorInvalidContextID }
            state.resourceGeneration += 1
            return context
        }
        // After the context's queued work: free its client (and with it every buffer it owns),
        // then answer. Its resources stay until UNREF but can no longer reach the GPU.
        // Through the completion thread too: behind the answers to batches still on the GPU.
        let enqueued = context.worker.enqueue { [self] in
            context.completions.enqueue { [self] in
                do { try scheduler.removeClient(context.client) } catch {
                    logger.warning("vGPU: removing \(context.client) failed: \(error)", metadata: ["device": "\(name)"])
                }
                stateLock.withLock {
                    state.resourceGeneration += 1
                    // The client's removal freed the MLaaS scratch buffers too.
                    for (_, scratch) in context.scratch { state.memoryInUse -= scratch.bytes }
                    context.scratch = [:]
                    for resource in state.resources.values where resource.owner === context {
                        if resource.buffer != nil { state.memoryInUse -= Int(resource.size) }
                        resource.buffer = nil
                        resource.owner = nil
                    }
                }
                publish(request, encode(request.header.response(.okNoData)))
                context.stopWorkers(wait: false)
            }
        }
        guard enqueued else { throw .errorInvalidContextID }
        return .deferred
    }

    func attach(_ resourceID: UInt32, to contextID: UInt32, detach: Bool) throws(VirtioGPUProtocol.Response) {
        try stateLock.withLock { () throws(VirtioGPUProtocol.Response) in
            guard let context = state.contexts[contextID] else { throw .errorInvalidContextID }
            guard state.resources[resourceID] != nil else { throw .errorInvalidResourceID }
            state.resourceGeneration += 1
            if detach {
                guard context.attached.remove(resourceID) != nil else { throw .errorInvalidResourceID }
            } else {
                context.attached.insert(resourceID)
            }
        }
    }

    // MARK: Resources

    /// Reads `count` virtio_gpu_mem_entry records and checks each against guest memory.
    private func backingEntries(_ r: inout WireReader, count: UInt32) throws(VirtioGPUProtocol.Response) -> [BackingEntry] {
        guard count <= UInt32(Self.maxBackingEntries) else { throw .errorInvalidParameter }
        guard r.remaining >= Int(count) * VirtioGPUProtocol.memoryEntrySize else { throw .errorUnspecified }
        var entries: [BackingEntry] = []
        entries.reserveCapacity(Int(count))
        for _ in 0 ..< count {
            let address = try r.field64()
            let length = try r.field32()
            _ = try r.field32()  // padding
            // Each entry wholly inside one RAM region (no wrap past 2^64, no MMIO holes).
            guard length > 0, memory.contains(GuestAddress(address), length: UInt64(length)) else {
                throw .errorInvalidParameter
            }
            entries.append(BackingEntry(address: GuestAddress(address), length: UInt64(length)))
        }
        return entries
    }

    func createBlob(_ header: ControlHeader, _ body: WireReader) throws(VirtioGPUProtocol.Response) {
        var r = body
        let id = try r.field32()
        let memoryType = try r.field32()
        let flags = try r.field32()
        let entryCount = try r.field32()
        let blobID = try r.field64()
        let size = try r.field64()
        guard id != 0 else { throw .errorInvalidResourceID }
        // HOST3D_GUEST and unknown kinds are refused; so is MAPPABLE: there is no host-visible
        // shared memory region to map blobs into.
        guard let kind = VirtioGPUProtocol.BlobMemory(rawValue: memoryType), kind != .host3DGuest,
              flags & ~(VirtioGPUProtocol.BlobFlag.shareable | VirtioGPUProtocol.BlobFlag.crossDevice) == 0,
              blobID == 0, size > 0, size <= UInt64(profile.memoryBytes) else {
            throw .errorInvalidParameter
        }
        let entries = try backingEntries(&r, count: entryCount)
        switch kind {
        case .guest:
            // The guest pages are the blob: they must cover it.
            guard entries.totalLength >= size else { throw .errorInvalidParameter }
        case .host3D, .host3DGuest:
            guard entries.isEmpty else { throw .errorInvalidParameter }
        }
        let owner = try stateLock.withLock { () throws(VirtioGPUProtocol.Response) -> Context? in
            guard state.resources[id] == nil else { throw .errorInvalidResourceID }
            if header.contextID == 0 {
                // Only a GUEST blob may live outside a context (it then has no GPU memory).
                guard kind == .guest else { throw .errorInvalidContextID }
                return nil
            }
            guard let context = state.contexts[header.contextID] else { throw .errorInvalidContextID }
            let (total, overflow) = state.memoryInUse.addingReportingOverflow(Int(size))
            guard !overflow, total <= profile.memoryBytes else { throw .errorOutOfMemory }
            state.memoryInUse = total  // reserved before the allocation, released on failure
            return context
        }
        let resource = Resource(id: id, blobMemory: kind, size: size, backing: entries)
        if let owner {
            do throws(SchedulerError) {
                resource.buffer = try scheduler.createBuffer(for: owner.client, byteCount: Int(size))
                resource.owner = owner
            } catch {
                stateLock.withLock { state.memoryInUse -= Int(size) }
                if case .quotaExceeded = error { throw .errorOutOfMemory }
                logger.warning("vGPU blob allocation failed: \(error)", metadata: ["device": "\(name)"])
                throw .errorOutOfMemory
            }
        }
        stateLock.withLock {
            state.resources[id] = resource
            state.resourceGeneration += 1
        }
    }

    func attachBacking(_ body: WireReader) throws(VirtioGPUProtocol.Response) {
        var r = body
        let id = try r.field32()
        let count = try r.field32()
        guard count > 0 else { throw .errorInvalidParameter }
        let entries = try backingEntries(&r, count: count)
        try stateLock.withLock { () throws(VirtioGPUProtocol.Response) in
            guard let resource = state.resources[id] else { throw .errorInvalidResourceID }
            // One backing at a time (QEMU answers UNSPEC too); a GUEST blob's must cover it.
            guard resource.backing.isEmpty else { throw .errorUnspecified }
            if resource.blobMemory == .guest && entries.totalLength < resource.size { throw .errorInvalidParameter }
            resource.backing = entries
            state.resourceGeneration += 1
        }
    }

    func detachBacking(_ request: Request, resourceID: UInt32) throws(VirtioGPUProtocol.Response) -> Disposition {
        let owner = try stateLock.withLock { () throws(VirtioGPUProtocol.Response) -> Context? in
            guard let resource = state.resources[resourceID] else { throw .errorInvalidResourceID }
            guard !resource.backing.isEmpty else { throw .errorUnspecified }
            resource.backing = []
            state.resourceGeneration += 1
            return resource.owner
        }
        // Work already queued holds the old pages and may still write them: answer after it,
        // so the guest does not reuse the pages while we do.
        return deferAfter(owner, request)
    }

    func unref(_ request: Request, resourceID: UInt32) throws(VirtioGPUProtocol.Response) -> Disposition {
        let resource = try stateLock.withLock { () throws(VirtioGPUProtocol.Response) -> Resource in
            guard let resource = state.resources.removeValue(forKey: resourceID) else { throw .errorInvalidResourceID }
            state.resourceGeneration += 1
            for context in state.contexts.values { context.attached.remove(resourceID) }
            return resource
        }
        guard let owner = resource.owner else { return .respond(encode(request.header.response(.okNoData))) }
        // Free the GPU memory after the owner's queued work (which may use it), then answer:
        // Linux frees the backing pages when this response arrives.
        let enqueued = owner.worker.enqueue { [self] in
            let buffer = stateLock.withLock { () -> BufferID? in
                defer { resource.buffer = nil; resource.owner = nil }
                state.resourceGeneration += 1
                if resource.buffer != nil { state.memoryInUse -= Int(resource.size) }
                return resource.buffer
            }
            if let buffer {
                do { try scheduler.destroyBuffer(buffer, for: owner.client) } catch {
                    logger.warning("vGPU: freeing \(buffer) failed: \(error)", metadata: ["device": "\(name)"])
                }
            }
            publish(request, encode(request.header.response(.okNoData)))
        }
        return enqueued ? .deferred : .respond(encode(request.header.response(.okNoData)))
    }

    /// Answers OK once `context`'s queued work is done (at once without a context).
    private func deferAfter(_ context: Context?, _ request: Request) -> Disposition {
        let response = encode(request.header.response(.okNoData))
        guard let context, context.worker.enqueue({ [self] in publish(request, response) }) else {
            return .respond(response)
        }
        return .deferred
    }

    /// The submitting context and one of its resources, checked: attached to the context and
    /// backed by GPU memory of the context's own client. Call with `stateLock` held.
    func ownResource(_ id: UInt32, of context: Context) -> Resource? {
        guard context.attached.contains(id), let resource = state.resources[id], resource.owner === context,
              resource.buffer != nil else { return nil }
        return resource
    }
}
