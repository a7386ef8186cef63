import CVulkan

/// Owns a VkBuffer and its dedicated VkDeviceMemory. One allocation per buffer keeps
/// ownership obvious; a sub-allocator is an optimisation for later.
final class VulkanBuffer {
    let device: VulkanDevice
    let handle: VkBuffer
    let memory: VkDeviceMemory
    /// The size the client asked for; the allocation may be larger.
    let byteCount: Int
    let placement: MemoryPlacement
    /// Persistent mapping when the memory is host-visible and coherent (always for
    /// `hostVisible`; also for `deviceLocal` on unified-memory devices such as lavapipe),
    /// so host access needs no staging copy.
    let mapped: UnsafeMutableRawPointer?

    init(device: VulkanDevice, byteCount: Int, placement: MemoryPlacement, extraUsage: UInt32 = 0) throws(GPUError) {
        // Rounded to whole 32-bit words: shaders read uint8 operands as words, and the last
        // word read must stay inside the buffer.
        let allocationBytes = (byteCount + 3) & ~3
        var info = VkBufferCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
        info.size = VkDeviceSize(allocationBytes)
        info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT.rawValue | VK_BUFFER_USAGE_TRANSFER_SRC_BIT.rawValue
            | VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue | extraUsage
        info.sharingMode = VK_SHARING_MODE_EXCLUSIVE
        var buffer: VkBuffer?
        try vkCheck(vkCreateBuffer(device.handle, &info, nil, &buffer), "vkCreateBuffer")
        guard let buffer else {
            throw .vulkan(call: "vkCreateBuffer", result: VulkanResult(rawValue: VK_ERROR_INITIALIZATION_FAILED.rawValue))
        }

        var requirements = VkMemoryRequirements()
        vkGetBufferMemoryRequirements(device.handle, buffer, &requirements)
        guard let typeIndex = device.memoryTypeIndex(allowedBits: requirements.memoryTypeBits, placement: placement) else {
            vkDestroyBuffer(device.handle, buffer, nil)
            throw .noSuitableMemoryType(placement: placement)
        }
        var allocation = VkMemoryAllocateInfo()
        allocation.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
        allocation.allocationSize = requirements.size
        allocation.memoryTypeIndex = typeIndex
        var memory: VkDeviceMemory?
        let allocated = vkAllocateMemory(device.handle, &allocation, nil, &memory)
        guard allocated == VK_SUCCESS, let memory else {
            vkDestroyBuffer(device.handle, buffer, nil)
            throw .vulkan(call: "vkAllocateMemory", result: VulkanResult(rawValue: allocated.rawValue))
        }
        let bound = vkBindBufferMemory(device.handle, buffer, memory, 0)
        guard bound == VK_SUCCESS else {
            vkFreeMemory(device.handle, memory, nil)
            vkDestroyBuffer(device.handle, buffer, nil)
            throw .vulkan(call: "vkBindBufferMemory", result: VulkanResult(rawValue: bound.rawValue))
        }

        var pointer: UnsafeMutableRawPointer?
        if device.isHostCoherent(memoryType: typeIndex) {
            let mappedResult = vkMapMemory(device.handle, memory, 0, requirements.size, 0, &pointer)
            guard mappedResult == VK_SUCCESS, pointer != nil else {
                vkFreeMemory(device.handle, memory, nil)
                vkDestroyBuffer(device.handle, buffer, nil)
                throw .vulkan(call: "vkMapMemory", result: VulkanResult(rawValue: mappedResult.rawValue))
            }
        }

        self.device = device
        self.handle = buffer
        self.memory = memory
        self.byteCount = byteCount
        self.placement = placement
        self.mapped = pointer
    }

    deinit {
        // Freeing the memory unmaps it.
        vkDestroyBuffer(device.handle, handle, nil)
        vkFreeMemory(device.handle, memory, nil)
    }
}
