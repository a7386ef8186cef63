import Hypervisor
import VGPUCore

/// A para-vGPU as the VM sees it, whether its device runs in this process (`VirtioGPU`) or in
/// the GPU daemon: a virtio device with a profile and submission statistics.
public protocol VGPUBackend: VirtioDeviceBackend, VGPU {}

extension VGPUBackend {
    public var kind: String { "para" }
}

extension VirtioGPU: VGPUBackend, VirtioQueueHandler {}
