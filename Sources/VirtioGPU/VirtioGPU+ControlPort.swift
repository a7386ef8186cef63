import GPUHost
import Hypervisor
import Logging
import VGPUCore
import Platform

/// The control port: the device thread's side of the control and cursor queues (taking
/// requests, dispatching commands, answering what can be answered at once) and the completion
/// side every thread shares (`publish`: responses into their chains, fenced ones in timeline
/// order, back to the driver).
///
/// The control queue's ring is touched by the device thread and by every context's
/// completion threads, so each ring operation happens under `portLock`: the drain takes it as
/// its ring lock, `publish` holds it while it releases fences and returns chains.
extension VirtioGPU {
    /// One control request in flight.
    struct Request {
        let chain: DescriptorChain
        let header: ControlHeader
        let generation: UInt64
        let fence: FenceTimelines.PendingFence?
        let timeline: FenceTimelines.Timeline
        /// What the driver negotiated: blob and context-init commands need their features.
        let features: UInt64
    }

    enum Disposition {
        case respond([UInt8])
        /// A context's completion thread will respond.
        case deferred
    }

    // MARK: Queues

    public func process(queue index: Int, context: VirtioQueueContext) throws(VirtqueueError) {
        switch index {
        case Self.controlQueue: try drainControl(context)
        case Self.cursorQueue:
            // No scanout, so no cursor: UPDATE_CURSOR and MOVE_CURSOR have no response body and
            // nothing to act on. Only the device thread touches this queue.
            try context.drain(queue: index) { _, _ in .used(length: 0) }
        default: break
        }
    }

    private func drainControl(_ context: VirtioQueueContext) throws(VirtqueueError) {
        guard context.queues.indices.contains(Self.controlQueue), context.queues[Self.controlQueue] != nil else { return }
        let generation = portLock.withLock { () -> UInt64 in
            if port.queues !== context { port.queues = context }
            return port.generation
        }
        // Completion threads return chains of this queue too: the drain shares their lock.
        try context.drain(queue: Self.controlQueue, ringLock: portLock) { chain, queue in
            serve(chain, queue: queue, generation: generation, features: context.negotiatedFeatures)
            // Every answer goes back through `publish` (at once, after the earlier fences of
            // its timeline, or from a context's thread), which returns the chain itself.
            return .kept
        }
    }

    private func serve(_ chain: DescriptorChain, queue: Virtqueue, generation: UInt64, features: UInt64) {
        let bytes = queue.gather(chain, count: Int(min(chain.readableLength, UInt64(Self.maxRequestBytes))))
        var reader = WireReader(bytes)
        guard let header = try? ControlHeader(&reader) else {
            // Not even a header: nothing to echo, answer a bare UNSPEC (the chain must still
            // go back to the driver, or its descriptors leak).
            let header = ControlHeader(type: 0)
            publish(Request(chain: chain, header: header, generation: generation, fence: nil, timeline: .global,
                            features: features), encode(header.response(.errorUnspecified)), notify: false)
            return
        }
        let timeline: FenceTimelines.Timeline = header.hasRingIndex
            ? .ring(context: header.contextID, index: header.ringIndex) : .global
        var fence: FenceTimelines.PendingFence?
        if header.fenced {
            // Its place in line is taken now, in queue order, whatever finishes first.
            fence = portLock.withLock { port.timelines.enqueue(chain, on: timeline) }
        }
        let request = Request(chain: chain, header: header, generation: generation, fence: fence, timeline: timeline,
                              features: features)
        let disposition: Disposition
        do throws(VirtioGPUProtocol.Response) {
            disposition = try handle(request, bytes)
        } catch {
            disposition = .respond(encode(header.response(error)))
        }
        // The drain decides the interrupt for what it answered at once.
        if case let .respond(response) = disposition { publish(request, response, notify: false) }
    }

    // MARK: Responses

    /// Writes a response into the request's chain and returns the chain to the driver; for a
    /// fenced request, once every earlier fence of its timeline has been answered. `notify`:
    /// interrupt the driver now (the device thread batches its interrupts instead). A response
    /// to an activation that was reset since is dropped.
    func publish(_ request: Request, _ response: [UInt8], notify: Bool = true) {
        portLock.withLock {
            guard port.generation == request.generation, let context = port.queues,
                  let queue = context.queues[Self.controlQueue] else { return }
            if let fence = request.fence {
                for released in port.timelines.answer(fence, with: response, on: request.timeline) {
                    write(released.response, into: released.chain, queue)
                }
            } else {
                write(response, into: request.chain, queue)
            }
            if notify { context.completed(queue: Self.controlQueue) }
        }
    }

    /// Call with `portLock` held.
    private func write(_ response: [UInt8], into chain: DescriptorChain, _ queue: Virtqueue) {
        var bytes = response
        let room = chain.writableLength
        if UInt64(bytes.count) > room {
            // The driver left too little room: answer UNSPEC in the header if that fits.
            guard room >= UInt64(VirtioGPUProtocol.headerSize) else {
                queue.pushUsed(head: chain.head, length: 0)
                return
            }
            bytes = Array(bytes.prefix(VirtioGPUProtocol.headerSize))
            let code = VirtioGPUProtocol.Response.errorUnspecified.rawValue
            for i in 0 ..< 4 { bytes[i] = UInt8(truncatingIfNeeded: code >> (8 * UInt32(i))) }
        }
        let written = queue.scatter(bytes, into: chain)
        queue.pushUsed(head: chain.head, length: UInt32(written))
    }

