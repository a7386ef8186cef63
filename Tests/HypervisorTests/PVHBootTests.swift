import Testing
@testable import Hypervisor

@Suite struct PVHBootTests {
    @Test func writesStartInfoCommandLineAndMemoryMap() throws {
        let ram = try GuestMemory(layout: [(start: GuestAddress(0), size: 4 << 20)])
        let map = [MemoryMapEntry(start: 0, size: 4 << 20, kind: .ram),
                   MemoryMapEntry(start: 0xfee0_0000, size: 0x1000, kind: .reserved)]
        try PVHBoot.writeBootInformation(into: ram, commandLine: "test=hello", memoryMap: map)
        let info = X86BootLayout.startInfo.raw
        #expect(try ram.read(UInt32.self, at: GuestAddress(info)) == 0x336e_c578)
        #expect(try ram.read(UInt32.self, at: GuestAddress(info + 4)) == 1)
        let cmdline = try ram.read(UInt64.self, at: GuestAddress(info + 24))
        #expect(try ram.read(11, at: GuestAddress(cmdline)) == Array("test=hello\0".utf8))
        let mapAddress = try ram.read(UInt64.self, at: GuestAddress(info + 40))
        #expect(try ram.read(UInt32.self, at: GuestAddress(info + 48)) == 2)
        #expect(try ram.read(UInt64.self, at: GuestAddress(mapAddress + 24)) == 0xfee0_0000)
        #expect(try ram.read(UInt32.self, at: GuestAddress(mapAddress + 24 + 16)) == 2)
    }

    @Test func rejectsACommandLineLongerThanAPage() throws {
        let ram = try GuestMemory(layout: [(start: GuestAddress(0), size: 4 << 20)])
        let long = String(repeating: "x", count: 4096)
        #expect(throws: BootError.commandLineTooLong(length: 4096, limit: 4095)) {
            try PVHBoot.writeBootInformation(into: ram, commandLine: long, memoryMap: [])
        }
    }

    @Test func entersIn32BitProtectedModeWithStartInfoInEBX() {
        let regs = PVHBoot.initialRegisters(entry: 0x10_0123)
        #expect(regs.rip == 0x10_0123)
        #expect(regs.rbx == X86BootLayout.startInfo.raw)
        #expect(regs.rflags == 2)
        let sregs = PVHBoot.initialSpecialRegisters(from: .init())
        #expect(sregs.cr0 & 1 == 1)
        #expect(sregs.cr0 & 0x8000_0000 == 0)
        #expect(sregs.cs.db == 1 && sregs.cs.l == 0 && sregs.cs.limit == 0xffff_ffff)
        #expect(sregs.efer == 0)
    }

    @Test func memoryMapKeepsTheLegacyHoleAndKVMPagesOutOfRAM() throws {
        let small = try GuestMemory(layout: X86BootLayout.ramLayout(size: 256 << 20))
        let map = X86BootLayout.memoryMap(ram: small.regions)
        #expect(map == [
            MemoryMapEntry(start: 0, size: 0x9_fc00, kind: .ram),
            MemoryMapEntry(start: 0x9_fc00, size: 0x400, kind: .reserved),
            MemoryMapEntry(start: 0xf_0000, size: 0x1_0000, kind: .reserved),
            MemoryMapEntry(start: 0x10_0000, size: (256 << 20) - 0x10_0000, kind: .ram),
            MemoryMapEntry(start: 0xe000_0000, size: 0x1000_0000, kind: .reserved),  // ECAM
            MemoryMapEntry(start: 0xfeff_c000, size: 0x4000, kind: .reserved),
        ])
        let regions = [GuestMemoryRegion(start: GuestAddress(0), size: 3 << 30, fileOffset: 0, host: UnsafeMutableRawPointer(bitPattern: 0x1000)!),
                       GuestMemoryRegion(start: GuestAddress(4 << 30), size: 1 << 30, fileOffset: 3 << 30, host: UnsafeMutableRawPointer(bitPattern: 0x1000)!)]
        let large = X86BootLayout.memoryMap(ram: regions)
        #expect(large.map(\.start) == [0, 0x9_fc00, 0xf_0000, 0x10_0000, 0xe000_0000, 0xfeff_c000, 4 << 30])
        #expect(large.last?.size == 1 << 30)
    }

    @Test func splitsLargeMemoryAroundTheMMIOHole() {
        let small = X86BootLayout.ramLayout(size: 256 << 20)
        #expect(small.count == 1 && small[0].size == 256 << 20)
        let large = X86BootLayout.ramLayout(size: 4 << 30)
        #expect(large.count == 2)
        #expect(large[0].size == 3 << 30)
        #expect(large[1].start.raw == 4 << 30 && large[1].size == 1 << 30)
    }
}
