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

/// Where a device goes in the VM's PCI topology.
public enum PCIPlacement: Sendable, Equatable {
    /// A slot of bus 0, present from boot for the VM's whole life, as firmware leaves a built-in
    /// device. Before `run()` only.
    case builtIn
    /// Behind the first free PCIe root port: the guest can be asked to let it go
    /// (`Machine.hotUnplug`). Before `run()` the guest finds it at boot; while the VM runs,
    /// PCIe native hot-plug announces it.
    case hotplugSlot
}

/// A device the machine took, and the hot-plug slot it is in (nil for a built-in one).
public struct AddedPCIDevice<Device: Sendable>: Sendable {
    public let device: Device
    public let slot: HotplugSlotID?
}

/// The one way a device joins a VM: `addPCIDevice` for a device of any module's making,
/// `addVirtioDevice` for a virtio backend behind the virtio-pci transport. Without a placement,
/// a device added before `run()` is built in and one added to a running VM is hot-plugged.
extension Machine {
    @discardableResult
    public func addPCIDevice<Device: HotpluggablePCIDevice>(
        name: String, placement: PCIPlacement? = nil, _ make: (PCIDeviceHost) throws(HypervisorError) -> Device
    ) throws(HypervisorError) -> AddedPCIDevice<Device> {
        switch placement ?? (isRunning ? .hotplugSlot : .builtIn) {
        case .builtIn:
            guard !isRunning else { throw .configuration("the VM is running: \(name) can only be hot-plugged now") }
            try requireUnusedName(name)
            guard let slot = pci.firstFreeSlot() else { throw .configuration("no free PCI slot for \(name)") }
            let device = try make(pciDeviceHost())
            do throws(HypervisorError) { try pci.plug(device, slot: slot, name: name) } catch {
                device.stop()
                throw error
            }
            builtInDevices.withLock { $0.append(device) }
            return AddedPCIDevice(device: device, slot: nil)
        case .hotplugSlot:
            let (slot, device) = try hotplug(name: name, make)
            return AddedPCIDevice(device: device, slot: slot)
        }
    }

    /// Puts `backend` behind the virtio-pci transport and adds it as `addPCIDevice` does.
    @discardableResult
    public func addVirtioDevice(_ backend: any VirtioDeviceBackend, name: String, placement: PCIPlacement? = nil)
        throws(HypervisorError) -> AddedPCIDevice<VirtioPCIDevice>
    {
        let logger = logger
        return try addPCIDevice(name: name, placement: placement) { host throws(HypervisorError) in
            try VirtioPCIDevice(device: backend, name: name, memory: host.memory, vm: host.vm, router: host.router, logger: logger)
        }
    }

    /// A name names one device, wherever it is.
    func requireUnusedName(_ name: String) throws(HypervisorError) {
        let taken = pci.location(of: name) != nil
            || builtInDevices.withLock { $0.contains { $0.name == name } }
            || hotplugTable.withLock { $0.entries.values.contains { $0.device.name == name } }
        if taken { throw .configuration("a PCI device is already called \(name)") }
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
