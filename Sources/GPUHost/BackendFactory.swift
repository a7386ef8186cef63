import Logging

/// Picks the backend for a selector. Only `.automatic` falls back to the CPU reference, and
/// it says so in the log: an explicit device request that cannot be met is an error, since
/// silently running a "GPU" VM on the host CPU would make every measurement a lie.
///
/// Vulkan options come from the environment (`VulkanBackendOptions.fromEnvironment`):
/// `MALVVM_VULKAN_STAGING=always` makes a unified-memory device take a discrete GPU's
/// staging path for host transfers.
public enum BackendFactory {
    public static func make(_ selector: DeviceSelector = .automatic,
                            logger: Logger = Logger(label: "malvvm.gpuhost")) throws(GPUError) -> any ComputeBackend {
        let (options, problem) = VulkanBackendOptions.fromEnvironment()
        if let problem { logger.warning("GPUHost: \(problem)") }
        return try make(selector, logger: logger, vulkan: { (selector, logger) throws(GPUError) in
            try VulkanBackend(selector: selector, options: options, logger: logger)
        })
    }

    /// `vulkan` is injectable so the fallback decision can be tested on hosts that have a
    /// Vulkan device.
    static func make(_ selector: DeviceSelector, logger: Logger,
                     vulkan: (DeviceSelector, Logger) throws(GPUError) -> any ComputeBackend) throws(GPUError) -> any ComputeBackend {
        switch selector {
        case .cpuReference:
            logger.info("GPUHost: CPU reference backend selected; kernels run on the host CPU")
            return CPUBackend()
        case .automatic:
            do throws(GPUError) {
                return try vulkan(.automatic, logger)
            } catch {
                switch error {
                case .vulkanUnavailable, .deviceNotFound, .unsupportedDevice:
                    logger.warning("GPUHost: no usable Vulkan device (\(error)); falling back to the CPU reference backend, kernels run on the host CPU")
                    return CPUBackend()
                default:
                    throw error
                }
            }
        case .index, .nameContains:
            return try vulkan(selector, logger)
        }
    }
}
