import Platform
import Glibc
import Synchronization
import Testing
@testable import Hypervisor

/// `Machine`'s hot-plug API on a real VM whose guest never runs: the guest's part (powering the
/// slot) is played through the VM's own ECAM window, as the vCPU would reach it.
@Suite(.serialized) struct MachineHotplugTests {
    func machine(slots: Int = MachineConfiguration.defaultHotplugSlots) throws -> Machine {
        let path = "/tmp/malvvm-hotplug-test-\(getpid()).elf"
        let image = TestELF.kernel([0xeb, 0xfe])  // jmp $
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = image.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(path) }
        var configuration = MachineConfiguration(kernelPath: path, memorySize: 16 << 20)
        configuration.hotplugSlots = slots
        return try Machine(configuration: configuration, console: ConsoleWriter { _ in })
    }

    /// The hot-plug error `body` throws, nil if none (or another kind).
    func hotplugError(_ body: () throws(HypervisorError) -> Void) -> HotplugError? {
        do throws(HypervisorError) { try body() } catch {
            if case let .hotplug(error) = error { return error }
            Issue.record("not a hot-plug error: \(error)")
        }
        return nil
    }

    /// Writes Slot Control of the root port for `slot` as the guest would (through ECAM).
    func guestWritesSlotControl(_ machine: Machine, slot: HotplugSlotID, _ value: UInt16) throws {
        let (device, port) = try #require(machine.pci.rootPorts.first { $0.port.physicalSlot == slot.rawValue })
        let address = X86BootLayout.ecamStart + UInt64(device << 15 | port.express + PCIExpress.slotControl)
        let bytes: [UInt8] = [UInt8(value & 0xff), UInt8(value >> 8)]
        bytes.withUnsafeBytes { _ = machine.mmioBus.write(address, data: $0) }
    }

    @Test func rootPortsTakeTheTopOfBus0AndTheirCountIsConfigurable() throws {
        let four = try machine()
        #expect(four.hotplugSlots == (1...4).map(HotplugSlotID.init))
        #expect(four.pci.rootPorts.map(\.slot) == [28, 29, 30, 31])
        #expect(try four.addVirtioDevice(FakeVirtioDevice(), name: "cold").device.name == "cold")
        #expect(four.pci.card(behindPort: 28) == nil)
        let none = try machine(slots: 0)
        #expect(none.hotplugSlots.isEmpty)
        #expect(hotplugError { () throws(HypervisorError) in _ = try none.addVirtioDevice(FakeVirtioDevice(), name: "x", placement: .hotplugSlot).slot } == .noFreeSlot(slots: 0))
        #expect(HotplugError.noFreeSlot(slots: 0).description == "this VM has no hot-plug slots")
    }

    @Test func configurationBoundsTheSlotCount() throws {
        var configuration = MachineConfiguration(kernelPath: "/nonexistent")
        configuration.hotplugSlots = MachineConfiguration.maximumHotplugSlots + 1
        #expect(throws: HypervisorError.self) { try configuration.validate() }
        configuration.hotplugSlots = 4
        configuration.disks = Array(repeating: DiskConfiguration(path: "/dev/null"), count: 28)
        #expect(throws: HypervisorError.self) { try configuration.validate() }
        configuration.disks.removeLast()
        try configuration.validate()
    }

    @Test func fillsSlotsInOrderAndRefusesWhenFull() throws {
        let vm = try machine()
        for n in 1...4 {
            #expect(try vm.addVirtioDevice(FakeVirtioDevice(), name: "dev\(n)", placement: .hotplugSlot).slot == HotplugSlotID(n))
        }
        #expect(vm.hotpluggedDevices.map(\.name) == ["dev1", "dev2", "dev3", "dev4"])
        #expect(vm.hotpluggedDevices.allSatisfy { $0.address == nil && !$0.powered && $0.virtioType == 2 })
        #expect(hotplugError { () throws(HypervisorError) in _ = try vm.addVirtioDevice(FakeVirtioDevice(), name: "dev5", placement: .hotplugSlot).slot } == .noFreeSlot(slots: 4))
        #expect(hotplugError { () throws(HypervisorError) in _ = try vm.addVirtioDevice(FakeVirtioDevice(), name: "dev1", placement: .hotplugSlot).slot } == .duplicateName("dev1"))
        // A slot freed in the middle is the next one used.
        try vm.hotUnplug(HotplugSlotID(2), timeout: .seconds(1))
        #expect(try vm.addVirtioDevice(FakeVirtioDevice(), name: "dev5", placement: .hotplugSlot).slot == HotplugSlotID(2))
    }

    @Test func detachErrorsAreOneLineEach() throws {
        let vm = try machine()
        let backend = FakeVirtioDevice()
        let slot = try vm.addVirtioDevice(backend, name: "gpu", placement: .hotplugSlot).slot!
        #expect(hotplugError { () throws(HypervisorError) in try vm.hotUnplug(HotplugSlotID(9), timeout: .seconds(1)) } == .unknownSlot(HotplugSlotID(9)))
        #expect(hotplugError { () throws(HypervisorError) in try vm.hotUnplug(HotplugSlotID(2), timeout: .seconds(1)) } == .slotEmpty(HotplugSlotID(2)))
        #expect(hotplugError { () throws(HypervisorError) in try vm.hotUnplug(named: "nope", timeout: .seconds(1)) } == .unknownDevice("nope"))
        // The guest never powered the slot on, so it holds nothing: the detach is immediate.
        try vm.hotUnplug(slot, timeout: .seconds(30))
        #expect(backend.resets.load(ordering: .relaxed) >= 1)  // the backend was torn down
        #expect(hotplugError { () throws(HypervisorError) in try vm.hotUnplug(slot, timeout: .seconds(1)) } == .slotEmpty(slot))
        #expect(HotplugError.slotEmpty(slot).description == "hot-plug slot 1 is empty (already detached?)")
        #expect(vm.pci.card(behindPort: 28) == nil)
    }

    @Test func aDetachWaitsForTheGuestToPowerTheSlotOff() throws {
        let vm = try machine()
        let slot = try vm.addVirtioDevice(FakeVirtioDevice(), name: "gpu", placement: .hotplugSlot).slot!
        try guestWritesSlotControl(vm, slot: slot, 0x13e9)  // enables, power on
        #expect(vm.hotpluggedDevices.first?.powered == true)
        // Not released in time: the device stays, and the error says so.
        #expect(hotplugError { () throws(HypervisorError) in try vm.hotUnplug(slot, timeout: .milliseconds(20)) } == .guestDidNotRelease(slot, timeout: .milliseconds(20)))
        #expect(vm.hotpluggedDevices.map(\.name) == ["gpu"])

        let outcome = Mutex<HotplugError??>(nil)
        let detacher = try NativeThread {
            outcome.withLock { $0 = .some(self.hotplugError { () throws(HypervisorError) in try vm.hotUnplug(slot, timeout: .seconds(30)) }) }
        }
        while vm.hotpluggedDevices.first?.detaching != true { usleep(1000) }
        #expect(hotplugError { () throws(HypervisorError) in try vm.hotUnplug(slot, timeout: .seconds(1)) } == .detachInProgress(slot))
        try guestWritesSlotControl(vm, slot: slot, 0x17e9)  // power off: the guest let go
        detacher.join()
        #expect(outcome.withLock { $0 } == .some(nil))
        #expect(vm.hotpluggedDevices.isEmpty)
        let port = try #require(vm.pci.rootPorts.first?.port)
        #expect(!port.isOccupied)
    }

    @Test func aForcedDetachRemovesADeviceTheGuestHolds() throws {
        let vm = try machine()
        let backend = FakeVirtioDevice()
        let slot = try vm.addVirtioDevice(backend, name: "gpu", placement: .hotplugSlot).slot!
        try guestWritesSlotControl(vm, slot: slot, 0x13e9)
        try vm.hotUnplug(slot, timeout: .milliseconds(20), force: true)
        #expect(vm.hotpluggedDevices.isEmpty)
        #expect(backend.resets.load(ordering: .relaxed) >= 1)
        let port = try #require(vm.pci.rootPorts.first?.port)
        #expect(port.slotStatus & PCIExpress.SlotStatus.presenceDetect == 0)
    }
}
