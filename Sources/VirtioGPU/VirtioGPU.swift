import GPUHost
import Hypervisor
import Logging
import VGPUCore
import Platform

/// The para-vGPU: a virtio-gpu device (virtio 1.2 §5.7) without 3D graphics (no VIRGL) whose
/// one context type is ML compute. The guest creates contexts with our capset
/// (`computeCapsetID`), blob resources in guest memory (GUEST) or GPU memory (HOST3D), and
/// sends SUBMIT_3D command streams of GPUHost kernels (docs/vgpu-protocol.md).
///
/// Threads: the transport's device thread serves both queues and answers what can be
/// answered at once; each context has a completion thread (`SerialWorker`) that runs its
/// transfers and submissions in order, waits for the scheduler, and writes the response.
/// The control queue is shared by those threads, so every ring operation on it happens under
/// `port`; fenced responses are released per timeline in the order they were queued, because
/// a Linux driver takes fence N as the retirement of every earlier fence of that timeline.
///
/// Every guest value is checked before use; a bad command gets a VIRTIO_GPU_RESP_ERR_* and
/// changes nothing, and no command of one context can reach another context's memory.
public final class VirtioGPU: VirtioDeviceBackend, @unchecked Sendable {
    /// Our capset id. 1-9 are taken (Linux uapi 1-6: VIRGL, VIRGL2, GFXSTREAM_VULKAN, VENUS,
    /// CROSS_DOMAIN, DRM; crosvm/rutabaga and gfxstream use the next few), and CTX_CREATE's
    /// context_init carries the id in 8 bits: 0x4d ('M') is far from that sequence and fits.
    public static let computeCapsetID: UInt32 = 0x4d
    public static let computeCapsetVersion: UInt32 = 1
    static let capsetSize = 40
    /// QEMU's bound on backing entries per resource (16384 × 4 KiB pages = 64 MiB of
    /// scattered pages; larger blobs use larger entries).
    public static let maxBackingEntries = 16384
    /// Rings (fence timelines) per context, as Linux's VIRTGPU_CONTEXT_PARAM_NUM_RINGS allows.
    public static let maxRings: UInt8 = 64
    static let queueSize: UInt16 = 256
    static let controlQueue = 0
    static let cursorQueue = 1
    /// The most bytes one control request can need: SUBMIT_3D's header and largest stream.
    static let maxRequestBytes = VirtioGPUProtocol.submit3DSize + ComputeStream.maxStreamBytes

    /// Kernels accepted but not yet run, across the device. Every deferred submission holds
    /// its decoded batch in VMM memory until it runs; the queue size bounds how many there
    /// are, this bounds how large they get (16384 kernels ≈ 2.5 MiB). Beyond it a submission
    /// is refused with OUT_OF_MEMORY: the guest should wait for its fences.
    public static let defaultMaxQueuedKernels = 4 * ComputeStream.maxCommands

    public let scheduler: GPUScheduler
    public let profile: VGPUProfile
    let maxQueuedKernels: Int
    public let name: String
    /// Carried by its contexts' scheduler clients, so the daemon finds a vGPU's clients
    /// without parsing their names.
    public let owner: ClientOwner
    private let memory: GuestMemory
    private let logger: Logger

    public let deviceType: UInt16 = VirtioGPUProtocol.deviceType
    public let queueMaximumSizes: [UInt16] = [VirtioGPU.queueSize, VirtioGPU.queueSize]
    public let configurationSize = 16
    /// Display controller, "other", as QEMU's virtio-gpu-pci (only virtio-vga claims
    /// VGA-compatible 0x0300; a compute device drives no display at all).
    public let pciClass: (UInt8, UInt8, UInt8) = (0x03, 0x80, 0x00)
    public let offeredFeatures: UInt64 = VirtioGPUProtocol.Feature.resourceBlob | VirtioGPUProtocol.Feature.contextInit
        | VirtioFeature.version1 | VirtioFeature.indirectDescriptors | VirtioFeature.eventIndex

    // MARK: State

    private struct State {
        var resources: [UInt32: Resource] = [:]
        var contexts: [UInt32: Context] = [:]
        /// GPU memory held by all contexts, against `profile.memoryBytes`.
        var memoryInUse = 0
        /// virtio_gpu_config.events_read (no event is ever raised: no display).
        var eventsRead: UInt32 = 0
        var statistics = VGPUStatistics()
    }

