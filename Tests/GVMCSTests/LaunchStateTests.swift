import Testing
@testable import GVMCS

@Suite("Launch state and the current pointer")
struct LaunchStateTests {
    @Test("gvmptrld makes a region current; gvmptrst reports it")
    func pointer() throws {
        let fixture = try Fixture()
        #expect(fixture.unit.gvmptrst() == GPUVirtualizationUnit.invalidPointer)
        try fixture.unit.gvmclear(Fixture.region)
        #expect(fixture.unit.gvmptrst() == GPUVirtualizationUnit.invalidPointer)
        try fixture.unit.gvmptrld(Fixture.region)
        #expect(fixture.unit.gvmptrst() == Fixture.region)
    }

    @Test("clear → launched on a successful gvmlaunch, then gvmresume works")
    func launchThenResume() throws {
        let fixture = try Fixture()
        try fixture.load()
        #expect(fixture.unit.isLaunched(Fixture.region) == false)
        _ = try fixture.unit.gvmlaunch()
        #expect(fixture.unit.isLaunched(Fixture.region) == true)
        _ = try fixture.unit.gvmresume()
        #expect(fixture.unit.isLaunched(Fixture.region) == true)
    }

    @Test("gvmclear returns a launched G-VMCS to clear and drops the current pointer")
    func clearResets() throws {
        let fixture = try Fixture()
        try fixture.load()
        _ = try fixture.unit.gvmlaunch()
        try fixture.unit.gvmclear(Fixture.region)
        #expect(fixture.unit.isLaunched(Fixture.region) == false)
        #expect(fixture.unit.gvmptrst() == GPUVirtualizationUnit.invalidPointer)
        try fixture.unit.gvmptrld(Fixture.region)
        // Fields survive a clear; only the launch state (and cumulative times) reset.
        #expect(try fixture.unit.gvmread(.guestContextID) == 7)
        _ = try fixture.unit.gvmlaunch()
    }

    @Test("clearing another region leaves the current pointer alone")
    func clearOther() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.unit.gvmclear(Fixture.otherRegion)
        #expect(fixture.unit.gvmptrst() == Fixture.region)
    }

    @Test("failed control, host and guest checks all leave the G-VMCS clear")
    func failedEntryStaysClear() throws {
        for field in [GVMCSField.memoryQuota, .hostContextID, .guestContextID] {
            let fixture = try Fixture()
            try fixture.load()
            try fixture.unit.gvmwrite(field, 0)
            _ = try? fixture.unit.gvmlaunch()
            #expect(fixture.unit.isLaunched(Fixture.region) == false)
            // Still clear: a fixed structure can be launched (not resumed).
            try fixture.unit.gvmwrite(field, field == .memoryQuota ? 1 << 20 : 1)
            _ = try fixture.unit.gvmlaunch()
        }
    }

    @Test("launch states are per region")
    func perRegion() throws {
        let fixture = try Fixture()
        try fixture.load()
        _ = try fixture.unit.gvmlaunch()
        try fixture.load(region: Fixture.otherRegion)
        #expect(fixture.unit.isLaunched(Fixture.otherRegion) == false)
        #expect(throws: GVMInstructionFailure.failValid(.gvmresumeNonLaunched)) {
            try fixture.unit.gvmresume()
        }
        try fixture.unit.gvmptrld(Fixture.region)
        _ = try fixture.unit.gvmresume()
    }
}
