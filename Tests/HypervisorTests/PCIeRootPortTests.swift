import Platform
import Glibc
import Synchronization
import Testing
@testable import Hypervisor

/// A root port on a real KVM VM (its MSI needs a GSI and an irqfd), driven through ECAM the way
/// pciehp drives one.
@Suite(.serialized) struct PCIeRootPortTests {
    let mmio = IOBus(name: "mmio")
    let root: PCIRootComplex
    let port: PCIeRootPort
    let vm: KVMVirtualMachine
    static let portSlot = 28

    init() throws {
        vm = try KVMSystem().createVM()
        try vm.createIRQChip()
        root = PCIRootComplex(mmioBus: mmio)
        port = try PCIeRootPort(physicalSlot: 1, vm: vm, router: try InterruptRouter(vm: vm))
        try root.plug(rootPort: port, slot: Self.portSlot, name: "port1")
    }

    // MARK: ECAM helpers

    func ecamOffset(bus: Int, device: Int, _ register: Int) -> UInt64 {
        UInt64(bus << 20 | device << 15 | register)
    }

    func read(bus: Int = 0, device: Int = portSlot, _ register: Int, size: Int = 4) -> UInt32 {
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { root.ecam.read(offset: ecamOffset(bus: bus, device: device, register), data: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
    }

    func write(bus: Int = 0, device: Int = portSlot, _ register: Int, _ value: UInt32, size: Int = 4) {
        var bytes: [UInt8] = []
        for i in 0..<size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) }
        bytes.withUnsafeBytes { root.ecam.write(offset: ecamOffset(bus: bus, device: device, register), data: $0) }
    }

    var x: Int { port.express }
    func slotStatus() -> UInt32 { read(x + PCIExpress.slotStatus, size: 2) }
    func slotControl(_ value: UInt16) { write(x + PCIExpress.slotControl, UInt32(value), size: 2) }

    /// MSI to vector 0x70 on APIC 0, enabled and unmasked.
    func enableMSI() {
        let msi = port.msi.offset
        write(msi + 4, 0xfee0_0000)
        write(msi + 8, 0)
        write(msi + 0xc, 0x70, size: 2)
        write(msi + 2, 1, size: 2)
    }

    /// Bus numbers 0 → 5 → 5, as our guest and Linux program them.
    func numberBuses() { write(0x18, 0x0005_0500) }

    // MARK: Header and capabilities

    @Test func isAType1BridgeWithAnExpressRootPortCapability() {
        #expect(read(0x00) == 0x000c_1b36)
        #expect(read(0x08) >> 16 == 0x0604)  // PCI-to-PCI bridge
        #expect(read(0x0e, size: 1) == 0x01)
        #expect(read(0x34, size: 1) == UInt32(x))
        #expect(read(x, size: 1) == 0x10)
        let flags = read(x + PCIExpress.flags, size: 2)
        #expect(flags & 0xf == 2)  // capability version 2
        #expect(flags >> 4 & 0xf == 4)  // root port
        #expect(flags & 0x100 != 0)  // slot implemented
        let slotCaps = read(x + PCIExpress.slotCapabilities)
        #expect(slotCaps & 0x7f == 0x5b)  // button, power controller, both indicators, hot-plug capable; no surprise
        #expect(slotCaps >> 19 == 1)  // physical slot number
        #expect(read(x + PCIExpress.linkCapabilities) & (1 << 20) != 0)  // DLL link active reporting
        // The MSI capability follows: 64-bit, per-vector masking.
        let next = Int(read(x + 1, size: 1))
        #expect(next == port.msi.offset)
        #expect(read(next, size: 1) == 0x05)
        #expect(read(next + 2, size: 2) == 0x180)
    }

    @Test func busNumbersAreTheGuestsAndTheIOWindowDoesNotExist() {
        numberBuses()
        #expect(read(0x18) == 0x0005_0500)
        #expect(port.secondaryBus == 5 && port.subordinateBus == 5)
        write(0x1c, 0xffff_ffff, size: 2)
        #expect(read(0x1c, size: 2) == 0)
    }

