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
///
/// This file holds the device's state, configuration and reset; each job on that state has a
/// file of its own: the control port (queues, command dispatch, responses and fence
/// timelines: `VirtioGPU+ControlPort`, `FenceTimelines`), the resource and context tables
/// (`VirtioGPU+ResourceTable`), transfers (`VirtioGPU+Transfers`) and the submission pipeline
/// (`VirtioGPU+Submissions`).
public final class VirtioGPU: VirtioDeviceBackend, @unchecked Sendable {
    /// Our capset id. 1-9 are taken (Linux uapi 1-6: VIRGL, VIRGL2, GFXSTREAM_VULKAN, VENUS,
    /// CROSS_DOMAIN, DRM; crosvm/rutabaga and gfxstream use the next few), and CTX_CREATE's
    /// context_init carries the id in 8 bits: 0x4d ('M') is far from that sequence and fits.
    public static let computeCapsetID: UInt32 = 0x4d
    /// The newest capset version: 2 adds the MLaaS requests (`VirtioGPU+MLaaS`); a guest that
    /// asks for version 1 gets version 1's capset, byte for byte.
    public static let computeCapsetVersion: UInt32 = 2
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
    let memory: GuestMemory
    /// Guest RAM shared with the GPU, where the backend can copy in and out of it in place:
    /// guest-blob transfers then cost no host copy (`ComputeBackend.shareHostMemory`).
    /// Released in `deinit` after `reset`, so no batch still copies through it.
    private var guestMemoryShares: [HostMemoryShare]
    let logger: Logger

    public let deviceType: UInt16 = VirtioGPUProtocol.deviceType
    public let queueMaximumSizes: [UInt16] = [VirtioGPU.queueSize, VirtioGPU.queueSize]
    public let configurationSize = 16
    /// Display controller, "other", as QEMU's virtio-gpu-pci (only virtio-vga claims
    /// VGA-compatible 0x0300; a compute device drives no display at all).
    public let pciClass: (UInt8, UInt8, UInt8) = (0x03, 0x80, 0x00)
    public let offeredFeatures: UInt64 = VirtioGPUProtocol.Feature.resourceBlob | VirtioGPUProtocol.Feature.contextInit
        | VirtioFeature.version1 | VirtioFeature.indirectDescriptors | VirtioFeature.eventIndex

    // MARK: State

    struct State {
        var resources: [UInt32: Resource] = [:]
        var contexts: [UInt32: Context] = [:]
        /// GPU memory held by all contexts, against `profile.memoryBytes`.
        var memoryInUse = 0
        /// virtio_gpu_config.events_read (no event is ever raised: no display).
        var eventsRead: UInt32 = 0
        var statistics = VGPUStatistics()
        /// Bumped by every change that could make a validated stream invalid (a resource
        /// created or unreferenced, its backing attached or detached, a context's attachments,
        /// a buffer freed): the key of every context's `DecodedStreamCache`.
        var resourceGeneration: UInt64 = 0
    }

    let stateLock = Monitor()
    var state = State()

    /// What the completion side needs: the activated queues and the fence timelines.
    struct Port {
        var queues: VirtioQueueContext?
        /// Bumped at every reset so completions of the last activation are dropped.
        var generation: UInt64 = 0
        var timelines = FenceTimelines()
    }

    /// Guards `port`, and is the control queue's ring lock: the device thread and every
    /// context's completion threads return chains on that one ring.
    let portLock = Monitor()
    var port = Port()
    /// The VM's MLaaS services, as the guest asks for them (`bindMLaaS`); nil: none.
    let mlaasLock = Monitor()
    var mlaasPort: (any MLaaSGuestPort)?

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
        guestMemoryShares = memory.hostMappings.compactMap { scheduler.backend.shareHostMemory($0) }
        self.name = name
        self.owner = owner ?? ClientOwner(vgpu: name)
        self.logger = logger
    }

    /// The vGPU's end (`VGPU.stop`): destroys every context (waiting for its work on the GPU)
    /// and resource.
    public func stop() { reset() }

    /// The scheduler outlives the device: give its clients and their GPU memory back.
    deinit {
        reset()
        guestMemoryShares = []
    }

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
            port.timelines = FenceTimelines()
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

    /// Whether work accepted under `generation` still belongs to the current activation.
    func isCurrent(_ generation: UInt64) -> Bool {
        portLock.withLock { port.generation == generation }
    }
}
