import CVulkan

/// Host-visible, coherent memory the queue copies through for buffers the host cannot map
/// (device-local VRAM on a discrete GPU). It is allocated on first use, grown to the next
/// power of two when a batch needs more, and otherwise reused, so steady-state transfers
/// allocate nothing: a fresh VkDeviceMemory per copy costs far more than the copy itself on a
/// real GPU (the H200 measured 65 MB/s that way).
///
/// Not synchronised: its owner (a submission slot, or the backend's standalone-transfer path
/// under the backend lock) uses it for one transfer at a time and only after the queue is
/// done with the previous one.
final class VulkanStagingBuffer {
    /// The smallest allocation: below it, growing step by step would only add allocations.
    static let minimumBytes = 64 << 10

    private let device: VulkanDevice
    private var buffer: VulkanBuffer?
    /// Allocations made so far, for tests that hold the backend to "no allocation in steady state".
    private(set) var allocationCount = 0

    init(device: VulkanDevice) {
        self.device = device
    }

    /// Bytes currently allocated (0 before first use).
    var capacity: Int { buffer?.byteCount ?? 0 }

    /// Memory for at least `bytes` bytes: the mapped address and the VkBuffer to copy with.
    /// Replaces a smaller allocation (its contents are not kept).
    func reserve(_ bytes: Int) throws(GPUError) -> (handle: VkBuffer, mapped: UnsafeMutableRawPointer) {
        if let buffer, buffer.byteCount >= bytes, let mapped = buffer.mapped {
            return (buffer.handle, mapped)
        }
        guard bytes >= 0, bytes <= Int.max / 2 else {
            throw .invalidBufferSize(requested: bytes, limit: Int.max / 2)
        }
        var size = Self.minimumBytes
        while size < bytes { size *= 2 }
        // Free the old one first: holding both would double the peak.
        buffer = nil
        let fresh = try VulkanBuffer(device: device, byteCount: size, placement: .hostVisible)
        guard let mapped = fresh.mapped else { throw .noSuitableMemoryType(placement: .hostVisible) }
        buffer = fresh
        allocationCount += 1
        return (fresh.handle, mapped)
    }

    /// Frees the memory; the next `reserve` allocates again.
    func release() {
        buffer = nil
    }
}
