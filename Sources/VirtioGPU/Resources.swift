import GPUHost
import Hypervisor
import VGPUCore
import Platform

/// One guest memory range backing a resource (struct virtio_gpu_mem_entry), checked to lie
/// inside one guest RAM region when it was attached.
struct BackingEntry: Hashable, Sendable {
    let address: GuestAddress
    let length: UInt64
}

extension [BackingEntry] {
    var totalLength: UInt64 { reduce(0) { $0 + $1.length } }
}

/// A blob resource. Its mutable fields are guarded by the device's state lock.
final class Resource: @unchecked Sendable {
    let id: UInt32
    let blobMemory: VirtioGPUProtocol.BlobMemory
    let size: UInt64
    /// Guest pages: the storage of a GUEST blob, the staging area of a HOST3D one.
    var backing: [BackingEntry]
    /// The context whose scheduler client holds `buffer` (the creating one), or nil for a
    /// GUEST blob created outside any context, which compute commands cannot name.
    var owner: Context?
    /// The GPU memory: the blob itself for HOST3D, the device-side shadow for GUEST.
    var buffer: BufferID?

    init(id: UInt32, blobMemory: VirtioGPUProtocol.BlobMemory, size: UInt64, backing: [BackingEntry]) {
        self.id = id
        self.blobMemory = blobMemory
        self.size = size
        self.backing = backing
    }
}

/// A compute context: one scheduler client, the resources attached to it, and the thread
/// that runs its work in order and writes its completions.
final class Context: @unchecked Sendable {
    let id: UInt32
    let name: String
    let client: ClientID
    let worker: SerialWorker
    /// Waits for batches `worker` handed to the scheduler without waiting itself, and answers
    /// them, so the context's next batch is already queued when one retires.
    let completions: SerialWorker
    /// Guarded by the device's state lock.
    var attached: Set<UInt32> = []
    /// Kernels of submissions queued on `worker` and not yet run (guarded by the state lock).
    var queuedKernels = 0
    /// The streams it submitted lately, decoded and validated (guarded by the state lock).
    var decodedStreams = DecodedStreamCache<VirtioGPU.DecodedSubmission>()
    /// GPU buffers an MLaaS service allocated on this context (`VirtioGPU+MLaaSGPU`), by
    /// handle; guarded by the state lock, charged to the device's memory like resources.
    var scratch: [UInt32: (buffer: BufferID, bytes: Int)] = [:]
    var nextScratch: UInt32 = 1

    init(id: UInt32, name: String, client: ClientID, worker: SerialWorker, completions: SerialWorker) {
        self.id = id
        self.name = name
        self.client = client
        self.worker = worker
        self.completions = completions
    }

    func stopWorkers(wait: Bool) {
        worker.stop(wait: wait)
        completions.stop(wait: wait)
    }
}