    private let stateLock = Monitor()
    private var state = State()

    /// What the completion side needs: the activated queues and the fence timelines.
    private struct Port {
        var queues: VirtioQueueContext?
        /// Bumped at every reset so completions of the last activation are dropped.
        var generation: UInt64 = 0
        var timelines: [Timeline: [PendingFence]] = [:]
    }

    private enum Timeline: Hashable {
        /// Fenced without INFO_RING_IDX: the device-wide fence timeline.
        case global
        case ring(context: UInt32, index: UInt8)
    }

    private final class PendingFence {
        let chain: DescriptorChain
        var response: [UInt8]?
        init(chain: DescriptorChain) { self.chain = chain }
    }

    private let portLock = Monitor()
    private var port = Port()

    /// One control request in flight.
    private struct Request {
        let chain: DescriptorChain
        let header: ControlHeader
        let generation: UInt64
        let fence: PendingFence?
        let timeline: Timeline
        /// What the driver negotiated: blob and context-init commands need their features.
        let features: UInt64
    }

    private enum Disposition {
        case respond([UInt8])
        /// A context's completion thread will respond.
        case deferred
    }

    public convenience init(scheduler: GPUScheduler, profile: VGPUProfile, memory: GuestMemory, name: String = "vgpu0",
                            owner: ClientOwner? = nil, logger: Logger = Logger(label: "malvvm.vgpu")) {
        self.init(scheduler: scheduler, profile: profile, memory: memory, name: name, owner: owner, logger: logger,
                  maxQueuedKernels: Self.defaultMaxQueuedKernels)
    }

    init(scheduler: GPUScheduler, profile: VGPUProfile, memory: GuestMemory, name: String, owner: ClientOwner? = nil,
         logger: Logger, maxQueuedKernels: Int) {
        self.maxQueuedKernels = maxQueuedKernels
        self.scheduler = scheduler
        self.profile = profile
        self.memory = memory
        self.name = name
        self.owner = owner ?? ClientOwner(vgpu: name)
        self.logger = logger
    }

    /// The vGPU's end (`VGPU.stop`): destroys every context (waiting for its work on the GPU)
    /// and resource.
    public func stop() { reset() }

    /// The scheduler outlives the device: give its clients and their GPU memory back.
    deinit { reset() }

    /// Counters since the device was created (they survive device resets).
    public var statistics: VGPUStatistics {
        stateLock.withLock {
            var statistics = state.statistics
            statistics.contexts = state.contexts.count
            statistics.memoryInUseBytes = state.memoryInUse
            return statistics
        }
    }

