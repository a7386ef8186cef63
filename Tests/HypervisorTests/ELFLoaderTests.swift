import Testing
@testable import Hypervisor

@Suite struct ELFLoaderTests {
    func memory(_ size: UInt64 = 4 << 20) throws -> GuestMemory {
        try GuestMemory(layout: [(start: GuestAddress(0), size: size)])
    }

    @Test(arguments: [TestELF.Class.elf32, .elf64])
    func loadsSegmentsAndZeroFillsTheRest(elfClass: TestELF.Class) throws {
        var elf = TestELF(elfClass: elfClass)
        elf.segments = [.init(physicalAddress: 0x10_0000, bytes: [1, 2, 3, 4], memorySize: 4096),
                        .init(physicalAddress: 0x20_0000, bytes: [9])]
        let ram = try memory()
        try ram.fill(0xaa, at: GuestAddress(0x10_0000), length: 4096)
        let loaded = try PVHELFLoader(bytes: elf.build()).load(into: ram)
        #expect(loaded.bootProtocol == .pvh(entry: 0x10_0000))
        #expect(loaded.end == 0x20_0001)
        #expect(try ram.read(6, at: GuestAddress(0x10_0000)) == [1, 2, 3, 4, 0, 0])
        #expect(try ram.read(UInt8.self, at: GuestAddress(0x10_0fff)) == 0)
        #expect(try ram.read(UInt8.self, at: GuestAddress(0x20_0000)) == 9)
    }

    @Test func acceptsAnEightBytePVHNote() throws {
        var elf = TestELF(segments: [.init(physicalAddress: 0x10_0000, bytes: [0xf4])])
        elf.noteDescriptorSize = 8
        elf.pvhEntry = 0x10_0040
        #expect(try PVHELFLoader(bytes: elf.build()).image.pvhEntry == 0x10_0040)
    }

    @Test func rejectsAFileThatIsNotELF() {
        #expect(throws: BootError.notELF) { try PVHELFLoader(bytes: Array("#!/bin/sh\necho hi\n".utf8)) }
        #expect(throws: BootError.notELF) { try PVHELFLoader(bytes: []) }
    }

    @Test func rejectsBigEndianAndForeignMachines() {
        var bytes = TestELF.kernel([0xf4])
        bytes[5] = 2
        #expect(throws: BootError.unsupportedELF("big-endian ELF")) { try PVHELFLoader(bytes: bytes) }
        var arm = TestELF(segments: [.init(physicalAddress: 0x10_0000, bytes: [0])])
        arm.machine = 183
        #expect(throws: BootError.unsupportedELF("machine 183 is not x86")) { try PVHELFLoader(bytes: arm.build()) }
        var shared = TestELF(segments: [.init(physicalAddress: 0x10_0000, bytes: [0])])
        shared.type = 3
        #expect(throws: BootError.unsupportedELF("type 3 is not an executable")) { try PVHELFLoader(bytes: shared.build()) }
    }

    @Test func rejectsAnELFWithoutAPVHNote() {
        var elf = TestELF(segments: [.init(physicalAddress: 0x10_0000, bytes: [0xf4])])
        elf.pvhEntry = nil
        #expect(throws: BootError.noPVHEntry) { try PVHELFLoader(bytes: elf.build()) }
    }

    @Test func rejectsAnELFWithNothingToLoad() {
        #expect(throws: BootError.noLoadableSegments) { try PVHELFLoader(bytes: TestELF().build()) }
    }

    @Test func rejectsTruncatedImages() {
        let whole = TestELF.kernel([0x90, 0x90, 0xf4])
        // Cut inside the header, inside the program headers, and inside the segment's bytes.
        for length in [20, 70, whole.count - 30] {
            #expect(throws: BootError.self) { try PVHELFLoader(bytes: Array(whole.prefix(length))) }
        }
    }

    @Test func rejectsHeaderFieldsThatWrapOrPointOutside() {
        var bytes = TestELF.kernel([0xf4])
        bytes.patchLE(UInt64.max - 8, at: 32)  // e_phoff near 2^64
        #expect(throws: BootError.self) { try PVHELFLoader(bytes: bytes) }

        bytes = TestELF.kernel([0xf4])
        bytes.patchLE(UInt64.max, at: 64 + 8)  // first segment's p_offset
        #expect(throws: BootError.self) { try PVHELFLoader(bytes: bytes) }

        bytes = TestELF.kernel([0xf4])
        bytes.patchLE(UInt64(2), at: 64 + 32)  // p_filesz above p_memsz
        bytes.patchLE(UInt64(1), at: 64 + 40)
        #expect(throws: BootError.truncated("segment 0 file size exceeds memory size")) { try PVHELFLoader(bytes: bytes) }
    }

    @Test func rejectsACorruptNote() {
        var bytes = TestELF.kernel([0xf4])
        let noteOffset = bytes.count - 20  // the note (12-byte header, "Xen\0", 4-byte address) ends the file
        bytes.patchLE(UInt32(0xffff_fff0), at: noteOffset)  // namesz
        #expect(throws: BootError.self) { try PVHELFLoader(bytes: bytes) }
    }

    @Test func rejectsSegmentsThatDoNotFitGuestMemory() throws {
        let ram = try memory(2 << 20)
        let past = TestELF(segments: [.init(physicalAddress: 0x1f_ff00, bytes: [1], memorySize: 0x200)]).build()
        #expect(throws: BootError.segmentOutsideMemory(address: 0x1f_ff00, size: 0x200)) {
            try PVHELFLoader(bytes: past).load(into: ram)
        }
        let wrapping = TestELF(segments: [.init(physicalAddress: 0xffff_f000, bytes: [1], memorySize: 0x2000)],
                               pvhEntry: 0xffff_f000).build()
        #expect(throws: BootError.self) { try PVHELFLoader(bytes: wrapping).load(into: ram) }
    }

    @Test func rejectsSegmentsInTheBootInformationArea() throws {
        let low = TestELF(segments: [.init(physicalAddress: 0x6000, bytes: [1])]).build()
        #expect(throws: BootError.segmentInBootArea(address: 0x6000, size: 1)) {
            try PVHELFLoader(bytes: low).load(into: memory())
        }
    }

    @Test func aRejectedImageLeavesMemoryUntouched() throws {
        let ram = try memory(2 << 20)
        let elf = TestELF(segments: [.init(physicalAddress: 0x10_0000, bytes: [7, 7]),
                                     .init(physicalAddress: 0x30_0000, bytes: [1])]).build()
        #expect(throws: BootError.self) { try PVHELFLoader(bytes: elf).load(into: ram) }
        #expect(try ram.read(2, at: GuestAddress(0x10_0000)) == [0, 0])
    }

    @Test func reportsAnUnreadablePath() {
        #expect(throws: BootError.self) { try PVHELFLoader(path: "/nonexistent/kernel.elf") }
        #expect(throws: BootError.self) { try PVHELFLoader(path: "/") }
    }
}
