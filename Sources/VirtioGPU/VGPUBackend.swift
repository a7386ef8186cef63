import Hypervisor

/// A para-vGPU as the VM sees it, whether its device runs in this process (`VirtioGPU`) or in
/// the GPU daemon: a virtio device with a profile and submission statistics.
public protocol VGPUBackend: VirtioDeviceBackend {
    var name: String { get }
    var profile: VGPUProfile { get }
    /// Counters since the vGPU was created.
    var statistics: VGPUStatistics { get }
}

extension VirtioGPU: VGPUBackend {}
