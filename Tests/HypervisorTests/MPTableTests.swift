import Testing
@testable import Hypervisor

/// The MP table and the MADT list every vCPU, with checksums a guest accepts.
@Suite struct MPTableTests {
    func memory() throws -> GuestMemory { try GuestMemory(layout: X86BootLayout.ramLayout(size: 4 << 20)) }

    func sum(_ bytes: [UInt8]) -> UInt8 { bytes.reduce(0, &+) }

    @Test(arguments: [1, 2, 4, 254])
    func listsEveryCPUOnceWithTheBootProcessorFirst(cpus: Int) throws {
        let ram = try memory()
        try MPTable.write(into: ram, vcpuCount: cpus)
        let pointer = try ram.read(16, at: MPTable.floatingPointerAddress)
        #expect(Array(pointer[0..<4]) == Array("_MP_".utf8))
        #expect(sum(pointer) == 0)
        // Where Linux looks second (the EBDA's first KiB), on a 16-byte boundary.
        #expect(MPTable.floatingPointerAddress.raw % 16 == 0 && MPTable.floatingPointerAddress.raw == 0x9_fc00)
        let configuration = UInt64(try ram.read(UInt32.self, at: GuestAddress(MPTable.floatingPointerAddress.raw + 4)))
        let length = Int(try ram.read(UInt16.self, at: GuestAddress(configuration + 4)))
        let table = try ram.read(length, at: GuestAddress(configuration))
        #expect(Array(table[0..<4]) == Array("PCMP".utf8))
        #expect(sum(table) == 0)
        // Walk the entries: processors are 20 bytes, everything else 8.
        var offset = 44, processors: [(id: UInt8, flags: UInt8)] = [], ioapics: [UInt8] = []
        let count = Int(table[34]) | Int(table[35]) << 8
        for _ in 0..<count {
            switch table[offset] {
            case 0:
                processors.append((table[offset + 1], table[offset + 3]))
                offset += 20
            case 2:
                ioapics.append(table[offset + 1])
                offset += 8
            default:
                offset += 8
            }
        }
        #expect(offset == length)
        #expect(processors.map(\.id) == (0..<cpus).map { UInt8($0) })
        #expect(processors.first?.flags == 3 && processors.dropFirst().allSatisfy { $0.flags == 1 })
        #expect(ioapics == [UInt8(cpus)])
        // The ACPI tables below stay clear of the MP table however many CPUs there are.
        #expect(ACPITables.madt(vcpuCount: cpus).count + 0x400 < Int(MPTable.configurationAddress.raw - ACPITables.rsdpAddress.raw))
    }

    @Test func theMADTListsEveryCPUEnabled() {
        let madt = ACPITables.madt(vcpuCount: 3)
        #expect(sum(madt) == 0)
        var offset = 44, apics: [UInt8] = []
        while offset < madt.count {
            if madt[offset] == 0 && madt[offset + 4] & 1 == 1 { apics.append(madt[offset + 3]) }
            offset += Int(madt[offset + 1])
        }
        #expect(apics == [0, 1, 2])
        #expect(madt.suffix(6) == [4, 6, 0xff, 0, 0, 1], "NMI on every LAPIC's LINT1")
    }
}
