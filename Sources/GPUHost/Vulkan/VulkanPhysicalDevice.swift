import CVulkan

/// A physical device as enumerated, with the facts the backend selects and configures by.
/// Reading it creates nothing, so listing devices is cheap and side-effect free.
struct VulkanPhysicalDevice {
    let handle: VkPhysicalDevice
    let info: DeviceInfo
    /// The queue family the backend submits to; nil when the device has no compute queue.
    let computeQueueFamily: UInt32?
    /// Queues that family offers (the H200's compute-only family has 8; lavapipe has 1).
    let computeQueueCount: UInt32
    /// Meaningful bits of a timestamp on that family; 0 means no timestamps.
    let timestampValidBits: UInt32
    let memoryTypes: [VkMemoryType]
    /// The alignment host memory must have to be imported as device memory
    /// (VK_EXT_external_memory_host), or nil when the device cannot import host memory.
    let hostImportAlignment: Int?

    init(handle: VkPhysicalDevice, index: Int, instanceAPIVersion: UInt32) {
        self.handle = handle
        var properties = VkPhysicalDeviceProperties()
        vkGetPhysicalDeviceProperties(handle, &properties)
        let extensions = Self.extensionNames(handle)
        let effectiveVersion = min(properties.apiVersion, instanceAPIVersion)

        // Driver name/info: core in 1.2, an extension before it. PCI location: only through
        // VK_EXT_pci_bus_info (NVIDIA and AMD have it; lavapipe does not).
        let hasDriverProperties = effectiveVersion >= malv_vk_make_api_version(0, 1, 2, 0)
            || extensions.contains("VK_KHR_driver_properties")
        let hasPCIBusInfo = extensions.contains("VK_EXT_pci_bus_info")
        let hasHostImport = extensions.contains(Self.hostImportExtension)
        var driver = VkPhysicalDeviceDriverProperties()
        driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES
        var pci = VkPhysicalDevicePCIBusInfoPropertiesEXT()
        pci.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT
        var hostImport = VkPhysicalDeviceExternalMemoryHostPropertiesEXT()
        hostImport.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT
        var properties2 = VkPhysicalDeviceProperties2()
        properties2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
        withUnsafeMutablePointer(to: &pci) { pciPointer in
            withUnsafeMutablePointer(to: &driver) { driverPointer in
                withUnsafeMutablePointer(to: &hostImport) { hostImportPointer in
                    var chain: UnsafeMutableRawPointer?
                    if hasPCIBusInfo { chain = UnsafeMutableRawPointer(pciPointer) }
                    if hasDriverProperties {
                        driverPointer.pointee.pNext = chain
                        chain = UnsafeMutableRawPointer(driverPointer)
                    }
                    if hasHostImport {
                        hostImportPointer.pointee.pNext = chain
                        chain = UnsafeMutableRawPointer(hostImportPointer)
                    }
                    properties2.pNext = chain
                    vkGetPhysicalDeviceProperties2(handle, &properties2)
                }
            }
        }
        let alignment = Int(hostImport.minImportedHostPointerAlignment)
        // A power of two by the specification; anything else is a driver we do not trust with it.
        hostImportAlignment = hasHostImport && alignment > 0 && alignment & (alignment - 1) == 0 ? alignment : nil

        var memory = VkPhysicalDeviceMemoryProperties()
        vkGetPhysicalDeviceMemoryProperties(handle, &memory)
        let heaps = withUnsafeBytes(of: memory.memoryHeaps) { raw in
            Array(raw.bindMemory(to: VkMemoryHeap.self).prefix(Int(memory.memoryHeapCount)))
        }
        memoryTypes = withUnsafeBytes(of: memory.memoryTypes) { raw in
            Array(raw.bindMemory(to: VkMemoryType.self).prefix(Int(memory.memoryTypeCount)))
        }

        let family = Self.pickComputeQueueFamily(handle)
        computeQueueFamily = family?.index
        computeQueueCount = family?.queueCount ?? 0
        timestampValidBits = family?.timestampValidBits ?? 0
        let limits = properties.limits
        let timestampsUsable = timestampValidBits > 0 && limits.timestampPeriod > 0

        info = DeviceInfo(
            index: index,
            name: stringFromCArray(properties.deviceName),
            type: Self.deviceType(properties.deviceType),
            vendorID: properties.vendorID,
            deviceID: properties.deviceID,
            apiVersion: versionString(properties.apiVersion),
            driverName: hasDriverProperties ? stringFromCArray(driver.driverName) : nil,
            driverInfo: hasDriverProperties ? stringFromCArray(driver.driverInfo) : nil,
            pciAddress: hasPCIBusInfo
                ? PCIAddress(domain: pci.pciDomain, bus: pci.pciBus, device: pci.pciDevice, function: pci.pciFunction)
                : nil,
            memoryHeaps: heaps.map {
                MemoryHeapInfo(size: $0.size, deviceLocal: $0.flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT.rawValue != 0)
            },
            timestampPeriod: timestampsUsable ? Double(limits.timestampPeriod) : nil,
            maxStorageBufferRange: UInt64(limits.maxStorageBufferRange),
            maxComputeWorkGroupCount: [limits.maxComputeWorkGroupCount.0, limits.maxComputeWorkGroupCount.1,
                                       limits.maxComputeWorkGroupCount.2],
            maxComputeSharedMemorySize: limits.maxComputeSharedMemorySize)
    }

