import CVulkan

/// Turns a VkResult into a typed error naming the call. VK_INCOMPLETE is accepted only where
/// the caller says so (two-call enumerations that re-query the count).
func vkCheck(_ result: VkResult, _ call: StaticString, allowIncomplete: Bool = false) throws(GPUError) {
    if result == VK_SUCCESS || (allowIncomplete && result == VK_INCOMPLETE) { return }
    throw .vulkan(call: "\(call)", result: VulkanResult(rawValue: result.rawValue))
}

/// Reads a NUL-terminated C string out of a fixed-size char array imported as a tuple.
func stringFromCArray<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
}

func versionString(_ version: UInt32) -> String {
    "\(malv_vk_api_version_major(version)).\(malv_vk_api_version_minor(version)).\(malv_vk_api_version_patch(version))"
}
