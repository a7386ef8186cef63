import Testing
@testable import Hypervisor

/// A device with one BAR of each kind, recording BAR traffic.
final class FakePCIDevice: PCIDevice, @unchecked Sendable {
    let configuration = PCIConfiguration(
        identity: PCIIdentity(vendorID: 0x1234, deviceID: 0x5678, classCode: 0x02, subclass: 0x00),
        bars: [PCIBarDefinition(index: 0, size: 0x4000, kind: .memory64),
               PCIBarDefinition(index: 2, size: 0x100, kind: .memory32)])
    var mappedAt: [Int: UInt64?] = [:]
    var lastWrite: (Int, UInt64, [UInt8])?

    func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        for i in data.indices { data[i] = UInt8(index * 0x10) }
    }

    func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) { lastWrite = (index, offset, Array(data)) }
    func barMapped(_ index: Int, at address: UInt64?) { mappedAt[index] = address }
}

@Suite struct PCIConfigurationTests {
    let config = FakePCIDevice().configuration

    @Test func showsItsIdentityAndRefusesWritesToIt() {
        #expect(config.read(offset: 0, size: 4) == 0x5678_1234)
        config.write(offset: 0, size: 4, value: 0xffff_ffff)
        #expect(config.read(offset: 0, size: 2) == 0x1234)
        #expect(config.read(offset: 0x0a, size: 2) == 0x0200)
    }

    @Test func sizesBARsByTheWriteAllOnesProtocol() {
        config.write(offset: 0x10, size: 4, value: 0xffff_ffff)
        config.write(offset: 0x14, size: 4, value: 0xffff_ffff)
        #expect(config.read(offset: 0x10, size: 4) == 0xffff_c004)  // 16 KiB, 64-bit memory
        #expect(config.read(offset: 0x14, size: 4) == 0xffff_ffff)
        config.write(offset: 0x18, size: 4, value: 0xffff_ffff)
        #expect(config.read(offset: 0x18, size: 4) == 0xffff_ff00)  // 256 bytes, 32-bit memory
        #expect(config.read(offset: 0x1c, size: 4) == 0)  // no BAR 3
    }

    @Test func decodesABAROnlyWithMemorySpaceEnabled() {
        config.assign(bar: 0, address: 0x80_0000_0000)
        #expect(config.decodedAddress(ofBAR: 0) == nil)
        config.write(offset: 0x04, size: 2, value: 0x2)
        #expect(config.decodedAddress(ofBAR: 0) == 0x80_0000_0000)
        #expect(config.read(offset: 0x14, size: 4) == 0x80)
    }

    @Test func linksCapabilitiesAndGuardsTheirReadOnlyBytes() {
        let first = config.addCapability(id: 0x09, body: [0xaa, 0xbb])
        let second = config.addCapability(id: 0x11, body: [1, 2, 3, 4], writableMask: [0, 0xff])
        #expect(config.read(offset: 0x34, size: 1) == UInt32(first))
        #expect(config.read(offset: 0x06, size: 2) & 0x10 != 0)
        #expect(config.read(offset: first + 1, size: 1) == UInt32(second))
        config.write(offset: second + 2, size: 2, value: 0xeeee)
        #expect(config.read(offset: second + 2, size: 2) == 0xee01)
    }

    @Test func misalignedOrOutOfRangeAccessesAreHarmless() {
        #expect(config.read(offset: 1, size: 4) == 0xffff_ffff)
        #expect(config.read(offset: 4096, size: 1) == 0xff)
        #expect(!config.write(offset: -4, size: 4, value: 0))
        #expect(config.read(offset: 0x100, size: 4) == 0)  // extended space exists, empty
    }
}

@Suite struct PCIRootComplexTests {
    func confRead(_ ports: any BusDevice, bus: UInt32 = 0, slot: UInt32, register: UInt32) -> UInt32 {
        var address: [UInt8] = []
        address.appendLittleEndian(0x8000_0000 | bus << 16 | slot << 11 | register)
        address.withUnsafeBytes { ports.write(offset: 0, data: $0) }
        var value: [UInt8] = [0, 0, 0, 0]
        value.withUnsafeMutableBytes { ports.read(offset: 4, data: $0) }
        return UInt32(value[0]) | UInt32(value[1]) << 8 | UInt32(value[2]) << 16 | UInt32(value[3]) << 24
    }

    @Test func answersConf1AndECAMForPluggedSlotsOnly() throws {
        let mmio = IOBus(name: "mmio")
        let root = PCIRootComplex(mmioBus: mmio)
        try root.plug(FakePCIDevice(), slot: 3, name: "fake")
        let ports = root.configPorts
        #expect(confRead(ports, slot: 0, register: 0) == 0x0d57_8086)
        #expect(confRead(ports, slot: 3, register: 0) == 0x5678_1234)
        #expect(confRead(ports, slot: 4, register: 0) == 0xffff_ffff)
        #expect(confRead(ports, bus: 1, slot: 3, register: 0) == 0xffff_ffff)

        var word: [UInt8] = [0, 0]
        word.withUnsafeMutableBytes { root.ecam.read(offset: 3 << 15 | 2, data: $0) }
        #expect(word == [0x78, 0x56])
        word.withUnsafeMutableBytes { root.ecam.read(offset: 1 << 20 | 3 << 15, data: $0) }  // bus 1
        #expect(word == [0xff, 0xff])
        #expect(throws: HypervisorError.self) { try root.plug(FakePCIDevice(), slot: 3, name: "again") }
        #expect(throws: HypervisorError.self) { try root.plug(FakePCIDevice(), slot: 32, name: "nowhere") }
    }

    @Test func placesBARsInTheirWindowsAndMovesThemWithTheGuest() throws {
        let mmio = IOBus(name: "mmio")
        let root = PCIRootComplex(mmioBus: mmio)
        let device = FakePCIDevice()
        try root.plug(device, slot: 1, name: "fake")
        let bar0 = try #require(device.configuration.decodedAddress(ofBAR: 0))
        let bar2 = try #require(device.configuration.decodedAddress(ofBAR: 2))
        #expect(bar0 >= X86BootLayout.pciWindow64Start && bar0 % 0x4000 == 0)
        #expect(bar2 >= X86BootLayout.pciWindow32Start && bar2 < X86BootLayout.ecamStart)
        #expect(device.mappedAt[0] == bar0)

        var byte: [UInt8] = [0]
        #expect(byte.withUnsafeMutableBytes { mmio.read(bar2 + 4, into: $0) })
        #expect(byte == [0x20])

        // The guest moves BAR 2: the old address stops decoding, the new one starts.
        var ecamWrite: [UInt8] = []
        ecamWrite.appendLittleEndian(UInt32(0xd000_0000))
        ecamWrite.withUnsafeBytes { root.ecam.write(offset: 1 << 15 | 0x18, data: $0) }
        #expect(!byte.withUnsafeMutableBytes { mmio.read(bar2 + 4, into: $0) })
        #expect(byte.withUnsafeMutableBytes { mmio.read(0xd000_0004, into: $0) })
        #expect(device.mappedAt[2] == 0xd000_0000)

        // Memory decoding off: nothing decodes.
        var command: [UInt8] = [0, 0]
        command.withUnsafeBytes { root.ecam.write(offset: 1 << 15 | 0x04, data: $0) }
        #expect(!byte.withUnsafeMutableBytes { mmio.read(0xd000_0004, into: $0) })
        #expect(device.mappedAt[0] == .some(nil))

        root.unplug(slot: 1)
        #expect(confRead(root.configPorts, slot: 1, register: 0) == 0xffff_ffff)
    }
}
