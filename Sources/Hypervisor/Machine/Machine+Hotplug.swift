import Synchronization

/// A device in a hot-plug slot, as `Machine.hotpluggedDevices` lists it.
public struct HotpluggedDevice: Sendable, Equatable {
    public let slot: HotplugSlotID
    public let name: String
    /// The virtio device type (16: GPU, 2: block); 0 for a device that is not virtio.
    public let virtioType: UInt16
    /// Where the guest sees it: "bb:00.0" on the secondary bus the guest gave the port, nil until
    /// the guest numbers that bus.
    public let address: String?
    /// Whether the guest has powered the slot (Linux does so before binding a driver).
    public let powered: Bool
    /// A `hotUnplug` is waiting for the guest to let go.
    public let detaching: Bool
}

/// A PCI device that can leave a running VM: `stop()` is called once it is off the bus.
public protocol HotpluggablePCIDevice: PCIDevice {
    var name: String { get }
    /// The virtio device type (16: GPU, 2: block), 0 for a device that is not virtio: what an
    /// operator listing the slots is told, without the machine finding out what a device is.
    var virtioType: UInt16 { get }
    /// Ends the device for good (threads stopped, doorbells off KVM); calling it again does nothing.
    func stop()
}

extension HotpluggablePCIDevice {
    public var virtioType: UInt16 { 0 }
}

extension VirtioPCIDevice: HotpluggablePCIDevice {
    public var virtioType: UInt16 { device.deviceType }
}

struct HotplugTable: Sendable {
    struct Entry: Sendable {
        let device: any HotpluggablePCIDevice
        let port: PCIeRootPort
        let portSlot: Int
        var detaching = false
    }

    var entries: [HotplugSlotID: Entry] = [:]
}

/// Hot-plug of PCI devices into a running VM through PCIe native hot-plug: every call is safe
/// from any thread while the vCPU runs, and also before `run()` (the guest then finds the
/// device present at boot).
///
/// Attach puts the device behind the first empty root port (`MachineConfiguration.hotplugSlots`
/// of them): BARs placed in the port's windows, its MSI-X vectors given GSIs and irqfds, then
/// Presence Detect and Data Link Layer State Changed raise the port's MSI. Detach presses the
/// slot's attention button and waits for the guest to turn slot power off; Linux's pciehp does
/// that ~5 s after the press (it blinks the power indicator first, and a second press inside
/// those 5 s cancels), our test guest at once. Then the device leaves the bus, the guest sees
/// presence go, and the backend is torn down (for the para-vGPU: queued GPU work cancelled,
/// buffers zeroed and freed, scheduler clients removed).
extension Machine {
    /// Puts the device `make` builds behind the first free root port (`addPCIDevice` with
    /// `.hotplugSlot`). Throws `.hotplug(.noFreeSlot)` when all are taken,
    /// `.hotplug(.duplicateName)` when `name` is in use.
    func hotplug<Device: HotpluggablePCIDevice>(
        name: String, _ make: (PCIDeviceHost) throws(HypervisorError) -> Device
    ) throws(HypervisorError) -> (slot: HotplugSlotID, device: Device) {
        let ports = pci.rootPorts
        let builtInNames = Set(builtInDevices.withLock { $0.map(\.name) })
        guard !builtInNames.contains(name), pci.location(of: name) == nil else { throw .hotplug(.duplicateName(name)) }
        return try hotplugTable.withLock { table throws(HypervisorError) in
            guard !table.entries.values.contains(where: { $0.device.name == name }) else {
                throw .hotplug(.duplicateName(name))
            }
            guard let (portSlot, port) = ports.first(where: { table.entries[HotplugSlotID($0.port.physicalSlot)] == nil }) else {
                throw .hotplug(.noFreeSlot(slots: ports.count))
            }
            let id = HotplugSlotID(port.physicalSlot)
            let device = try make(pciDeviceHost())
            do throws(HypervisorError) { try pci.insert(device, behindPort: portSlot, name: name) } catch {
                device.stop()
                throw error
            }
            table.entries[id] = HotplugTable.Entry(device: device, port: port, portSlot: portSlot)
            return (id, device)
        }
    }

    /// Detaches the device in `slot`: presses the attention button, waits up to `timeout` for the
    /// guest to power the slot off, then removes the device and tears its backend down.
    ///
    /// When the guest does not let go in time: without `force`, throws
    /// `.hotplug(.guestDidNotRelease)` and leaves the device attached; with `force`, removes it
    /// anyway, as a surprise removal (the card pulled without asking; Linux copes, and any DMA
    /// the guest still expects simply never completes). Throws `.hotplug(.slotEmpty)` for a slot
    /// with nothing in it (a second detach), `.hotplug(.unknownSlot)` for a slot that does not
    /// exist, `.hotplug(.detachInProgress)` while another detach of the slot is waiting.
    public func hotUnplug(_ slot: HotplugSlotID, timeout: Duration, force: Bool = false) throws(HypervisorError) {
        let entry = try hotplugTable.withLock { table throws(HypervisorError) -> HotplugTable.Entry in
            guard var entry = table.entries[slot] else {
                let exists = pci.rootPorts.contains { $0.port.physicalSlot == slot.rawValue }
                throw .hotplug(exists ? .slotEmpty(slot) : .unknownSlot(slot))
            }
            guard !entry.detaching else { throw .hotplug(.detachInProgress(slot)) }
            entry.detaching = true
            table.entries[slot] = entry
            return entry
        }
        let released = entry.port.requestRelease(timeout: timeout)
        guard released || force else {
            hotplugTable.withLock { $0.entries[slot]?.detaching = false }
            throw .hotplug(.guestDidNotRelease(slot, timeout: timeout))
        }
        pci.remove(behindPort: entry.portSlot)
        entry.device.stop()
        hotplugTable.withLock { _ = $0.entries.removeValue(forKey: slot) }
    }

    /// Detaches the hot-plugged device called `name` (see `hotUnplug(_:timeout:force:)`).
    public func hotUnplug(named name: String, timeout: Duration, force: Bool = false) throws(HypervisorError) {
        guard let slot = hotpluggedDevices.first(where: { $0.name == name })?.slot else {
            throw .hotplug(.unknownDevice(name))
        }
        try hotUnplug(slot, timeout: timeout, force: force)
    }

    /// The devices in hot-plug slots now, by slot.
    public var hotpluggedDevices: [HotpluggedDevice] {
        hotplugTable.withLock { table in
            table.entries.sorted { $0.key < $1.key }.map { id, entry in
                let bus = entry.port.secondaryBus
                return HotpluggedDevice(
                    slot: id, name: entry.device.name,
                    virtioType: entry.device.virtioType,
                    address: bus == 0 ? nil : hex2(bus) + ":00.0", powered: entry.port.isPowered, detaching: entry.detaching)
            }
        }
    }

    /// Every hot-plug slot of this VM, empty or not.
    public var hotplugSlots: [HotplugSlotID] { pci.rootPorts.map { HotplugSlotID($0.port.physicalSlot) } }
}

private func hex2(_ value: Int) -> String {
    let digits = String(value, radix: 16)
    return digits.count < 2 ? "0" + digits : digits
}
