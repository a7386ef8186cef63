import Testing
@testable import GVMCS

@Suite("Entry checks")
struct EntryCheckTests {
    let capabilities = GVMCapabilities()
    var checker: GVMEntryChecker { GVMEntryChecker(capabilities: capabilities) }

    /// A change to the valid G-VMCS that breaks exactly `check` (and nothing checked before it).
    static func breaking(_ check: GVMEntryCheck, _ vmcs: inout GVMControlStructure) {
        switch check {
        case .executionControlsAllowed: vmcs[.gpuExecutionControls] |= 1 << 5
        case .exitControlsAllowed: vmcs[.exitControls] |= 1 << 7
        case .entryControlsAllowed: vmcs[.entryControls] |= 1 << 3
        case .geptPointerMemoryType: vmcs.geptPointer = GEPTPointer(root: 0x10_0000, memoryType: 1)
        case .geptPointerWalkLength: vmcs.geptPointer = GEPTPointer(root: 0x10_0000, walkLength: 3)
        case .geptPointerAddress: vmcs[.geptPointer] |= 1 << 6
        case .mmioBitmapAddress: vmcs[.mmioBitmapAddress] = 0x3008
        case .postedCompletionDescriptorAddress:
            vmcs.executionControls.insert(.postedCompletions)
            vmcs[.postedCompletionDescriptorAddress] = 0x4020
        case .postedCompletionsRequireAcknowledge:
            vmcs.executionControls.insert(.postedCompletions)
            vmcs.exitControls.remove(.acknowledgeCompletionOnExit)
        case .postedCompletionNotificationVector:
            vmcs.executionControls.insert(.postedCompletions)
            vmcs[.postedCompletionNotificationVector] = 0x100
        case .savePreemptionTimerRequiresTimer: vmcs.executionControls.remove(.activatePreemptionTimer)
        case .memoryQuotaNonZero: vmcs[.memoryQuota] = 0
        case .eventInjectionReservedBits:
            vmcs[.entryEventInjection] = UInt64(GVMEventInjection(vector: 1, type: .completion).rawValue | 1 << 11)
        case .eventInjectionType:
            vmcs[.entryEventInjection] = UInt64(GVMEventInjection.validBit | 2 << 8 | 1)
        case .eventInjectionVector:
            vmcs.eventInjection = GVMEventInjection(vector: 32, type: .completion)
        case .hostContextID: vmcs[.hostContextID] = 0
        case .hostContextSaveArea: vmcs[.hostContextSaveAreaAddress] = 0x5010
        case .hostGPUPageTableRoot: vmcs[.hostGPUPageTableRoot] = 0x8008
        case .schedulerClientID: vmcs[.schedulerClientID] = 256
        case .guestContextID: vmcs[.guestContextID] = 0
        case .commandRingBaseAlignment: vmcs[.commandRingBase] += 0x20
        case .commandRingBaseRange: vmcs[.commandRingBase] = 1 << 48
        case .commandRingSize: vmcs[.commandRingSize] = 12
        case .commandRingHead: vmcs[.commandRingHead] = 16
        case .commandRingTail: vmcs[.commandRingTail] = 16
        case .gpuPageTableRoot: vmcs[.gpuPageTableRoot] = 0x10_0008
        case .preemptionTimerValue: vmcs[.preemptionTimerValue] = 30_001
        case .contextSaveArea:
            vmcs.entryControls.insert(.restoreGuestContext)
            vmcs[.contextSaveAreaAddress] = 0
        }
    }

    @Test("the fixture's G-VMCS passes every check")
    func validPasses() {
        #expect(checker.firstFailure(in: Fixture.validVMCS()) == nil)
    }

    @Test("each check fails alone, in its area", arguments: GVMEntryCheck.allCases)
    func eachCheck(check: GVMEntryCheck) {
        var vmcs = Fixture.validVMCS()
        Self.breaking(check, &vmcs)
        #expect(checker.firstFailure(in: vmcs) == check)
        switch check.area {
        case .controls: #expect(checker.controlFailure(vmcs) == check)
        case .hostState: #expect(checker.hostStateFailure(vmcs) == check)
        case .guestState: #expect(checker.guestStateFailure(vmcs) == check)
        }
    }

