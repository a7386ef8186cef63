import CVulkan

/// Everything one batch in flight needs from the device: a command pool with one command
/// buffer, the fence it signals, a two-entry timestamp query pool, a descriptor pool, and the
/// staging memory its host transfers go through. Slots are recycled after their batch
/// retires, so steady-state submission creates no Vulkan objects.
final class VulkanSubmissionSlot {
    let device: VulkanDevice
    let commandPool: VkCommandPool
    let commandBuffer: VkCommandBuffer
    let fence: VkFence
    /// nil when the queue family cannot write timestamps.
    let queryPool: VkQueryPool?
    private var descriptorPool: VkDescriptorPool?
    private var descriptorSetCapacity = 0
    /// Descriptor sets already written, by pipeline layout and the buffers bound: a training
    /// step binds the same few buffer tuples hundreds of times per batch and again in every
    /// batch, so each is allocated and written once and then only bound. Valid while none of
    /// the buffers has been destroyed since (`bufferGeneration`); sets are never updated once
    /// written, so one bound by a batch still in flight is never changed under it.
    private var descriptorCache: [DescriptorKey: VkDescriptorSet] = [:]
    private var cacheGeneration: UInt64 = 0
    private(set) var descriptorCacheHits = 0
    private(set) var descriptorCacheMisses = 0

    struct DescriptorKey: Hashable {
        let layout: VkDescriptorSetLayout
        let bindings: [BufferID]
    }
    /// Uploads and downloads of the slot's batch that cannot be served by memcpy into a
    /// mapped buffer; free for reuse once the batch has retired and its downloads are out.
    let staging: VulkanStagingBuffer
    /// What the command buffer holds when it may be submitted again as it is: set once a
    /// batch's recording is complete, dropped when recording starts again.
    var recording: VulkanRecording?
    /// The submission that last used the slot, for choosing which recording to give up.
    var lastUsed: UInt64 = 0

    init(device: VulkanDevice, timestamps: Bool) throws(GPUError) {
        let dev = device.handle
        var poolInfo = VkCommandPoolCreateInfo()
        poolInfo.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO
        poolInfo.flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT.rawValue
        poolInfo.queueFamilyIndex = device.queueFamily
        var commandPool: VkCommandPool?
        try vkCheck(vkCreateCommandPool(dev, &poolInfo, nil, &commandPool), "vkCreateCommandPool")
        guard let commandPool else {
            throw .vulkan(call: "vkCreateCommandPool", result: VulkanResult(rawValue: VK_ERROR_INITIALIZATION_FAILED.rawValue))
        }

        var allocateInfo = VkCommandBufferAllocateInfo()
        allocateInfo.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO
        allocateInfo.commandPool = commandPool
        allocateInfo.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY
        allocateInfo.commandBufferCount = 1
        var commandBuffer: VkCommandBuffer?
        let allocated = vkAllocateCommandBuffers(dev, &allocateInfo, &commandBuffer)
        guard allocated == VK_SUCCESS, let commandBuffer else {
            vkDestroyCommandPool(dev, commandPool, nil)
            throw .vulkan(call: "vkAllocateCommandBuffers", result: VulkanResult(rawValue: allocated.rawValue))
        }

        var fenceInfo = VkFenceCreateInfo()
        fenceInfo.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
        var fence: VkFence?
        let fenceResult = vkCreateFence(dev, &fenceInfo, nil, &fence)
        guard fenceResult == VK_SUCCESS, let fence else {
            vkDestroyCommandPool(dev, commandPool, nil)
            throw .vulkan(call: "vkCreateFence", result: VulkanResult(rawValue: fenceResult.rawValue))
        }

        var queryPool: VkQueryPool?
        if timestamps {
            var queryInfo = VkQueryPoolCreateInfo()
            queryInfo.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO
            queryInfo.queryType = VK_QUERY_TYPE_TIMESTAMP
            queryInfo.queryCount = 2
            let queryResult = vkCreateQueryPool(dev, &queryInfo, nil, &queryPool)
            guard queryResult == VK_SUCCESS, queryPool != nil else {
                vkDestroyFence(dev, fence, nil)
                vkDestroyCommandPool(dev, commandPool, nil)
                throw .vulkan(call: "vkCreateQueryPool", result: VulkanResult(rawValue: queryResult.rawValue))
            }
        }

        self.device = device
        self.staging = VulkanStagingBuffer(device: device)
        self.commandPool = commandPool
        self.commandBuffer = commandBuffer
        self.fence = fence
        self.queryPool = queryPool
    }

    deinit {
        let dev = device.handle
        if let descriptorPool { vkDestroyDescriptorPool(dev, descriptorPool, nil) }
        if let queryPool { vkDestroyQueryPool(dev, queryPool, nil) }
        vkDestroyFence(dev, fence, nil)
        // Destroying the pool frees its command buffer.
        vkDestroyCommandPool(dev, commandPool, nil)
    }

