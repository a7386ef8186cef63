import Testing
@testable import GVMCS

@Suite("Guest register accesses")
struct RegisterAccessTests {
    @Test("untrapped reads come from the virtual function's registers")
    func directReads() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.unit.gvmwrite(.commandRingHead, 3)
        try fixture.unit.gvmwrite(.commandRingTail, 5)
        let unit = fixture.unit
        #expect(unit.guestRegisterAccess(.read(GVMRegister.ringHead.rawValue), region: Fixture.region)
                == .completed(readValue: 3))
        #expect(unit.guestRegisterAccess(.read(GVMRegister.ringTail.rawValue), region: Fixture.region)
                == .completed(readValue: 5))
        #expect(unit.guestRegisterAccess(.read(GVMRegister.status.rawValue), region: Fixture.region)
                == .completed(readValue: 0))
        #expect(unit.guestRegisterAccess(.read(0x9, size: 1), region: Fixture.region)
                == .completed(readValue: 0))
        #expect(unit.guestRegisterAccess(.write(0x800, 1), region: Fixture.region)
                == .completed(readValue: nil))
    }

    @Test("without the MMIO bitmap every register access other than the doorbell traps")
    func noBitmapTrapsAll() throws {
        let fixture = try Fixture()
        var vmcs = Fixture.validVMCS()
        vmcs.executionControls.remove(.useMMIOBitmap)
        try fixture.load(vmcs)
        #expect(fixture.unit.guestRegisterAccess(.read(4), region: Fixture.region) == .trapped)
        #expect(fixture.unit.guestRegisterAccess(.write(0, 1), region: Fixture.region)
                == .completed(readValue: nil))
    }

    @Test("an 8-byte access traps when either register's bit is set; read and write bitmaps differ")
    func bitmapHalves() throws {
        let fixture = try Fixture()
        try fixture.load()
        let bitmap = MMIOBitmap(memory: fixture.memory, address: Fixture.mmioBitmap)
        try bitmap.setTrap(offset: 0x44, write: false, true)
        #expect(bitmap.traps(.read(0x40, size: 8)))
        #expect(!bitmap.traps(.write(0x40, 0, size: 8)))
        try bitmap.setTrap(offset: 0x44, write: false, false)
        #expect(!bitmap.traps(.read(0x40, size: 8)))
    }

    @Test("misaligned accesses trap; bad sizes, offsets and regions are rejected")
    func rejected() throws {
        let fixture = try Fixture()
        try fixture.load()
        let unit = fixture.unit
        #expect(unit.guestRegisterAccess(.read(0x6, size: 4), region: Fixture.region) == .trapped)
        #expect(unit.guestRegisterAccess(.read(0x8, size: 3), region: Fixture.region) == .rejected)
        #expect(unit.guestRegisterAccess(.read(0xFFFC, size: 8), region: Fixture.region) == .rejected)
        #expect(unit.guestRegisterAccess(.read(0x10000), region: Fixture.region) == .rejected)
        #expect(unit.guestRegisterAccess(.read(0x4), region: 0x9000) == .rejected)
    }

    @Test("trapped accesses queue up to the limit, then are rejected; exits come out in order")
    func queue() throws {
        let fixture = try Fixture(capabilities: GVMCapabilities(pendingRegisterAccessLimit: 2))
        var vmcs = Fixture.validVMCS()
        vmcs.executionControls.insert(.doorbellExiting)
        try fixture.load(vmcs)
        let unit = fixture.unit
        #expect(unit.guestRegisterAccess(.write(0, 1), region: Fixture.region) == .trapped)
        #expect(unit.guestRegisterAccess(.write(0, 2), region: Fixture.region) == .trapped)
        #expect(unit.guestRegisterAccess(.write(0, 3), region: Fixture.region) == .rejected)
        #expect(try unit.gvmlaunch().exit == .doorbell(tail: 1))
        #expect(try unit.gvmresume().exit == .doorbell(tail: 2))
        #expect(try unit.gvmresume().exit == .idle)
    }

    @Test("accesses reach a G-VMCS that is not current")
    func notCurrent() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.load(region: Fixture.otherRegion)
        #expect(fixture.unit.guestRegisterAccess(.write(0, 4), region: Fixture.region)
                == .completed(readValue: nil))
        try fixture.unit.gvmptrld(Fixture.region)
        #expect(try fixture.unit.gvmread(.commandRingTail) == 4)
    }
}
