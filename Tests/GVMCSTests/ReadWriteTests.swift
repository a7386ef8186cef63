import Testing
@testable import GVMCS

@Suite("gvmread / gvmwrite")
struct ReadWriteTests {
    static let writable = GVMCSField.allCases.filter { !$0.isReadOnly }

    @Test("round trip truncates to the field's width", arguments: writable)
    func roundTrip(field: GVMCSField) throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.unit.gvmwrite(field, 0xFEDC_BA98_7654_3210)
        let expected: UInt64 = switch field.width {
        case .bits16: 0x3210
        case .bits32: 0x7654_3210
        case .bits64, .natural: 0xFEDC_BA98_7654_3210
        }
        #expect(try fixture.unit.gvmread(field) == expected)
    }

    @Test("64-bit fields: high access reads and writes bits 63:32 only",
          arguments: writable.filter { $0.width == .bits64 })
    func highHalf(field: GVMCSField) throws {
        let fixture = try Fixture()
        try fixture.load()
        let high = GVMCSFieldEncoding(rawValue: field.rawValue | 1)
        try fixture.unit.gvmwrite(field, 0x1111_2222_3333_4444)
        #expect(try fixture.unit.gvmread(high) == 0x1111_2222)
        try fixture.unit.gvmwrite(high, 0xFFFF_FFFF_AAAA_BBBB)
        #expect(try fixture.unit.gvmread(field) == 0xAAAA_BBBB_3333_4444)
        #expect(try fixture.unit.gvmread(high) == 0xAAAA_BBBB)
    }

    @Test("read-only fields read what the last exit wrote")
    func readOnlyAfterExit() throws {
        let fixture = try Fixture()
        try fixture.load()
        fixture.clock.advance(0)
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .idle)
        #expect(try fixture.unit.gvmread(.exitReason) == UInt64(GVMExitReason.idle.rawValue))
        #expect(try fixture.unit.gvmread(.exitQualification) == 0)
        #expect(try fixture.unit.gvmread(.timeRun) == 0)
    }

    @Test("fields are per G-VMCS: loading another region shows its own values")
    func perRegion() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.unit.gvmwrite(.guestContextID, 7)
        try fixture.unit.gvmclear(Fixture.otherRegion)
        try fixture.unit.gvmptrld(Fixture.otherRegion)
        #expect(try fixture.unit.gvmread(.guestContextID) == 0)
        try fixture.unit.gvmptrld(Fixture.region)
        #expect(try fixture.unit.gvmread(.guestContextID) == 7)
    }
}