    func encode(_ header: ControlHeader, _ body: [UInt8] = []) -> [UInt8] {
        var writer = WireWriter(capacity: VirtioGPUProtocol.headerSize + body.count)
        header.encode(into: &writer)
        writer.append(body)
        return writer.bytes
    }

    // MARK: Commands

    private func handle(_ request: Request, _ bytes: [UInt8]) throws(VirtioGPUProtocol.Response) -> Disposition {
        let header = request.header
        // Only FENCE and INFO_RING_IDX exist; a ring index names one of a context's 64 rings.
        guard header.flags & ~(VirtioGPUProtocol.flagFence | VirtioGPUProtocol.flagInfoRingIndex) == 0 else {
            throw .errorInvalidParameter
        }
        // Rings exist only with CONTEXT_INIT (virtio 1.2 §5.7.6.7).
        if header.hasRingIndex
            && (request.features & VirtioGPUProtocol.Feature.contextInit == 0 || header.ringIndex >= Self.maxRings) {
            throw .errorInvalidParameter
        }
        guard let command = VirtioGPUProtocol.Command(rawValue: header.type) else { throw .errorUnspecified }
        func body(_ size: Int) throws(VirtioGPUProtocol.Response) -> WireReader {
            // A request shorter than its structure is refused as QEMU does (UNSPEC).
            guard bytes.count >= size else { throw .errorUnspecified }
            return WireReader(bytes, at: VirtioGPUProtocol.headerSize)
        }
        let ok = encode(header.response(.okNoData))
        switch command {
        case .getDisplayInfo:
            _ = try body(VirtioGPUProtocol.headerSize)
            // Sixteen pmodes, none enabled: there is no scanout.
            return .respond(encode(header.response(.okDisplayInfo),
                                   [UInt8](repeating: 0, count: VirtioGPUProtocol.maxScanouts * 24)))
        case .getCapsetInfo:
            var r = try body(VirtioGPUProtocol.getCapsetInfoSize)
            let index = try r.field32()
            guard index == 0 else { throw .errorInvalidParameter }
            var info = WireWriter()
            info.u32(Self.computeCapsetID)
            info.u32(Self.computeCapsetVersion)
            info.u32(UInt32(Self.capsetSize))
            info.u32(0)
            return .respond(encode(header.response(.okCapsetInfo), info.bytes))
        case .getCapset:
            var r = try body(VirtioGPUProtocol.getCapsetSize)
            let id = try r.field32()
            let version = try r.field32()
            guard id == Self.computeCapsetID, version <= Self.computeCapsetVersion else { throw .errorInvalidParameter }
            return .respond(encode(header.response(.okCapset), capset(version: version)))
        case .contextCreate:
            // Without CONTEXT_INIT, context_init is padding and every context would be virgl.
            guard request.features & VirtioGPUProtocol.Feature.contextInit != 0 else { throw .errorInvalidParameter }
            try createContext(header, try body(VirtioGPUProtocol.contextCreateSize))
            return .respond(ok)
        case .contextDestroy:
            _ = try body(VirtioGPUProtocol.contextDestroySize)
            return try destroyContext(request)
        case .resourceCreateBlob:
            guard request.features & VirtioGPUProtocol.Feature.resourceBlob != 0 else { throw .errorUnspecified }
            try createBlob(header, try body(VirtioGPUProtocol.resourceCreateBlobSize))
            return .respond(ok)
        case .resourceAttachBacking:
            try attachBacking(try body(VirtioGPUProtocol.attachBackingSize))
            return .respond(ok)
        case .resourceDetachBacking:
            var r = try body(VirtioGPUProtocol.detachBackingSize)
            return try detachBacking(request, resourceID: try r.field32())
        case .resourceUnref:
            var r = try body(VirtioGPUProtocol.resourceUnrefSize)
            return try unref(request, resourceID: try r.field32())
        case .contextAttachResource, .contextDetachResource:
            var r = try body(VirtioGPUProtocol.contextResourceSize)
            let resourceID = try r.field32()
            try attach(resourceID, to: header.contextID, detach: command == .contextDetachResource)
            return .respond(ok)
        case .transferToHost3D, .transferFromHost3D:
            return try transfer(request, try body(VirtioGPUProtocol.transferHost3DSize),
                                toHost: command == .transferToHost3D)
        case .submit3D:
            return try submit(request, bytes)
        case .resourceCreate2D, .setScanout, .resourceFlush, .transferToHost2D, .getEDID, .resourceAssignUUID,
             .setScanoutBlob, .resourceCreate3D, .resourceMapBlob, .resourceUnmapBlob:
            // 2D scanout, EDID, UUID, 3D (virgl) resources and blob mapping are not offered.
            throw .errorUnspecified
        case .updateCursor, .moveCursor:
            throw .errorUnspecified  // cursor commands belong on the cursor queue
        case .mlaasList, .mlaasEnable, .mlaasDisable, .mlaasRequest:
            return .respond(try mlaas(request, command, bytes))
        }
    }
}
