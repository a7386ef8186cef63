import Testing
@testable import GVMCS

@Suite("Instruction errors")
struct InstructionErrorTests {
    /// Runs `body`, expects VMfailValid with `error`, and the number in the error field.
    func expectFailValid(_ fixture: Fixture, _ expected: GVMInstructionError,
                         _ body: () throws(GVMInstructionFailure) -> Void) throws {
        do {
            try body()
            Issue.record("expected VMfailValid(\(expected))")
        } catch {
            guard case .failValid(let got, _) = error else {
                Issue.record("expected VMfailValid, got \(error)")
                return
            }
            #expect(got == expected)
        }
        #expect(try fixture.unit.gvmread(.instructionError) == UInt64(expected.rawValue))
    }

    @Test("numbers match the SDM where VMX has the same failure")
    func numbers() {
        #expect(GVMInstructionError.gvmclearInvalidAddress.rawValue == 2)
        #expect(GVMInstructionError.gvmlaunchNonClear.rawValue == 4)
        #expect(GVMInstructionError.gvmresumeNonLaunched.rawValue == 5)
        #expect(GVMInstructionError.entryInvalidControlFields.rawValue == 7)
        #expect(GVMInstructionError.entryInvalidHostStateFields.rawValue == 8)
        #expect(GVMInstructionError.gvmptrldInvalidAddress.rawValue == 9)
        #expect(GVMInstructionError.gvmptrldIncorrectRevision.rawValue == 11)
        #expect(GVMInstructionError.unsupportedComponent.rawValue == 12)
        #expect(GVMInstructionError.writeToReadOnlyComponent.rawValue == 13)
    }

    @Test("VMfailInvalid for every instruction that needs a current G-VMCS")
    func failInvalid() throws {
        let unit = try Fixture().unit
        #expect(throws: GVMInstructionFailure.failInvalid) { try unit.gvmread(.guestContextID) }
        #expect(throws: GVMInstructionFailure.failInvalid) { try unit.gvmwrite(.guestContextID, 1) }
        #expect(throws: GVMInstructionFailure.failInvalid) { try unit.gvmlaunch() }
        #expect(throws: GVMInstructionFailure.failInvalid) { try unit.gvmresume() }
        #expect(unit.gvmptrst() == GPUVirtualizationUnit.invalidPointer)
    }

    @Test("address errors without a current G-VMCS are VMfailInvalid (nowhere to record them)")
    func addressErrorWithoutCurrent() throws {
        let unit = try Fixture().unit
        #expect(throws: GVMInstructionFailure.failInvalid) { try unit.gvmclear(0x1001) }
        #expect(throws: GVMInstructionFailure.failInvalid) { try unit.gvmptrld(0x1001) }
    }

    @Test("2: gvmclear with an unaligned or out-of-range address", arguments: [0x1008, 1 << 46, 0xFFFF_FFFF_FFFF_F000] as [UInt64])
    func gvmclearInvalidAddress(address: UInt64) throws {
        let fixture = try Fixture()
        try fixture.load()
        try expectFailValid(fixture, .gvmclearInvalidAddress) { () throws(GVMInstructionFailure) in
            try fixture.unit.gvmclear(address)
        }
    }

    @Test("9: gvmptrld with an unaligned, out-of-range or unbacked address",
          arguments: [0x1800, 1 << 46, 128 << 20] as [UInt64])
    func gvmptrldInvalidAddress(address: UInt64) throws {
        let fixture = try Fixture()
        try fixture.load()
        try expectFailValid(fixture, .gvmptrldInvalidAddress) { () throws(GVMInstructionFailure) in
            try fixture.unit.gvmptrld(address)
        }
        #expect(fixture.unit.gvmptrst() == Fixture.region)
    }

