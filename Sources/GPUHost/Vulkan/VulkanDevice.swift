import CVulkan
#if canImport(Glibc)
import Glibc
#endif

/// Owns the logical VkDevice and its compute queues. Buffers, pipelines and submission
/// slots hold a strong reference to it, so it (and, through it, the instance) outlives them.
final class VulkanDevice {
    /// At most this many queues are opened: one lane per client up to here lets that many
    /// clients' batches run on the device at once.
    static let maxLanes: UInt32 = 8

    let instance: VulkanInstance
    let physical: VulkanPhysicalDevice
    let handle: VkDevice
    /// The compute family's queues, one per lane (`CommandBatch.lane`). Vulkan requires
    /// external synchronisation of a queue; the backend's lock provides it.
    let queues: [VkQueue]
    /// Standalone transfers and work outside any lane.
    var queue: VkQueue { queues[0] }
    let queueFamily: UInt32

    init(instance: VulkanInstance, physical: VulkanPhysicalDevice) throws(GPUError) {
        guard let family = physical.computeQueueFamily else {
            throw .unsupportedDevice(name: physical.info.name, reason: "no compute queue family")
        }
        var device: VkDevice?
        // Only what the backend uses, and only where offered: host-memory import lets batches
        // copy straight out of and into guest RAM (`VulkanImportedHostMemory`).
        let extensions = physical.hostImportAlignment == nil ? [] : [VulkanPhysicalDevice.hostImportExtension]
        let queueCount = max(1, min(physical.computeQueueCount, Self.maxLanes))
        let priorities = [Float](repeating: 1, count: Int(queueCount))
        let result = priorities.withUnsafeBufferPointer { priorityPointer in
            var queueInfo = VkDeviceQueueCreateInfo()
            queueInfo.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
            queueInfo.queueFamilyIndex = family
            queueInfo.queueCount = queueCount
            queueInfo.pQueuePriorities = priorityPointer.baseAddress
            return withUnsafePointer(to: &queueInfo) { queuePointer in
                withCStringArray(extensions) { extensionNames in
                    var info = VkDeviceCreateInfo()
                    info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                    info.queueCreateInfoCount = 1
                    info.pQueueCreateInfos = queuePointer
                    info.enabledExtensionCount = UInt32(extensions.count)
                    info.ppEnabledExtensionNames = extensionNames
                    return vkCreateDevice(physical.handle, &info, nil, &device)
                }
            }
        }
        try vkCheck(result, "vkCreateDevice")
        guard let device else {
            throw .vulkan(call: "vkCreateDevice", result: VulkanResult(rawValue: VK_ERROR_INITIALIZATION_FAILED.rawValue))
        }
        var queues: [VkQueue] = []
        for index in 0 ..< queueCount {
            var queue: VkQueue?
            vkGetDeviceQueue(device, family, index, &queue)
            guard let queue else {
                vkDestroyDevice(device, nil)
                throw .unsupportedDevice(name: physical.info.name, reason: "vkGetDeviceQueue returned no queue \(index)")
            }
            queues.append(queue)
        }
        self.instance = instance
        self.physical = physical
        self.handle = device
        self.queues = queues
        self.queueFamily = family
    }

    deinit {
        // Children are gone (they retain the device), but the queue may still be executing
        // work whose completion nobody waited for.
        vkDeviceWaitIdle(handle)
        vkDestroyDevice(handle, nil)
    }

    /// The alignment imported host memory needs, or nil when this device cannot import it.
    var hostImportAlignment: Int? { physical.hostImportAlignment }

    /// A memory type allowed by `allowedBits` for the placement, or nil.
    /// deviceLocal: DEVICE_LOCAL, preferring types that are not also host-visible (the big
    /// VRAM heap rather than the small BAR window). hostVisible: HOST_VISIBLE|HOST_COHERENT
    /// (coherent so no flushes are needed), preferring HOST_CACHED for fast readback.
    func memoryTypeIndex(allowedBits: UInt32, placement: MemoryPlacement) -> UInt32? {
        let deviceLocal = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue
        let hostVisible = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue
        let hostCoherent = VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue
        let hostCached = VK_MEMORY_PROPERTY_HOST_CACHED_BIT.rawValue
        let (required, preferredSet, preferredClear): (UInt32, UInt32, UInt32) = switch placement {
        case .deviceLocal: (deviceLocal, 0, hostVisible)
        case .hostVisible: (hostVisible | hostCoherent, hostCached, 0)
        }
        var fallback: UInt32?
        for (index, type) in physical.memoryTypes.enumerated() where allowedBits & (1 << UInt32(index)) != 0 {
            let flags = type.propertyFlags
            guard flags & required == required else { continue }
            if flags & preferredSet == preferredSet && flags & preferredClear == 0 {
                return UInt32(index)
            }
            if fallback == nil { fallback = UInt32(index) }
        }
        return fallback
    }

    func isHostCoherent(memoryType: UInt32) -> Bool {
        let wanted = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue
        guard Int(memoryType) < physical.memoryTypes.count else { return false }
        return physical.memoryTypes[Int(memoryType)].propertyFlags & wanted == wanted
    }
}

/// `body` gets `names` as a C array of NUL-terminated strings, valid for the call only.
private func withCStringArray<Result>(_ names: [String],
                                      _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> Result) -> Result {
    let copies = names.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers = copies.map { $0.map { UnsafePointer<CChar>($0) } }
    return pointers.withUnsafeBufferPointer { body($0.isEmpty ? nil : $0.baseAddress) }
}