    @Test func opensWindowsOverItsReservationLikeFirmware() throws {
        let memory = try #require(port.memoryWindow)
        let prefetchable = try #require(port.prefetchableWindow)
        #expect(memory.count == Int(PCIeRootPort.memoryWindowSize))
        #expect(memory.lowerBound >= X86BootLayout.pciWindow32Start && memory.upperBound <= X86BootLayout.ecamStart)
        #expect(prefetchable.count == Int(PCIeRootPort.prefetchableWindowSize))
        #expect(prefetchable.lowerBound >= X86BootLayout.pciWindow64Start)
        #expect(read(0x24, size: 2) & 0xf == 1)  // 64-bit prefetchable
        #expect(read(0x04, size: 2) & 0x2 != 0)  // forwarding memory
        // The guest moves the memory window; base above limit closes it.
        write(0x20, 0xd010_d000)
        #expect(port.memoryWindow == 0xd000_0000..<0xd020_0000)
        write(0x20, 0x0000_fff0)
        #expect(port.memoryWindow == nil)
    }

    // MARK: Slot registers

    @Test func slotStatusEventsAreWriteOneToClear() throws {
        #expect(slotStatus() & 0x40 == 0)  // empty
        try root.insert(FakePCIDevice(), behindPort: Self.portSlot, name: "card")
        #expect(slotStatus() == 0x148)  // presence detect state + changed, link state changed
        #expect(read(x + PCIExpress.linkStatus, size: 2) & 0x2000 != 0)  // DLL link active
        write(x + PCIExpress.slotStatus, 0, size: 2)
        #expect(slotStatus() == 0x148)  // zeros clear nothing
        write(x + PCIExpress.slotStatus, 0x8, size: 2)
        #expect(slotStatus() == 0x140)
        write(x + PCIExpress.slotStatus, 0xffff, size: 2)
        #expect(slotStatus() == 0x40)  // the state bit is not an event: it stays
        root.remove(behindPort: Self.portSlot)
        #expect(slotStatus() == 0x108)
        #expect(read(x + PCIExpress.linkStatus, size: 2) & 0x2000 == 0)
    }

    @Test func everySlotControlWriteCompletesACommand() {
        #expect(port.isPowered == false)  // empty slots come up powered off
        slotControl(0x03c0)  // power on, indicators off
        #expect(slotStatus() & 0x10 != 0)
        #expect(port.isPowered)
        #expect(port.commandCount == 1)
        write(x + PCIExpress.slotStatus, 0x10, size: 2)
        #expect(slotStatus() & 0x10 == 0)
        slotControl(0x03c0)  // the same value again is still a command
        #expect(slotStatus() & 0x10 != 0)
        #expect(port.commandCount == 2)
        slotControl(0xffff)
        #expect(read(x + PCIExpress.slotControl, size: 2) == UInt32(PCIExpress.SlotControl.writable))
    }

    @Test func interruptsOncePerRiseOfEnabledEvents() throws {
        enableMSI()
        slotControl(PCIExpress.SlotControl.hotPlugInterruptEnable | PCIExpress.SlotControl.linkStateEnable
            | PCIExpress.SlotControl.attentionButtonEnable | PCIExpress.SlotControl.powerOff | 0x3c0)
        #expect(port.msi.messagesSent == 0)  // CC is set but its enable is off
        write(x + PCIExpress.slotStatus, 0xffff, size: 2)
        try root.insert(FakePCIDevice(), behindPort: Self.portSlot, name: "card")
        #expect(port.msi.messagesSent == 1)
        // Another event before the guest cleared the first one: no new edge, no message.
        slotControl(0x03c0 | PCIExpress.SlotControl.hotPlugInterruptEnable | PCIExpress.SlotControl.linkStateEnable
            | PCIExpress.SlotControl.attentionButtonEnable | PCIExpress.SlotControl.commandCompletedEnable)
        #expect(port.msi.messagesSent == 1)
        write(x + PCIExpress.slotStatus, 0xffff, size: 2)
        #expect(port.requestRelease(timeout: .milliseconds(1)) == false)  // presses the button
        #expect(port.msi.messagesSent == 2)
        // Masked: the message waits in the pending bit and goes when unmasked.
        write(x + PCIExpress.slotStatus, 0xffff, size: 2)
        write(port.msi.offset + 0x10, 1)
        slotControl(0x03c0 | PCIExpress.SlotControl.hotPlugInterruptEnable | PCIExpress.SlotControl.commandCompletedEnable)
        #expect(port.msi.messagesSent == 2)
        #expect(read(port.msi.offset + 0x14) == 1)
        write(port.msi.offset + 0x10, 0)
        #expect(port.msi.messagesSent == 3)
        #expect(read(port.msi.offset + 0x14) == 0)
    }

