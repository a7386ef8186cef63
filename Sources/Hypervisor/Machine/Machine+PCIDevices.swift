/// What a PCI device built in another module (the full-vGPU) needs from its VM: guest memory,
/// KVM for ioeventfds, and MSI-X vectors with GSIs and irqfds of this VM.
public struct PCIDeviceHost: Sendable {
    public let memory: GuestMemory
    public let vm: KVMVirtualMachine
    /// A KVM memory slot of the device's own, for mapping memory into one of its BARs (a
    /// register page the guest reads without exits).
    public let memorySlot: UInt32
    let router: InterruptRouter

    /// An MSI-X table whose vectors this VM's KVM delivers.
    public func makeMSIXTable(vectorCount: Int) throws(HypervisorError) -> MSIXTable {
        try MSIXTable(vectorCount: vectorCount, vm: vm, router: router)
    }
}

extension Machine {
    /// Puts a device of another module's making on bus 0 in the next free slot; `make` gets
    /// what it needs from the VM. Before `run()` only.
    @discardableResult
    public func attachPCIDevice<Device: PCIDevice>(
        name: String, _ make: (PCIDeviceHost) throws(HypervisorError) -> Device
    ) throws(HypervisorError) -> Device {
        guard !isRunning else { throw .configuration("the VM is running: \(name) cannot be attached now") }
        guard pci.location(of: name) == nil else { throw .configuration("a PCI device is already called \(name)") }
        guard let slot = pci.firstFreeSlot() else { throw .configuration("no free PCI slot for \(name)") }
        let device = try make(pciDeviceHost())
        try pci.plug(device, slot: slot, name: name)
        return device
    }

    /// A new device's view of the VM, with a memory slot of its own.
    func pciDeviceHost() -> PCIDeviceHost {
        let memorySlot = deviceMemorySlots.withLock { next -> UInt32 in
            defer { next += 1 }
            return next
        }
        return PCIDeviceHost(memory: memory, vm: vm, memorySlot: memorySlot, router: interrupts)
    }
}
