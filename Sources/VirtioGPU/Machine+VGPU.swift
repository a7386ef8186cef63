import GPUHost
import Hypervisor

extension Machine {
    /// Gives the VM a para-vGPU: a virtio-gpu compute device whose contexts become clients of
    /// `scheduler` under `profile`'s share and memory quota. Before `run()` it goes on the next
    /// bus-0 slot; while the VM runs it is hot-plugged (`hotplugVGPU`), and its slot is in
    /// `hotpluggedDevices` under `name`.
    @discardableResult
    public func attachVGPU(profile: VGPUProfile, scheduler: GPUScheduler, name: String) throws(HypervisorError) -> VirtioGPU {
        if isRunning { return try hotplugVGPU(profile: profile, scheduler: scheduler, name: name).device }
        let device = VirtioGPU(scheduler: scheduler, profile: profile, memory: memory, name: name)
        try attachVirtioDevice(device, name: name)
        return device
    }

    /// Hot-plugs a para-vGPU into the first free hot-plug slot (the guest learns of it by PCIe
    /// native hot-plug). Detach it with `hotUnplug(slot, timeout:)`: that cancels its queued GPU
    /// work and frees its GPU memory and scheduler clients.
    public func hotplugVGPU(profile: VGPUProfile, scheduler: GPUScheduler,
                            name: String) throws(HypervisorError) -> (slot: HotplugSlotID, device: VirtioGPU) {
        let device = VirtioGPU(scheduler: scheduler, profile: profile, memory: memory, name: name)
        let slot = try hotplugVirtioDevice(device, name: name)
        return (slot, device)
    }
}