    @Test("11: gvmptrld of a region whose revision identifier is wrong")
    func incorrectRevision() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.memory.store64(0x7000, 0x1234)
        try expectFailValid(fixture, .gvmptrldIncorrectRevision) { () throws(GVMInstructionFailure) in
            try fixture.unit.gvmptrld(0x7000)
        }
        // Bit 31 (the VMX shadow indicator) is not part of a valid revision either.
        try fixture.memory.store64(0x7000, UInt64(fixture.capabilities.revisionIdentifier) | 1 << 31)
        try expectFailValid(fixture, .gvmptrldIncorrectRevision) { () throws(GVMInstructionFailure) in
            try fixture.unit.gvmptrld(0x7000)
        }
    }

    @Test("4: gvmlaunch of a launched G-VMCS")
    func launchNonClear() throws {
        let fixture = try Fixture()
        try fixture.load()
        _ = try fixture.unit.gvmlaunch()
        try expectFailValid(fixture, .gvmlaunchNonClear) { () throws(GVMInstructionFailure) in
            _ = try fixture.unit.gvmlaunch()
        }
    }

    @Test("5: gvmresume of a clear G-VMCS")
    func resumeNonLaunched() throws {
        let fixture = try Fixture()
        try fixture.load()
        try expectFailValid(fixture, .gvmresumeNonLaunched) { () throws(GVMInstructionFailure) in
            _ = try fixture.unit.gvmresume()
        }
    }

    @Test("7: entry with invalid control fields names the failed check")
    func invalidControls() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.unit.gvmwrite(.memoryQuota, 0)
        #expect(throws: GVMInstructionFailure.failValid(.entryInvalidControlFields,
                                                        check: .memoryQuotaNonZero)) {
            try fixture.unit.gvmlaunch()
        }
        #expect(try fixture.unit.gvmread(.instructionError) == 7)
    }

    @Test("8: entry with invalid host-state fields")
    func invalidHostState() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.unit.gvmwrite(.hostContextID, 0)
        #expect(throws: GVMInstructionFailure.failValid(.entryInvalidHostStateFields,
                                                        check: .hostContextID)) {
            try fixture.unit.gvmlaunch()
        }
        #expect(try fixture.unit.gvmread(.instructionError) == 8)
    }

    @Test("64: entry with invalid guest state is an entry-failure exit and also records 64")
    func invalidGuestState() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.unit.gvmwrite(.guestContextID, 0)
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .entryFailure(.guestContextID))
        #expect(record.rawReason == 0x8000_0021)
        #expect(try fixture.unit.gvmread(.instructionError) == 64)
    }

    @Test("12: gvmread and gvmwrite of an unsupported component",
          arguments: [0x0002, 0x4001, 0x1000, 0x6C02, 0x8000_4400] as [UInt32])
    func unsupportedComponent(raw: UInt32) throws {
        let fixture = try Fixture()
        try fixture.load()
        let encoding = GVMCSFieldEncoding(rawValue: raw)
        try expectFailValid(fixture, .unsupportedComponent) { () throws(GVMInstructionFailure) in
            _ = try fixture.unit.gvmread(encoding)
        }
        try expectFailValid(fixture, .unsupportedComponent) { () throws(GVMInstructionFailure) in
            try fixture.unit.gvmwrite(encoding, 1)
        }
    }

    @Test("13: gvmwrite to every read-only field fails and leaves it unchanged",
          arguments: GVMCSField.allCases.filter(\.isReadOnly))
    func writeToReadOnly(field: GVMCSField) throws {
        let fixture = try Fixture()
        try fixture.load()
        try expectFailValid(fixture, .writeToReadOnlyComponent) { () throws(GVMInstructionFailure) in
            try fixture.unit.gvmwrite(field, 0x55)
        }
        if field != .instructionError { #expect(try fixture.unit.gvmread(field) == 0) }
    }

    @Test("a successful instruction leaves the error field alone")
    func successKeepsError() throws {
        let fixture = try Fixture()
        try fixture.load()
        #expect(throws: GVMInstructionFailure.self) { try fixture.unit.gvmresume() }
        try fixture.unit.gvmwrite(.guestContextID, 9)
        #expect(try fixture.unit.gvmread(.instructionError) == 5)
    }
}
