import GPUHost
import Hypervisor

extension Machine {
    /// Gives the VM a para-vGPU: a virtio-gpu compute device on the next PCI slot whose
    /// contexts become clients of `scheduler` under `profile`'s share and memory quota.
    @discardableResult
    public func attachVGPU(profile: VGPUProfile, scheduler: GPUScheduler, name: String) throws(HypervisorError) -> VirtioGPU {
        let device = VirtioGPU(scheduler: scheduler, profile: profile, memory: memory, name: name)
        try attachVirtioDevice(device, name: name)
        return device
    }
}