    /// Readies the slot for a new batch of `dispatches` dispatches and begins recording.
    /// The previous batch on this slot must have retired (its fence waited for).
    /// `bufferGeneration` counts the device's buffer destructions: when it moved, cached
    /// descriptor sets may name a destroyed buffer and are all dropped.
    /// `replayable` recordings may be submitted again (`rearm`); others are one-time.
    func begin(dispatches: Int, bufferGeneration: UInt64 = 0, replayable: Bool = false) throws(GPUError) {
        let dev = device.handle
        recording = nil
        try vkCheck(vkResetFences(dev, 1, [fence]), "vkResetFences")
        try vkCheck(vkResetCommandPool(dev, commandPool, 0), "vkResetCommandPool")
        // Keep the pool (and the cache in it) while it has room for this batch's misses.
        let room = descriptorPool != nil && descriptorCache.count + dispatches <= descriptorSetCapacity
        if !room || bufferGeneration != cacheGeneration {
            descriptorCache.removeAll(keepingCapacity: true)
            cacheGeneration = bufferGeneration
            try prepareDescriptorPool(sets: max(dispatches, 1))
        }
        var beginInfo = VkCommandBufferBeginInfo()
        beginInfo.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        beginInfo.flags = replayable ? 0 : VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT.rawValue
        try vkCheck(vkBeginCommandBuffer(commandBuffer, &beginInfo), "vkBeginCommandBuffer")
    }

    /// Readies the slot to submit its `recording` again: only the fence is reset. The
    /// previous batch on this slot must have retired, so the command buffer is not pending.
    func rearm() throws(GPUError) {
        try vkCheck(vkResetFences(device.handle, 1, [fence]), "vkResetFences")
    }

    /// The descriptor set binding `bindings` (whole buffers, in binding order) for `layout`:
    /// from the cache, or allocated and written now.
    func descriptorSet(layout: VkDescriptorSetLayout, bindings: [BufferID],
                       handle: (BufferID) throws(GPUError) -> VkBuffer) throws(GPUError) -> VkDescriptorSet {
        let key = DescriptorKey(layout: layout, bindings: bindings)
        if let cached = descriptorCache[key] {
            descriptorCacheHits += 1
            return cached
        }
        descriptorCacheMisses += 1
        let set = try allocateDescriptorSet(layout: layout)
        var infos: [VkDescriptorBufferInfo] = []
        infos.reserveCapacity(bindings.count)
        for id in bindings {
            infos.append(VkDescriptorBufferInfo(buffer: try handle(id), offset: 0, range: malv_vk_whole_size()))
        }
        infos.withUnsafeBufferPointer { infoPointer in
            var writes = (0 ..< infoPointer.count).map { index in
                var write = VkWriteDescriptorSet()
                write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
                write.dstSet = set
                write.dstBinding = UInt32(index)
                write.descriptorCount = 1
                write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                write.pBufferInfo = infoPointer.baseAddress.map { $0 + index }
                return write
            }
            vkUpdateDescriptorSets(device.handle, UInt32(writes.count), &writes, 0, nil)
        }
        descriptorCache[key] = set
        return set
    }

    func allocateDescriptorSet(layout: VkDescriptorSetLayout) throws(GPUError) -> VkDescriptorSet {
        guard let descriptorPool else {
            throw .vulkan(call: "vkAllocateDescriptorSets", result: VulkanResult(rawValue: VK_ERROR_OUT_OF_POOL_MEMORY.rawValue))
        }
        var layouts: [VkDescriptorSetLayout?] = [layout]
        var set: VkDescriptorSet?
        let result = layouts.withUnsafeMutableBufferPointer { pointer in
            var info = VkDescriptorSetAllocateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO
            info.descriptorPool = descriptorPool
            info.descriptorSetCount = 1
            info.pSetLayouts = UnsafePointer(pointer.baseAddress)
            return vkAllocateDescriptorSets(device.handle, &info, &set)
        }
        try vkCheck(result, "vkAllocateDescriptorSets")
        guard let set else {
            throw .vulkan(call: "vkAllocateDescriptorSets", result: VulkanResult(rawValue: VK_ERROR_OUT_OF_POOL_MEMORY.rawValue))
        }
        return set
    }

    /// Resets the pool, or replaces it with one of the next power-of-two size when the batch
    /// needs more sets than it holds (batches grow; they rarely shrink for long).
    private func prepareDescriptorPool(sets: Int) throws(GPUError) {
        let dev = device.handle
        if let descriptorPool, sets <= descriptorSetCapacity {
            try vkCheck(vkResetDescriptorPool(dev, descriptorPool, 0), "vkResetDescriptorPool")
            return
        }
        if let descriptorPool {
            vkDestroyDescriptorPool(dev, descriptorPool, nil)
            self.descriptorPool = nil
            descriptorSetCapacity = 0
        }
        var capacity = 16
        while capacity < sets { capacity *= 2 }
        var size = VkDescriptorPoolSize()
        size.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
        size.descriptorCount = UInt32(capacity * ShaderKernel.maxBindingCount)
        var pool: VkDescriptorPool?
        let result = withUnsafePointer(to: &size) { sizePointer in
            var info = VkDescriptorPoolCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
            info.maxSets = UInt32(capacity)
            info.poolSizeCount = 1
            info.pPoolSizes = sizePointer
            return vkCreateDescriptorPool(dev, &info, nil, &pool)
        }
        try vkCheck(result, "vkCreateDescriptorPool")
        descriptorPool = pool
        descriptorSetCapacity = capacity
    }
}