    // MARK: Configuration (struct virtio_gpu_config)

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        let events = stateLock.withLock { state.eventsRead }
        var image = WireWriter(capacity: 16)
        image.u32(events)  // events_read
        image.u32(0)  // events_clear
        image.u32(0)  // num_scanouts: a compute device drives no display
        image.u32(1)  // num_capsets: our compute capset
        for i in data.indices { data[i] = offset + i < image.bytes.count ? image.bytes[offset + i] : 0 }
    }

    public func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {
        // Only events_clear (offset 4) is writable: writing 1s clears those events.
        guard offset == 4, data.count == 4 else { return }
        var value: UInt32 = 0
        for (i, byte) in data.enumerated() { value |= UInt32(byte) << (8 * UInt32(i)) }
        stateLock.withLock { state.eventsRead &= ~value }
    }

    // MARK: Reset

    public func reset() {
        let contexts = stateLock.withLock { () -> [Context] in
            defer { state = State() }
            return Array(state.contexts.values)
        }
        portLock.withLock {
            port.generation &+= 1
            port.queues = nil
            port.timelines = [:]
        }
        // The clients go first, so their share is the others' at once: queued batches are
        // cancelled (a job waiting on one wakes), those on the GPU are waited out, buffers are
        // zeroed and freed. Jobs still queued see the new generation and skip their work; a
        // job past that check finds its client gone and fails.
        for context in contexts.sorted(by: { $0.id < $1.id }) {
            do throws(SchedulerError) { try scheduler.removeClient(context.client) } catch .unknownClient {
                // CTX_DESTROY's job got there first.
            } catch {
                logger.warning("vGPU reset: removing \(context.client) failed: \(error)", metadata: ["device": "\(name)"])
            }
            context.stopWorkers(wait: true)
        }
    }

    private func isCurrent(_ generation: UInt64) -> Bool {
        portLock.withLock { port.generation == generation }
    }

    // MARK: Queues

    public func process(queue index: Int, context: VirtioQueueContext) throws(VirtqueueError) {
        switch index {
        case Self.controlQueue: try processControl(context)
        case Self.cursorQueue:
            // No scanout, so no cursor: UPDATE_CURSOR and MOVE_CURSOR have no response body and
            // nothing to act on. Only the device thread touches this queue.
            try context.drain(queue: index) { _, _ in 0 }
        default: break
        }
    }

    private func processControl(_ context: VirtioQueueContext) throws(VirtqueueError) {
        guard context.queues.indices.contains(Self.controlQueue), let queue = context.queues[Self.controlQueue] else { return }
        let generation = portLock.withLock { () -> UInt64 in
            if port.queues !== context { port.queues = context }
            return port.generation
        }
        var served = false
        while true {
            let chain = try portLock.withLock { () throws(VirtqueueError) -> DescriptorChain? in
                if let chain = try queue.popChain() { return chain }
                // Re-arm notifications; if the driver added work meanwhile, go round again.
                return queue.enableNotification() ? try queue.popChain() : nil
            }
            guard let chain else { break }
            serve(chain, queue: queue, generation: generation, features: context.negotiatedFeatures)
            served = true
        }
        // One interrupt for what this pass answered (completion threads raise their own).
        if served {
            portLock.withLock {
                if port.generation == generation, port.queues === context { context.completed(queue: Self.controlQueue) }
            }
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
        let timeline: Timeline = header.hasRingIndex ? .ring(context: header.contextID, index: header.ringIndex) : .global
        var fence: PendingFence?
        if header.fenced {
            // Registered now, in queue order, whatever finishes first.
            let pending = PendingFence(chain: chain)
            portLock.withLock { port.timelines[timeline, default: []].append(pending) }
            fence = pending
        }
        let request = Request(chain: chain, header: header, generation: generation, fence: fence, timeline: timeline,
                              features: features)
        let disposition: Disposition
        do throws(VirtioGPUProtocol.Response) {
            disposition = try handle(request, bytes)
        } catch {
            disposition = .respond(encode(header.response(error)))
        }
        if case let .respond(response) = disposition { publish(request, response, notify: false) }
    }

    /// Writes a response into the request's chain and returns the chain to the driver; for a
    /// fenced request, once every earlier fence of its timeline has been answered. `notify`:
    /// interrupt the driver now (the device thread batches its interrupts instead).
    private func publish(_ request: Request, _ response: [UInt8], notify: Bool = true) {
        portLock.withLock {
            guard port.generation == request.generation, let context = port.queues,
                  let queue = context.queues[Self.controlQueue] else { return }
            if let fence = request.fence {
                fence.response = response
                guard var pending = port.timelines[request.timeline] else { return }
                var released = 0
                while released < pending.count, let ready = pending[released].response {
                    write(ready, into: pending[released].chain, queue)
                    released += 1
                }
                pending.removeFirst(released)
                port.timelines[request.timeline] = pending.isEmpty ? nil : pending
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

    private func encode(_ header: ControlHeader, _ body: [UInt8] = []) -> [UInt8] {
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
            return .respond(encode(header.response(.okCapset), capset()))
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
        }
    }


    /// Our capset (docs/vgpu-protocol.md, "Capset"): what a guest library needs to know to
    /// build command streams this device accepts.
    private func capset() -> [UInt8] {
        var w = WireWriter(capacity: Self.capsetSize)
        w.u32(Self.computeCapsetVersion)
        w.u32(UInt32(ComputeStream.version))
        var opcodes: UInt32 = 0
        for opcode in ComputeStream.Opcode.allCases { opcodes |= 1 << UInt32(opcode.rawValue) }
        w.u32(opcodes)
        w.u32(UInt32(ComputeStream.maxCommands))
        w.u32(UInt32(ComputeStream.maxStreamBytes))
        w.u32(UInt32(clamping: profile.maxContexts))
        w.u64(UInt64(profile.memoryBytes))
        w.u32(scheduler.backend.kind == .vulkan ? 1 : 0)
        w.u32(0)
        return w.bytes
    }

    // MARK: Contexts

    private func createContext(_ header: ControlHeader, _ body: WireReader) throws(VirtioGPUProtocol.Response) {
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

    private func destroyContext(_ request: Request) throws(VirtioGPUProtocol.Response) -> Disposition {
        let id = request.header.contextID
        let context = try stateLock.withLock { () throws(VirtioGPUProtocol.Response) -> Context in
            guard let context = state.contexts.removeValue(forKey: id) else { throw .errorInvalidContextID }
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

    private func attach(_ resourceID: UInt32, to contextID: UInt32, detach: Bool) throws(VirtioGPUProtocol.Response) {
        try stateLock.withLock { () throws(VirtioGPUProtocol.Response) in
            guard let context = state.contexts[contextID] else { throw .errorInvalidContextID }
            guard state.resources[resourceID] != nil else { throw .errorInvalidResourceID }
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

    private func createBlob(_ header: ControlHeader, _ body: WireReader) throws(VirtioGPUProtocol.Response) {
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
        stateLock.withLock { state.resources[id] = resource }
    }

    private func attachBacking(_ body: WireReader) throws(VirtioGPUProtocol.Response) {
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
        }
    }

    private func detachBacking(_ request: Request, resourceID: UInt32) throws(VirtioGPUProtocol.Response) -> Disposition {
        let owner = try stateLock.withLock { () throws(VirtioGPUProtocol.Response) -> Context? in
            guard let resource = state.resources[resourceID] else { throw .errorInvalidResourceID }
            guard !resource.backing.isEmpty else { throw .errorUnspecified }
            resource.backing = []
            return resource.owner
        }
        // Work already queued holds the old pages and may still write them: answer after it,
        // so the guest does not reuse the pages while we do.
        return deferAfter(owner, request)
    }

    private func unref(_ request: Request, resourceID: UInt32) throws(VirtioGPUProtocol.Response) -> Disposition {
        let resource = try stateLock.withLock { () throws(VirtioGPUProtocol.Response) -> Resource in
            guard let resource = state.resources.removeValue(forKey: resourceID) else { throw .errorInvalidResourceID }
            for context in state.contexts.values { context.attached.remove(resourceID) }
            return resource
        }
        guard let owner = resource.owner else { return .respond(encode(request.header.response(.okNoData))) }
        // Free the GPU memory after the owner's queued work (which may use it), then answer:
        // Linux frees the backing pages when this response arrives.
        let enqueued = owner.worker.enqueue { [self] in
            let buffer = stateLock.withLock { () -> BufferID? in
                defer { resource.buffer = nil; resource.owner = nil }
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
    private func ownResource(_ id: UInt32, of context: Context) -> Resource? {
        guard context.attached.contains(id), let resource = state.resources[id], resource.owner === context,
              resource.buffer != nil else { return nil }
        return resource
    }

    // MARK: Transfers

    private func transfer(_ request: Request, _ body: WireReader, toHost: Bool) throws(VirtioGPUProtocol.Response) -> Disposition {
        var r = body
        // struct virtio_gpu_box: x y z w h d; then offset, resource_id, level, stride, layer_stride.
        var box: [UInt32] = []
        for _ in 0 ..< 6 { box.append(try r.field32()) }
        let offset = try r.field64()
        let resourceID = try r.field32()
        let level = try r.field32()
        // A blob is a buffer: bytes [x, x + w) of the resource move to or from bytes
        // [offset, offset + w) of its guest backing, as virglrenderer does for buffers. Rows,
        // layers and mip levels do not exist here.
        let (x, y, z, w, h, d) = (box[0], box[1], box[2], box[3], box[4], box[5])
        guard y == 0, z == 0, h == 1, d == 1, level == 0, w > 0 else { throw .errorInvalidParameter }
        let (context, resource, backing, buffer) = try stateLock.withLock {
            () throws(VirtioGPUProtocol.Response) -> (Context, Resource, [BackingEntry], BufferID) in
            guard let context = state.contexts[request.header.contextID] else { throw .errorInvalidContextID }
            guard let resource = ownResource(resourceID, of: context), let buffer = resource.buffer else {
                throw .errorInvalidResourceID
            }
            return (context, resource, resource.backing, buffer)
        }
        guard UInt64(x) + UInt64(w) <= resource.size else { throw .errorInvalidParameter }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(w))
        guard !overflow, end <= backing.totalLength else { throw .errorInvalidParameter }
        let generation = request.generation
        let enqueued = context.worker.enqueue { [self] in
            guard isCurrent(generation) else { return }
            let ok = move(backing, backingOffset: offset, hostOffset: UInt64(x), count: UInt64(w), buffer: buffer,
                          client: context.client, toHost: toHost)
            publish(request, encode(request.header.response(ok ? .okNoData : .errorUnspecified)))
        }
        guard enqueued else { throw .errorInvalidContextID }
        return .deferred
    }

    /// Copies `count` bytes between a resource's guest backing (from `backingOffset`) and its
    /// GPU buffer (from `hostOffset`), straight from or into guest RAM, entry by entry. The
    /// scheduler orders each copy after the context's earlier batches.
    private func move(_ backing: [BackingEntry], backingOffset: UInt64, hostOffset: UInt64, count: UInt64,
                      buffer: BufferID, client: ClientID, toHost: Bool) -> Bool {
        do {
            for piece in try guestPieces(backing, backingOffset: backingOffset, hostOffset: hostOffset, count: count) {
                if toHost {
                    try scheduler.write(buffer, for: client, byteOffset: piece.hostOffset, from: UnsafeRawBufferPointer(piece.guest))
                } else {
                    try scheduler.read(buffer, for: client, byteOffset: piece.hostOffset, into: piece.guest)
                }
            }
        } catch {
            logger.warning("vGPU transfer failed: \(error)", metadata: ["device": "\(name)"])
            return false
        }
        return true
    }

    /// The guest RAM behind bytes `[backingOffset, backingOffset + count)` of a resource's
    /// backing, one piece per backing entry it crosses, each with the offset in the resource's
    /// GPU buffer it corresponds to (`hostOffset` plus its distance from `backingOffset`).
    /// Callers have checked `backingOffset + count` against the backing's length and
    /// `hostOffset + count` against the resource's size; every entry is checked against guest
    /// RAM here.
    private func guestPieces(_ backing: [BackingEntry], backingOffset: UInt64, hostOffset: UInt64,
                             count: UInt64) throws(GuestMemoryError) -> [(hostOffset: Int, guest: UnsafeMutableRawBufferPointer)] {
        var pieces: [(hostOffset: Int, guest: UnsafeMutableRawBufferPointer)] = []
        var entryStart: UInt64 = 0
        let wantedEnd = backingOffset + count
        for entry in backing {
            let entryEnd = entryStart + entry.length
            defer { entryStart = entryEnd }
            let lower = max(backingOffset, entryStart)
            let upper = min(wantedEnd, entryEnd)
            guard lower < upper else { continue }
            let guest = try memory.slice(at: GuestAddress(entry.address.raw + (lower - entryStart)), length: upper - lower)
            pieces.append((Int(hostOffset + (lower - backingOffset)), guest))
        }
        return pieces
    }

    // MARK: Submissions

    /// One GUEST blob a batch touches: the byte ranges to upload before it and download after.
    private struct GuestSync {
        let backing: [BackingEntry]
        let buffer: BufferID
        var uploads: [Range<UInt64>] = []
        var downloads: [Range<UInt64>] = []
    }

    private func submit(_ request: Request, _ bytes: [UInt8]) throws(VirtioGPUProtocol.Response) -> Disposition {
        let start = monotonicNanoseconds()
        do throws(VirtioGPUProtocol.Response) {
            return try accept(request, bytes, receivedAt: start)
        } catch {
            stateLock.withLock { state.statistics.refusedSubmissions += 1 }
            throw error
        }
    }

    private func accept(_ request: Request, _ bytes: [UInt8], receivedAt start: UInt64) throws(VirtioGPUProtocol.Response) -> Disposition {
        guard bytes.count >= VirtioGPUProtocol.submit3DSize else { throw .errorUnspecified }
        var r = WireReader(bytes, at: VirtioGPUProtocol.headerSize)
        let size = try r.field32()
        // Linux's padding, crosvm's num_in_fences: in-fences are not supported (a context's
        // work already runs in order).
        let inFences = try r.field32()
        guard inFences == 0, size > 0, Int(size) <= ComputeStream.maxStreamBytes,
              Int(size) <= bytes.count - VirtioGPUProtocol.submit3DSize else {
            throw .errorInvalidParameter
        }
        let stream = Array(bytes[VirtioGPUProtocol.submit3DSize ..< VirtioGPUProtocol.submit3DSize + Int(size)])

        // Resolve every reference against a consistent view of the context's resources.
        var syncs: [BufferID: GuestSync] = [:]
        var capacities: [BufferID: Int] = [:]
        let resolved = stateLock.withLock { () -> Result<(Context, CommandBatch), ComputeStreamError>? in
            guard let context = state.contexts[request.header.contextID] else { return nil }
            do throws(ComputeStreamError) {
                let batch = try ComputeStream.decode(stream) { (ref, element, command, operand) throws(ComputeStreamError) in
                    guard ref.resourceID != 0, let resource = ownResource(ref.resourceID, of: context),
                          let buffer = resource.buffer else {
                        throw .invalidResource(command: command, operand: operand, resourceID: ref.resourceID)
                    }
                    let elementSize = UInt64(element.byteSize)
                    guard ref.length > 0 else { throw .badReference(command: command, operand: operand, reason: "is empty") }
                    guard ref.offset % elementSize == 0, UInt64(ref.length) % elementSize == 0 else {
                        throw .badReference(command: command, operand: operand,
                                            reason: "is not aligned to its \(elementSize)-byte elements")
                    }
                    let (end, overflow) = ref.offset.addingReportingOverflow(UInt64(ref.length))
                    guard !overflow, end <= resource.size else {
                        throw .badReference(command: command, operand: operand,
                                            reason: "[\(ref.offset), +\(ref.length)) lies outside resource \(ref.resourceID) of \(resource.size) bytes")
                    }
                    capacities[buffer] = Int(resource.size)
                    if resource.blobMemory == .guest, syncs[buffer] == nil {
                        syncs[buffer] = GuestSync(backing: resource.backing, buffer: buffer)
                    }
                    return BufferRange(buffer, offset: Int(ref.offset / elementSize), count: Int(UInt64(ref.length) / elementSize))
                }
                return .success((context, batch))
            } catch {
                return .failure(error)
            }
        }
        guard let resolved else { throw .errorInvalidContextID }
        let context: Context
        let batch: CommandBatch
        switch resolved {
        case let .failure(error):
            logger.debug("vGPU submission refused: \(error)", metadata: ["device": "\(name)"])
            throw error.response
        case let .success(value): (context, batch) = value
        }
        // Shapes, bounds and aliasing: GPUHost's own validation, before anything runs.
        let operands: [[KernelOperand]]
        do throws(GPUError) { operands = try batch.validate(capacity: { capacities[$0] }) } catch {
            logger.debug("vGPU submission refused: \(error)", metadata: ["device": "\(name)"])
            throw .errorInvalidParameter
        }
        for operand in operands.joined() where syncs[operand.range.buffer] != nil {
            let bytes = UInt64(operand.byteRange.lowerBound) ..< UInt64(operand.byteRange.upperBound)
            if operand.access.reads { syncs[operand.range.buffer]!.uploads.append(bytes) }
            if operand.access.writes { syncs[operand.range.buffer]!.downloads.append(bytes) }
        }
        for (buffer, sync) in syncs {
            // A GUEST blob whose backing was detached cannot be computed on.
            let needed = (sync.uploads + sync.downloads).map(\.upperBound).max() ?? 0
            guard needed <= sync.backing.totalLength else {
                _ = buffer
                throw .errorInvalidParameter
            }
        }
        let plan = Array(syncs.values)
        let kernels = batch.kernels.count
        try stateLock.withLock { () throws(VirtioGPUProtocol.Response) in
            let queued = state.contexts.values.reduce(0) { $0 + $1.queuedKernels }
            guard queued + kernels <= maxQueuedKernels else { throw .errorOutOfMemory }
            context.queuedKernels += kernels
            state.statistics.decodeNanoseconds += monotonicNanoseconds() - start
        }
        let generation = request.generation
        let finish = { [self] (outcome: VirtioGPUProtocol.Response?, cost: VGPUStatistics) in
            var cost = cost
            // Released before the response, so a guest that waits for it can submit again.
            stateLock.withLock { context.queuedKernels -= kernels }
            if let outcome { publish(request, encode(request.header.response(outcome))) }
            cost.submissions = 1
            cost.commands = UInt64(kernels)
            cost.streamBytes = UInt64(size)
            cost.endToEndNanoseconds = monotonicNanoseconds() - start
            stateLock.withLock { state.statistics.add(cost) }
        }
        let enqueued = context.worker.enqueue { [self] in
            guard isCurrent(generation) else { return finish(nil, VGPUStatistics()) }
            guard plan.isEmpty else {
                var cost = VGPUStatistics()
                return finish(run(batch, plan, for: context, cost: &cost), cost)
            }
            // No guest pages to copy in or out: queue the batch and let the completion thread
            // wait for it, so the context stays backlogged in the scheduler (its share is used)
            // while the guest's next submission is decoded.
            let ticket: BatchTicket
            do { ticket = try scheduler.submit(batch, for: context.client) } catch {
                logger.warning("vGPU submission failed: \(error)", metadata: ["device": "\(name)", "context": "\(context.name)"])
                return finish(.errorUnspecified, VGPUStatistics())
            }
            context.completions.enqueue { [self] in
                var cost = VGPUStatistics()
                finish(complete(ticket.wait(), for: context, cost: &cost), cost)
            }
        }
        guard enqueued else {
            stateLock.withLock { context.queuedKernels -= kernels }
            throw .errorInvalidContextID
        }
        return .deferred
    }

    /// On the context's thread: the batch with its guest pages, the ranges its kernels read
    /// as uploads and the ranges they write as downloads, through the scheduler as one
    /// submission, waited for once. The ranges are the guest RAM itself (no copy here), as
    /// `UnsafeHostBytes` allows: the device holds the memory, and lets go of it only after
    /// `reset` has removed every context's scheduler client (queued batches cancelled, those on
    /// the GPU waited for); the guest hears nothing before the ticket is done. The scheduler
    /// runs the batch after the context's earlier batches and has its downloads in guest RAM
    /// before the ticket completes, so the guest's next submission sees them.
    ///
    /// `cost.uploadNanoseconds`/`downloadNanoseconds` are the backend's host copies (into
    /// staging or mapped buffers at submit, out of them at wait); the device's copies between
    /// staging and GPU memory are GPU work and lie in `gpuNanoseconds`.
    private func run(_ batch: CommandBatch, _ plan: [GuestSync], for context: Context,
                     cost: inout VGPUStatistics) -> VirtioGPUProtocol.Response {
        var batch = batch
        do throws(GuestMemoryError) {
            for sync in plan {
                for range in merged(sync.uploads) {
                    for piece in try guestPieces(sync.backing, backingOffset: range.lowerBound, hostOffset: range.lowerBound,
                                                 count: UInt64(range.count)) {
                        batch.uploads.append(HostTransfer(buffer: sync.buffer, byteOffset: piece.hostOffset, host: piece.guest))
                    }
                    cost.uploadBytes += UInt64(range.count)
                }
                for range in merged(sync.downloads) {
                    for piece in try guestPieces(sync.backing, backingOffset: range.lowerBound, hostOffset: range.lowerBound,
                                                 count: UInt64(range.count)) {
                        batch.downloads.append(HostTransfer(buffer: sync.buffer, byteOffset: piece.hostOffset, host: piece.guest))
                    }
                    cost.downloadBytes += UInt64(range.count)
                }
            }
        } catch {
            logger.warning("vGPU submission's guest backing is not guest RAM: \(error)",
                           metadata: ["device": "\(name)", "context": "\(context.name)"])
            return .errorUnspecified
        }
        let outcome: Result<ScheduledCompletion, SchedulerError>
        do { outcome = try scheduler.submit(batch, for: context.client).wait() } catch { outcome = .failure(error) }
        return complete(outcome, for: context, cost: &cost)
    }

    /// A batch's outcome as the guest hears it, its GPU, queueing and host-copy times in `cost`.
    private func complete(_ outcome: Result<ScheduledCompletion, SchedulerError>, for context: Context,
                          cost: inout VGPUStatistics) -> VirtioGPUProtocol.Response {
        switch outcome {
        case let .failure(error):
            logger.warning("vGPU submission failed: \(error)", metadata: ["device": "\(name)", "context": "\(context.name)"])
            return .errorUnspecified
        case let .success(completion):
            cost.gpuNanoseconds = completion.chargedNanoseconds
            cost.queueingNanoseconds = completion.queueingNanoseconds
            cost.uploadNanoseconds = completion.batch.uploadNanoseconds
            cost.downloadNanoseconds = completion.batch.downloadNanoseconds
            return .okNoData
        }
    }

    /// Sorted, with overlapping and touching ranges joined.
    private func merged(_ ranges: [Range<UInt64>]) -> [Range<UInt64>] {
        var out: [Range<UInt64>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, range.lowerBound <= last.upperBound {
                out[out.count - 1] = last.lowerBound ..< max(last.upperBound, range.upperBound)
            } else {
                out.append(range)
            }
        }
        return out
    }
}