    @Test func turningPowerOffReleasesAWaitingUnplug() throws {
        slotControl(0x03c0)  // powered
        let released = Mutex<Bool?>(nil)
        let port = self.port
        let waiter = try NativeThread { released.withLock { $0 = port.requestRelease(timeout: .seconds(30)) } }
        while slotStatus() & 0x1 == 0 { usleep(1000) }  // the button was pressed
        slotControl(0x07c0)
        waiter.join()
        #expect(released.withLock { $0 } == true)
    }

    // MARK: Routing behind the port

    @Test func configCyclesToTheSecondaryBusReachTheCardOnly() throws {
        let card = FakePCIDevice()
        try root.insert(card, behindPort: Self.portSlot, name: "card")
        #expect(read(bus: 5, device: 0, 0) == 0xffff_ffff)  // bus not numbered yet
        numberBuses()
        #expect(read(bus: 5, device: 0, 0) == 0x5678_1234)
        #expect(read(bus: 5, device: 1, 0) == 0xffff_ffff)  // only device 0 below a port
        #expect(read(bus: 6, device: 0, 0) == 0xffff_ffff)
        // conf1 reaches it too.
        var address: [UInt8] = []
        address.appendLittleEndian(UInt32(0x8000_0000 | 5 << 16))
        address.withUnsafeBytes { root.configPorts.write(offset: 0, data: $0) }
        var value: [UInt8] = [0, 0, 0, 0]
        value.withUnsafeMutableBytes { root.configPorts.read(offset: 4, data: $0) }
        #expect(value == [0x34, 0x12, 0x78, 0x56])
        root.remove(behindPort: Self.portSlot)
        #expect(read(bus: 5, device: 0, 0) == 0xffff_ffff)
    }

    @Test func cardBARsDecodeOnlyInsideTheForwardedWindows() throws {
        let card = FakePCIDevice()
        try root.insert(card, behindPort: Self.portSlot, name: "card")
        numberBuses()
        let window = try #require(port.memoryWindow)
        // Placed inside the window by the VMM, but not decoding until the driver enables it.
        #expect(card.configuration.decodedAddress(ofBAR: 0) == nil)
        write(bus: 5, device: 0, 0x04, 0x2, size: 2)
        let bar0 = try #require(card.configuration.decodedAddress(ofBAR: 0))
        #expect(window.contains(bar0))
        #expect(card.mappedAt[0] == bar0)
        var byte: [UInt8] = [0]
        #expect(byte.withUnsafeMutableBytes { mmio.read(bar0, into: $0) })
        // The port stops forwarding memory: the BAR goes dark without the card changing.
        write(0x04, 0, size: 2)
        #expect(!byte.withUnsafeMutableBytes { mmio.read(bar0, into: $0) })
        write(0x04, 0x6, size: 2)
        #expect(byte.withUnsafeMutableBytes { mmio.read(bar0, into: $0) })
        // A BAR the guest moves outside the window does not decode.
        write(bus: 5, device: 0, 0x10, 0xc800_0000)
        write(bus: 5, device: 0, 0x14, 0)
        #expect(card.mappedAt[0] == .some(nil))
        root.remove(behindPort: Self.portSlot)
        #expect(!byte.withUnsafeMutableBytes { mmio.read(bar0, into: $0) })
    }

    @Test func badGuestWritesAreHarmless() {
        // Reserved and read-only registers of the capability, misaligned and oversize accesses.
        write(x + PCIExpress.slotCapabilities, 0)
        #expect(read(x + PCIExpress.slotCapabilities) & 0x7f == 0x5b)
        write(x + PCIExpress.flags, 0, size: 2)
        #expect(read(x + PCIExpress.flags, size: 2) & 0xf0 == 0x40)
        write(x + PCIExpress.slotControl + 1, 0xff, size: 2)
        write(0xffe, 0xffff_ffff, size: 4)
        #expect(read(bus: 255, device: 31, 0) == 0xffff_ffff)
        numberBuses()
        write(bus: 5, device: 0, 0, 0)  // empty slot: dropped
        #expect(read(bus: 5, device: 0, 0) == 0xffff_ffff)
    }
}
