import GPUHost
import Platform
import VGPUCore

/// The contexts of this vGPU as an MLaaS service computes on them (VGPUCore's
/// `MLaaSContextGPU`, malv_mlaas.h's `gpu` table): the guest enabled the service through this
/// device, and names a context and its resources in the service's parameters. Everything is
/// checked here as a guest's own submission is: the context must exist, resources must be
/// attached to and owned by it and be GPU memory only (HOST3D: a GUEST blob's pages are copied
/// over its GPU copy before each submission that reads it), every operand must lie inside its
/// buffer, and GPUHost validates the kernels before anything runs. The work runs on the
/// context's own queue and scheduler client, behind what the guest queued before it, so it
/// never overwrites a buffer a queued guest submission still reads, and it is billed to the
/// context (its share, its quota).
extension VirtioGPU: MLaaSContextGPU {
    public func mlaasResourceSize(context id: UInt32, resource: UInt32) throws(MLaaSGPUError) -> UInt64 {
        try stateLock.withLock { () throws(MLaaSGPUError) -> UInt64 in
            let context = try mlaasContext(id)
            return try mlaasResource(resource, of: context).size
        }
    }

    public func mlaasAllocate(context id: UInt32, bytes: Int) throws(MLaaSGPUError) -> UInt32 {
        guard bytes > 0, bytes <= profile.memoryBytes else {
            throw MLaaSGPUError(.noMemory, "a scratch buffer of \(bytes) bytes (the vGPU has \(profile.memoryBytes))")
        }
        let context = try stateLock.withLock { () throws(MLaaSGPUError) -> Context in
            let context = try mlaasContext(id)
            let (total, overflow) = state.memoryInUse.addingReportingOverflow(bytes)
            guard !overflow, total <= profile.memoryBytes else {
                throw MLaaSGPUError(.noMemory, "\(bytes) bytes of scratch exceed the vGPU's memory (\(state.memoryInUse) of \(profile.memoryBytes) in use)")
            }
            state.memoryInUse = total  // reserved before the allocation, released on failure
            return context
        }
        let buffer: BufferID
        do throws(SchedulerError) { buffer = try scheduler.createBuffer(for: context.client, byteCount: bytes) } catch {
            stateLock.withLock { state.memoryInUse -= bytes }
            throw MLaaSGPUError(.noMemory, "context \(id) cannot hold \(bytes) more bytes: \(error)")
        }
        let handle = stateLock.withLock { () -> UInt32? in
            // Destroyed while we allocated: the client's removal frees the buffer.
            guard state.contexts[id] === context else { return nil }
            let handle = context.nextScratch
            context.nextScratch &+= 1
            if context.nextScratch == 0 { context.nextScratch = 1 }
            context.scratch[handle] = (buffer, bytes)
            return handle
        }
        guard let handle else {
            stateLock.withLock { state.memoryInUse -= bytes }
            throw MLaaSGPUError(.notFound, "context \(id) was destroyed")
        }
        return handle
    }

    public func mlaasRelease(context id: UInt32, scratch handle: UInt32) {
        let found = stateLock.withLock { () -> (Context, BufferID, Int)? in
            guard let context = state.contexts[id], let scratch = context.scratch.removeValue(forKey: handle) else { return nil }
            return (context, scratch.buffer, scratch.bytes)
        }
        guard let found else { return }
        let (context, buffer, bytes) = found
        // After the context's queued work, which may still name it.
        let free = { [self] in
            do { try scheduler.destroyBuffer(buffer, for: context.client) } catch {
                logger.debug("vGPU: freeing MLaaS scratch \(buffer) failed: \(error)", metadata: ["device": "\(name)"])
            }
            stateLock.withLock { state.memoryInUse -= bytes }
        }
        if !context.worker.enqueue(free) { free() }
    }