    @Test("each check fails gvmlaunch the SDM's way", arguments: GVMEntryCheck.allCases)
    func eachCheckThroughTheUnit(check: GVMEntryCheck) throws {
        let fixture = try Fixture()
        var vmcs = Fixture.validVMCS()
        Self.breaking(check, &vmcs)
        try fixture.load(vmcs)
        switch check.area {
        case .controls:
            #expect(throws: GVMInstructionFailure.failValid(.entryInvalidControlFields, check: check)) {
                try fixture.unit.gvmlaunch()
            }
        case .hostState:
            #expect(throws: GVMInstructionFailure.failValid(.entryInvalidHostStateFields, check: check)) {
                try fixture.unit.gvmlaunch()
            }
        case .guestState:
            let record = try fixture.unit.gvmlaunch()
            #expect(record.exit == .entryFailure(check))
            #expect(record.rawReason == GVMExitReason.entryFailureBit | 33)
            #expect(record.qualification == UInt64(check.rawValue))
            #expect(try fixture.unit.gvmread(.exitReason) == 0x8000_0021)
            #expect(try fixture.unit.gvmread(.exitQualification) == UInt64(check.rawValue))
        }
        #expect(fixture.unit.isLaunched(Fixture.region) == false)
        #expect(fixture.sink.delivered.isEmpty)
    }

    @Test("allowed-0 settings: a bit the capability requires must be 1")
    func mustBeOne() {
        var caps = GVMCapabilities()
        caps.executionControls.allowed0 = GVMExecutionControls.nestedPaging.rawValue
        caps.exitControls.allowed0 = GVMExitControls.acknowledgeCompletionOnExit.rawValue
        caps.entryControls.allowed0 = GVMEntryControls.restoreGuestContext.rawValue
        let checker = GVMEntryChecker(capabilities: caps)
        var vmcs = Fixture.validVMCS()
        vmcs.executionControls.remove(.nestedPaging)
        #expect(checker.firstFailure(in: vmcs) == .executionControlsAllowed)
        vmcs = Fixture.validVMCS()
        vmcs.exitControls.remove(.acknowledgeCompletionOnExit)
        #expect(checker.firstFailure(in: vmcs) == .exitControlsAllowed)
        vmcs = Fixture.validVMCS()
        #expect(checker.firstFailure(in: vmcs) == .entryControlsAllowed)
        #expect(caps.entryControls.msrValue == 0x1_0000_0001)
    }

    @Test("allowed-1 settings: a control the unit lacks must be 0")
    func mustBeZero() {
        var caps = GVMCapabilities()
        caps.executionControls.allowed1 &= ~GVMExecutionControls.postedCompletions.rawValue
        var vmcs = Fixture.validVMCS()
        vmcs.executionControls.insert(.postedCompletions)
        #expect(GVMEntryChecker(capabilities: caps).firstFailure(in: vmcs) == .executionControlsAllowed)
    }

    @Test("G-EPT pointer root beyond the address width fails")
    func geptRootWidth() {
        var vmcs = Fixture.validVMCS()
        vmcs.geptPointer = GEPTPointer(root: 1 << 46)
        #expect(checker.firstFailure(in: vmcs) == .geptPointerAddress)
    }

    @Test("checks tied to a control apply only when it is on")
    func conditional() {
        var vmcs = Fixture.validVMCS()
        vmcs.executionControls = [.activatePreemptionTimer]
        vmcs[.geptPointer] = 0xFFF
        vmcs[.mmioBitmapAddress] = 3
        vmcs[.postedCompletionDescriptorAddress] = 3
        vmcs[.contextSaveAreaAddress] = 0
        vmcs[.entryEventInjection] = 0x7FFF_FFFF   // not valid: its contents are not checked
        #expect(checker.firstFailure(in: vmcs) == nil)
        vmcs.executionControls = []
        vmcs.exitControls = []
        vmcs[.preemptionTimerValue] = 0
        #expect(checker.firstFailure(in: vmcs) == nil)
    }

    @Test("preemption timer: below 1 ms fails unless it is a saved remainder")
    func timerRemainder() {
        var vmcs = Fixture.validVMCS()
        vmcs[.preemptionTimerValue] = 999
        #expect(checker.firstFailure(in: vmcs) == nil)  // save is on in the fixture
        vmcs.exitControls.remove(.savePreemptionTimer)
        #expect(checker.firstFailure(in: vmcs) == .preemptionTimerValue)
        vmcs[.preemptionTimerValue] = 1_000
        #expect(checker.firstFailure(in: vmcs) == nil)
    }

    @Test("controls are checked before host state, host state before guest state")
    func order() {
        var vmcs = Fixture.validVMCS()
        vmcs[.guestContextID] = 0
        vmcs[.hostContextID] = 0
        #expect(checker.firstFailure(in: vmcs) == .hostContextID)
        vmcs[.memoryQuota] = 0
        #expect(checker.firstFailure(in: vmcs) == .memoryQuotaNonZero)
    }
}
