import CVulkan

/// A batch's command buffer as its slot recorded it, kept so that the same validated kernels
/// with the same transfer layout are submitted again without being lowered and recorded again.
///
/// Why: a training step resubmits one batch of hundreds of dispatches every step (the
/// para-vGPU serves it from its decode cache), and on a real GPU's driver recording them is
/// milliseconds of host time per step (the H200 run of 2026-12-04: about 3 ms of 5.8 ms per
/// submission that no other stage accounted for). Vulkan lets a command buffer that is not
/// pending be submitted again as long as nothing it references has changed, which is exactly
/// what the key pins down.
struct VulkanRecording {
    /// Everything the recorded commands depend on besides objects that live as long as the
    /// backend (pipelines, the slot's query and descriptor pools while the recording stands).
    struct Key: Equatable {
        /// The kernels, hence the dispatches, bindings, push constants and barriers.
        let kernels: KernelListIdentity
        /// Lowering picks an sgemm shader by this when set (tests and gpu-bench force one).
        let sgemmVariant: SGEMMVariant?
        /// Buffers destroyed so far: while it stands, every id names the buffer it named when
        /// recorded, so the descriptor sets and copy regions still hold valid handles.
        let bufferGeneration: UInt64
        /// Where each staged transfer sits in the buffer and in staging. The bytes copied come
        /// from the host at each submission; the regions are recorded.
        let stagedUploads: [CopyShape]
        let stagedDownloads: [CopyShape]
        /// Where each transfer the device copies straight out of or into imported host memory
        /// sits in the buffer and in the import.
        let importedUploads: [ImportedCopyShape]
        let importedDownloads: [ImportedCopyShape]

        static func == (lhs: Key, rhs: Key) -> Bool {
            lhs.kernels === rhs.kernels && lhs.sgemmVariant == rhs.sgemmVariant && lhs.bufferGeneration == rhs.bufferGeneration
                && lhs.stagedUploads == rhs.stagedUploads && lhs.stagedDownloads == rhs.stagedDownloads
                && lhs.importedUploads == rhs.importedUploads && lhs.importedDownloads == rhs.importedDownloads
        }
    }

    /// One staged copy's region, without the host bytes it carries.
    struct CopyShape: Equatable {
        let buffer: BufferID
        let bufferOffset: Int
        let stagingOffset: Int
        let count: Int
    }

    /// One device copy's region between a buffer and imported host memory
    /// (`VulkanImportedHostMemory.serial` names the import).
    struct ImportedCopyShape: Equatable {
        let buffer: BufferID
        let bufferOffset: Int
        let importSerial: UInt64
        let importOffset: Int
        let count: Int
    }

    let key: Key
    /// The staging buffer the copy regions name; a slot whose staging was reallocated since
    /// records again.
    let staging: VkBuffer?
    let dispatchCount: Int
    let barrierCount: Int
    /// The buffers the dispatches bind, kept alive by every batch that runs the recording.
    let buffers: [VulkanBuffer]
    /// The host memory its copy regions name, kept alive likewise; a recording whose import
    /// has been unshared is dropped (`VulkanBackend.unshare`, `recycle`).
    let imports: [VulkanImportedHostMemory]
}