    public func mlaasRun(context id: UInt32, uploads: [MLaaSUpload],
                         build: (_ resolve: MLaaSResolve) throws(MLaaSGPUError) -> [Kernel]) throws(MLaaSGPUError) {
        // Resolve and validate now, in the caller's thread: a bad run costs its service an
        // error and the context nothing.
        var capacities: [BufferID: Int] = [:]
        let (context, batch) = try stateLock.withLock { () throws(MLaaSGPUError) -> (Context, CommandBatch) in
            let context = try mlaasContext(id)
            func resolve(_ name: MLaaSBufferName, _ offset: UInt64, _ length: UInt64, _ element: Int) throws(MLaaSGPUError) -> BufferRange {
                let (buffer, size) = try mlaasBuffer(name, of: context)
                let elementSize = UInt64(element)
                guard length > 0, offset % elementSize == 0, length % elementSize == 0 else {
                    throw MLaaSGPUError(.invalid, "\(name): [\(offset), +\(length)) is empty or not aligned to \(element)-byte elements")
                }
                let (end, overflow) = offset.addingReportingOverflow(length)
                guard !overflow, end <= UInt64(size) else {
                    throw MLaaSGPUError(.invalid, "\(name): [\(offset), +\(length)) lies outside its \(size) bytes")
                }
                capacities[buffer] = size
                return BufferRange(buffer, offset: Int(offset / elementSize), count: Int(length / elementSize))
            }
            var batch = CommandBatch(try build(resolve))
            for upload in uploads {
                let target = try resolve(.scratch(upload.scratch), upload.offset, UInt64(upload.bytes.count), 1)
                batch.uploads.append(HostTransfer(buffer: target.buffer, byteOffset: target.offset,
                                                  host: UnsafeMutableRawBufferPointer(mutating: upload.bytes)))
            }
            return (context, batch)
        }
        let validated: ValidatedBatch
        do throws(GPUError) { validated = try ValidatedBatch(batch, capacity: { capacities[$0] }) } catch {
            throw MLaaSGPUError(.invalid, "\(error)")
        }
        let done = Monitor()
        let finished = done.makeCondition()
        var outcome: Result<Void, MLaaSGPUError>?
        let enqueued = context.worker.enqueue { [self] in
            let result: Result<Void, MLaaSGPUError>
            do {
                switch try scheduler.submit(validated, for: context.client).wait() {
                case .success: result = .success(())
                case let .failure(error): result = .failure(MLaaSGPUError(.failed, "the batch failed: \(error)"))
                }
            } catch {
                result = .failure(MLaaSGPUError(.failed, "the batch was refused: \(error)"))
            }
            done.withLock {
                outcome = result
                finished.signal()
            }
        }
        guard enqueued else { throw MLaaSGPUError(.notFound, "context \(id) was destroyed") }
        // The uploads' bytes are the caller's: it waits here until the batch is retired.
        let result = done.withLock { () -> Result<Void, MLaaSGPUError> in
            while outcome == nil { finished.wait() }
            return outcome!
        }
        try result.get()
    }

    /// Call with `stateLock` held.
    private func mlaasContext(_ id: UInt32) throws(MLaaSGPUError) -> Context {
        guard let context = state.contexts[id] else { throw MLaaSGPUError(.notFound, "no context \(id) on this vGPU") }
        return context
    }

    /// Call with `stateLock` held: a resource the context may hand to a service.
    private func mlaasResource(_ id: UInt32, of context: Context) throws(MLaaSGPUError) -> Resource {
        guard id != 0, let resource = ownResource(id, of: context) else {
            throw MLaaSGPUError(.notFound, "resource \(id) is not attached to and owned by context \(context.id)")
        }
        guard resource.blobMemory == .host3D else {
            throw MLaaSGPUError(.invalid, "resource \(id) is a GUEST blob (its pages overwrite its GPU copy); use a HOST3D blob")
        }
        return resource
    }

    /// Call with `stateLock` held.
    private func mlaasBuffer(_ name: MLaaSBufferName, of context: Context) throws(MLaaSGPUError) -> (BufferID, Int) {
        switch name {
        case let .scratch(handle):
            guard let scratch = context.scratch[handle] else {
                throw MLaaSGPUError(.notFound, "no scratch buffer \(handle) on context \(context.id)")
            }
            return (scratch.buffer, scratch.bytes)
        case let .resource(id):
            let resource = try mlaasResource(id, of: context)
            guard let buffer = resource.buffer else { throw MLaaSGPUError(.notFound, "resource \(id) has no GPU memory") }
            return (buffer, Int(resource.size))
        }
    }
}
