import Hypervisor

/// A vGPU as the control API lists it, of either kind: a name, a profile and statistics.
public protocol VGPU: AnyObject, Sendable {
    var name: String { get }
    /// "para" (virtio-gpu) or "full" (the G-VMCS full-vGPU).
    var kind: String { get }
    var profile: VGPUProfile { get }
    /// Counters since the vGPU was created.
    var statistics: VGPUStatistics { get }
}

/// A para-vGPU as the VM sees it, whether its device runs in this process (`VirtioGPU`) or in
/// the GPU daemon: a virtio device with a profile and submission statistics.
public protocol VGPUBackend: VirtioDeviceBackend, VGPU {}

extension VGPUBackend {
    public var kind: String { "para" }
}

extension VirtioGPU: VGPUBackend {}
