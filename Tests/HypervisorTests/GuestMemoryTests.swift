import Glibc
import Testing
@testable import Hypervisor

@Suite struct GuestMemoryTests {
    /// Two regions with a gap, like RAM below and above the MMIO hole.
    func split() throws -> GuestMemory {
        try GuestMemory(layout: [(start: GuestAddress(0), size: 0x10000), (start: GuestAddress(0x100000), size: 0x10000)])
    }

    @Test func readsBackWhatItWrote() throws {
        let ram = try split()
        try ram.write(UInt64(0x1122_3344_5566_7788), at: GuestAddress(0xfff8))
        #expect(try ram.read(UInt64.self, at: GuestAddress(0xfff8)) == 0x1122_3344_5566_7788)
        #expect(try ram.read(UInt8.self, at: GuestAddress(0xfff8)) == 0x88)  // little-endian
        try ram.write([1, 2, 3], at: GuestAddress(0x10_0000))
        #expect(try ram.read(3, at: GuestAddress(0x10_0000)) == [1, 2, 3])
    }

    @Test func rejectsAccessesOutsideOrAcrossRegions() throws {
        let ram = try split()
        #expect(throws: GuestMemoryError.outOfRange(address: GuestAddress(0xfffc), length: 8)) {
            try ram.read(UInt64.self, at: GuestAddress(0xfffc))
        }
        #expect(throws: GuestMemoryError.self) { try ram.read(1, at: GuestAddress(0x10000)) }  // in the gap
        #expect(throws: GuestMemoryError.self) { try ram.read(1, at: GuestAddress(0x11_0000)) }  // past the end
        #expect(throws: GuestMemoryError.self) { try ram.read(16, at: GuestAddress(UInt64.max - 4)) }  // wraps
        #expect(throws: GuestMemoryError.self) { try ram.slice(at: GuestAddress(0), length: UInt64.max) }
        #expect(throws: GuestMemoryError.self) { try ram.fill(0, at: GuestAddress(0x10_8000), length: 0x9000) }
        #expect(ram.contains(GuestAddress(0x10_0000), length: 0x10000))
        #expect(!ram.contains(GuestAddress(0x10_0000), length: 0x10001))
    }

    @Test func rejectsBadLayouts() {
        #expect(throws: GuestMemoryError.self) { try GuestMemory(layout: []) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(layout: [(start: GuestAddress(0), size: 100)]) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(layout: [(start: GuestAddress(0x800), size: 0x1000)]) }
        #expect(throws: GuestMemoryError.self) {
            try GuestMemory(layout: [(start: GuestAddress(0), size: 0x2000), (start: GuestAddress(0x1000), size: 0x1000)])
        }
        #expect(throws: GuestMemoryError.self) {
            try GuestMemory(layout: [(start: GuestAddress(UInt64.max - 0xfff), size: 0x2000)])
        }
    }

    /// Another process maps guest RAM through the memfd: bytes written here must be in the file.
    @Test func isBackedByASharedMemfd() throws {
        let ram = try split()
        try ram.write([0xde, 0xad], at: GuestAddress(0x10_0010))
        var bytes: [UInt8] = [0, 0]
        let offset = off_t(ram.regions[1].fileOffset + 0x10)
        #expect(pread(ram.fileDescriptor, &bytes, 2, offset) == 2)
        #expect(bytes == [0xde, 0xad])
    }

    @Test func addressArithmeticNeverWraps() {
        #expect(GuestAddress(UInt64.max).adding(1) == nil)
        #expect(GuestAddress(10).adding(5) == GuestAddress(15))
    }
}
