import Testing
@testable import GVMCS

@Suite("G-EPT")
struct GEPTTests {
    func walker(_ fixture: Fixture) -> GEPTWalker {
        GEPTWalker(memory: fixture.memory, pointer: GEPTPointer(root: fixture.geptRoot),
                   memoryTypes: [0, 6])
    }

    @Test("translates guest-physical to host with the page offset kept")
    func translate() throws {
        let fixture = try Fixture()
        #expect(walker(fixture).translate(0x2_0123, access: [.read, .write])
                == .translated(host: fixture.host(0x2_0123)))
    }

    @Test("permissions are the AND of the levels; unmapped is a violation with none allowed")
    func permissions() throws {
        let fixture = try Fixture()
        try fixture.mapGEPT(0x5000, .read)
        #expect(walker(fixture).translate(0x5000, access: .read) == .translated(host: fixture.host(0x5000)))
        #expect(walker(fixture).translate(0x5000, access: .write) == .violation(allowed: .read))
        #expect(walker(fixture).translate(64 << 20, access: .read) == .violation(allowed: []))
        #expect(walker(fixture).translate(1 << 48, access: .read) == .violation(allowed: []))
    }

    @Test("a table outside host memory is a misconfiguration")
    func unbackedTable() throws {
        let fixture = try Fixture()
        let walker = GEPTWalker(memory: fixture.memory, pointer: GEPTPointer(root: 1 << 40),
                                memoryTypes: [6])
        #expect(walker.translate(0, access: .read) == .misconfiguration)
    }

    @Test("a memory type in a non-leaf entry is a misconfiguration")
    func nonLeafMemoryType() throws {
        let fixture = try Fixture()
        let rootEntry = try fixture.memory.load64(fixture.geptRoot)
        try fixture.memory.store64(fixture.geptRoot, rootEntry | 6 << 3)
        #expect(walker(fixture).translate(0, access: .read) == .misconfiguration)
    }

    @Test("pointer fields decode as laid out")
    func pointer() {
        let pointer = GEPTPointer(root: 0x12_3000, memoryType: 6, walkLength: 4)
        #expect(pointer.rawValue == 0x12_301E)
        #expect(pointer.root == 0x12_3000)
        #expect(pointer.walkLength == 4)
        #expect(pointer.memoryType == 6)
        #expect(pointer.reservedBitsClear)
        #expect(!GEPTPointer(rawValue: pointer.rawValue | 1 << 63).reservedBitsClear)
    }

    @Test("violation qualification bits match the SDM's EPT-violation layout")
    func qualification() {
        let q = GEPTViolationQualification(access: .execute, allowed: [.read, .write],
                                           guestGPUAddressValid: true, translatedAccess: false)
        #expect(q.rawValue == 0b0_1001_1100)
    }
}
