import CVulkan

/// Host memory the device reads and writes in place (VK_EXT_external_memory_host): a VM's
/// RAM imported once as device memory, bound to a transfer buffer, so a batch's guest-blob
/// transfers become device copies between that buffer and the batch's buffers. The host
/// copies nothing and no staging memory is involved.
///
/// Why: on a discrete GPU every guest-blob byte otherwise crosses host memory twice (guest RAM
/// → staging by memcpy at submit, staging → VRAM by the device), and downloads twice back; on
/// the H200 run of 2026-12-04 that path moved 65 MB/s and was a fifth of the VM's time.
///
/// The host memory must stay mapped for the object's life (the Vulkan rule for imported
/// memory). `VulkanBackend` guarantees it: the import lives while the owner's
/// `HostMemoryShare` does and while any batch or recording that copies through it does, and
/// the share's owner unmaps only after the share is gone and its batches have retired.
final class VulkanImportedHostMemory {
    let device: VulkanDevice
    let handle: VkBuffer
    let memory: VkDeviceMemory
    let base: UnsafeMutableRawPointer
    let byteCount: Int
    /// Unique for the backend's life, unlike the object's address: recordings name the import
    /// by it, so one made for a freed import can never match a new one at the same address.
    let serial: UInt64

    /// Why host memory could not be imported; the caller falls back to staging.
    enum Refusal: Error, CustomStringConvertible {
        case unsupported
        case misaligned(alignment: Int)
        case noCoherentMemoryType
        case vulkan(call: String, result: VkResult)

        var description: String {
            switch self {
            case .unsupported: return "the device cannot import host memory (no \(VulkanPhysicalDevice.hostImportExtension))"
            case let .misaligned(alignment): return "the range is not aligned to \(alignment) bytes at both ends"
            case .noCoherentMemoryType: return "the device offers no host-coherent memory type for it"
            case let .vulkan(call, result): return "\(call) failed (VkResult \(result.rawValue))"
            }
        }
    }

    init(device: VulkanDevice, bytes: UnsafeMutableRawBufferPointer, serial: UInt64) throws(Refusal) {
        guard let alignment = device.hostImportAlignment else { throw .unsupported }
        guard let base = bytes.baseAddress, bytes.count > 0,
              Int(bitPattern: base) & (alignment - 1) == 0, bytes.count & (alignment - 1) == 0 else {
            throw .misaligned(alignment: alignment)
        }
        var importableTypes: UInt32 = 0
        let queried = malv_vk_host_pointer_memory_types(device.handle, base, &importableTypes)
        guard queried == VK_SUCCESS else { throw .vulkan(call: "vkGetMemoryHostPointerPropertiesEXT", result: queried) }

        var external = VkExternalMemoryBufferCreateInfo()
        external.sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO
        external.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT.rawValue
        var buffer: VkBuffer?
        let created = withUnsafePointer(to: &external) { externalPointer in
            var info = VkBufferCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
            info.pNext = UnsafeRawPointer(externalPointer)
            info.size = VkDeviceSize(bytes.count)
            info.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT.rawValue | VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue
            info.sharingMode = VK_SHARING_MODE_EXCLUSIVE
            return vkCreateBuffer(device.handle, &info, nil, &buffer)
        }
        guard created == VK_SUCCESS, let buffer else { throw .vulkan(call: "vkCreateBuffer", result: created) }

        var requirements = VkMemoryRequirements()
        vkGetBufferMemoryRequirements(device.handle, buffer, &requirements)
        // Coherent, so the guest's writes before a submission and the device's before a fence
        // signals are visible without flushes (the submission and the batch's closing barrier
        // make them available).
        let usable = requirements.memoryTypeBits & importableTypes
        guard let typeIndex = device.physical.memoryTypes.indices.first(where: { index in
            usable & (1 << UInt32(index)) != 0 && device.isHostCoherent(memoryType: UInt32(index))
        }) else {
            vkDestroyBuffer(device.handle, buffer, nil)
            throw .noCoherentMemoryType
        }
        var importInfo = VkImportMemoryHostPointerInfoEXT()
        importInfo.sType = VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT
        importInfo.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT
        importInfo.pHostPointer = base
        var memory: VkDeviceMemory?
        let allocated = withUnsafePointer(to: &importInfo) { importPointer in
            var allocation = VkMemoryAllocateInfo()
            allocation.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
            allocation.pNext = UnsafeRawPointer(importPointer)
            allocation.allocationSize = VkDeviceSize(bytes.count)
            allocation.memoryTypeIndex = UInt32(typeIndex)
            return vkAllocateMemory(device.handle, &allocation, nil, &memory)
        }
        guard allocated == VK_SUCCESS, let memory else {
            vkDestroyBuffer(device.handle, buffer, nil)
            throw .vulkan(call: "vkAllocateMemory (host pointer import)", result: allocated)
        }
        let bound = vkBindBufferMemory(device.handle, buffer, memory, 0)
        guard bound == VK_SUCCESS else {
            vkFreeMemory(device.handle, memory, nil)
            vkDestroyBuffer(device.handle, buffer, nil)
            throw .vulkan(call: "vkBindBufferMemory", result: bound)
        }
        self.device = device
        self.handle = buffer
        self.memory = memory
        self.base = base
        self.byteCount = bytes.count
        self.serial = serial
    }

    deinit {
        vkDestroyBuffer(device.handle, handle, nil)
        vkFreeMemory(device.handle, memory, nil)
    }

    /// Where `[pointer, pointer + count)` lies in the import, when wholly inside it.
    func offset(of pointer: UnsafeRawPointer, count: Int) -> Int? {
        let start = Int(bitPattern: pointer) &- Int(bitPattern: base)
        guard Int(bitPattern: pointer) >= Int(bitPattern: base), count >= 0, start <= byteCount - count else { return nil }
        return start
    }
}
