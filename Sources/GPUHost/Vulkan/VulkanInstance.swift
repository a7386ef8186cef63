import CVulkan

/// Owns a VkInstance. Everything created from it holds a strong reference, so the instance
/// is destroyed last.
final class VulkanInstance {
    /// The backend needs vkGetPhysicalDeviceProperties2 and SPIR-V 1.3.
    static let minimumAPIVersion = malv_vk_make_api_version(0, 1, 1, 0)
    /// Highest version asked for; 1.2 and 1.3 structures are used only when both this and the
    /// device allow them.
    static let maximumAPIVersion = malv_vk_make_api_version(0, 1, 3, 0)

    let handle: VkInstance
    let apiVersion: UInt32

    init() throws(GPUError) {
        var loaderVersion: UInt32 = 0
        // vkEnumerateInstanceVersion is absent from 1.0 loaders, which still link; treat a
        // failure as 1.0.
        if vkEnumerateInstanceVersion(&loaderVersion) != VK_SUCCESS {
            loaderVersion = malv_vk_make_api_version(0, 1, 0, 0)
        }
        guard loaderVersion >= Self.minimumAPIVersion else {
            throw .vulkanUnavailable(reason: "loader supports Vulkan \(versionString(loaderVersion)), 1.1 needed")
        }
        let requested = min(loaderVersion, Self.maximumAPIVersion)

        var instance: VkInstance?
        let result: VkResult = "malvvm".withCString { appName in
            var appInfo = VkApplicationInfo()
            appInfo.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO
            appInfo.pApplicationName = appName
            appInfo.applicationVersion = 1
            appInfo.pEngineName = appName
            appInfo.engineVersion = 1
            appInfo.apiVersion = requested
            return withUnsafePointer(to: &appInfo) { app in
                var info = VkInstanceCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
                info.pApplicationInfo = app
                return vkCreateInstance(&info, nil, &instance)
            }
        }
        if result == VK_ERROR_INCOMPATIBLE_DRIVER {
            throw .vulkanUnavailable(reason: "no Vulkan driver (VK_ERROR_INCOMPATIBLE_DRIVER)")
        }
        try vkCheck(result, "vkCreateInstance")
        guard let instance else {
            throw .vulkan(call: "vkCreateInstance", result: VulkanResult(rawValue: VK_ERROR_INITIALIZATION_FAILED.rawValue))
        }
        handle = instance
        apiVersion = requested
    }

    deinit {
        vkDestroyInstance(handle, nil)
    }

    func physicalDevices() throws(GPUError) -> [VkPhysicalDevice] {
        var count: UInt32 = 0
        try vkCheck(vkEnumeratePhysicalDevices(handle, &count, nil), "vkEnumeratePhysicalDevices")
        guard count > 0 else { return [] }
        var devices = [VkPhysicalDevice?](repeating: nil, count: Int(count))
        try vkCheck(vkEnumeratePhysicalDevices(handle, &count, &devices), "vkEnumeratePhysicalDevices",
                    allowIncomplete: true)
        return devices.prefix(Int(count)).compactMap { $0 }
    }
}