    /// Lets the device copy straight to and from host memory it did not allocate (a VM's RAM).
    static let hostImportExtension = "VK_EXT_external_memory_host"

    /// Prefers a family that can write timestamps, then a compute-only family (the async
    /// compute engine on discrete GPUs, which does not contend with graphics).
    private static func pickComputeQueueFamily(_ device: VkPhysicalDevice)
        -> (index: UInt32, timestampValidBits: UInt32, queueCount: UInt32)? {
        var count: UInt32 = 0
        vkGetPhysicalDeviceQueueFamilyProperties(device, &count, nil)
        var families = [VkQueueFamilyProperties](repeating: VkQueueFamilyProperties(), count: Int(count))
        vkGetPhysicalDeviceQueueFamilyProperties(device, &count, &families)
        let compute = VK_QUEUE_COMPUTE_BIT.rawValue
        let graphics = VK_QUEUE_GRAPHICS_BIT.rawValue
        let candidates = families.prefix(Int(count)).enumerated().filter {
            $0.element.queueFlags & compute != 0 && $0.element.queueCount > 0
        }
        let ranked = candidates.sorted { lhs, rhs in
            func score(_ family: VkQueueFamilyProperties) -> Int {
                (family.timestampValidBits > 0 ? 2 : 0) + (family.queueFlags & graphics == 0 ? 1 : 0)
            }
            let (l, r) = (score(lhs.element), score(rhs.element))
            return l != r ? l > r : lhs.offset < rhs.offset
        }
        guard let best = ranked.first else { return nil }
        return (UInt32(best.offset), best.element.timestampValidBits, best.element.queueCount)
    }

    private static func extensionNames(_ device: VkPhysicalDevice) -> Set<String> {
        var count: UInt32 = 0
        guard vkEnumerateDeviceExtensionProperties(device, nil, &count, nil) == VK_SUCCESS, count > 0 else {
            return []
        }
        var properties = [VkExtensionProperties](repeating: VkExtensionProperties(), count: Int(count))
        let result = vkEnumerateDeviceExtensionProperties(device, nil, &count, &properties)
        guard result == VK_SUCCESS || result == VK_INCOMPLETE else { return [] }
        return Set(properties.prefix(Int(count)).map { stringFromCArray($0.extensionName) })
    }

    private static func deviceType(_ type: VkPhysicalDeviceType) -> DeviceType {
        switch type {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return .discreteGPU
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return .integratedGPU
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return .virtualGPU
        case VK_PHYSICAL_DEVICE_TYPE_CPU: return .cpu
        default: return .other
        }
    }
}
