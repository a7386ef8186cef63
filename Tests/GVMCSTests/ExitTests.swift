import Testing
@testable import GVMCS

@Suite("Exits and the run step")
struct ExitTests {
    @Test("idle: an empty ring exits at once")
    func idle() throws {
        let fixture = try Fixture()
        try fixture.load()
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .idle)
        #expect(record.rawReason == 9)
        #expect(record.timeRun == 0)
    }

    @Test("commands run head to tail; write64 stores through both translation stages")
    func runsCommands() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.push(.nop)
        try fixture.push(.write64(address: Fixture.outGVA + 8, value: 0xABCD))
        try fixture.push(.dispatch(kernel: 2, input: Fixture.dataGVA, output: Fixture.outGVA, length: 8192))
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .idle)
        #expect(try fixture.unit.gvmread(.commandRingHead) == 3)
        #expect(try fixture.memory.load64(fixture.host(Fixture.outGPA + 8)) == 0xABCD)
        #expect(fixture.executor.executed == [GVMDispatch(
            kernel: 2,
            input: [GVMHostRange(address: fixture.host(Fixture.dataGPA), length: 8192)],
            output: [GVMHostRange(address: fixture.host(Fixture.outGPA), length: 8192)])])
        #expect(record.timeRun == 100_000)
        #expect(try fixture.unit.gvmread(.timeRun) == 100_000)
    }

    @Test("the ring wraps at its size")
    func wraps() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.unit.gvmwrite(.commandRingHead, 15)
        try fixture.unit.gvmwrite(.commandRingTail, 15)
        try fixture.push(.nop)
        try fixture.push(.nop)
        #expect(try fixture.unit.gvmread(.commandRingTail) == 1)
        _ = try fixture.unit.gvmlaunch()
        #expect(try fixture.unit.gvmread(.commandRingHead) == 1)
    }

    @Test("doorbell exiting: the write exits with the new tail; the hypervisor moves it and resumes")
    func doorbell() throws {
        let fixture = try Fixture()
        var vmcs = Fixture.validVMCS()
        vmcs.executionControls.insert(.doorbellExiting)
        try fixture.load(vmcs)
        try fixture.writeSlot(0, GVMCommand.nop.words)
        #expect(fixture.unit.guestRegisterAccess(.write(0, 1), region: Fixture.region) == .trapped)
        #expect(try fixture.unit.gvmread(.commandRingTail) == 0)
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .doorbell(tail: 1))
        #expect(record.rawReason == 1)
        #expect(record.qualification == 1)
        try fixture.unit.gvmwrite(.commandRingTail, record.qualification)
        #expect(try fixture.unit.gvmresume().exit == .idle)
        #expect(try fixture.unit.gvmread(.commandRingHead) == 1)
    }

    @Test("doorbell exiting off: the tail moves in place, no exit (the ioeventfd path)")
    func doorbellInPlace() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.writeSlot(0, GVMCommand.nop.words)
        #expect(fixture.unit.guestRegisterAccess(.write(0, 1), region: Fixture.region)
                == .completed(readValue: nil))
        #expect(try fixture.unit.gvmread(.commandRingTail) == 1)
        #expect(try fixture.unit.gvmlaunch().exit == .idle)
        #expect(try fixture.unit.gvmread(.commandRingHead) == 1)
    }

    @Test("trapped MMIO write: qualification has offset, size, direction; data in its field")
    func mmioWrite() throws {
        let fixture = try Fixture()
        try fixture.load()
        let bitmap = MMIOBitmap(memory: fixture.memory, address: Fixture.mmioBitmap)
        try bitmap.setTrap(offset: 0x100, write: true, true)
        #expect(fixture.unit.guestRegisterAccess(.write(0x100, 0x1234_5678_9ABC, size: 8),
                                                 region: Fixture.region) == .trapped)
        let record = try fixture.unit.gvmlaunch()
        let qualification = GVMMMIOQualification(offset: 0x100, size: 8, isWrite: true)
        #expect(record.exit == .mmioAccess(qualification, data: 0x1234_5678_9ABC))
        #expect(record.qualification == 0x100_0000_0007)
        #expect(try fixture.unit.gvmread(.exitMMIOData) == 0x1234_5678_9ABC)
    }

    @Test("trapped MMIO read sets the direction bit and carries no data")
    func mmioRead() throws {
        let fixture = try Fixture()
        try fixture.load()
        try MMIOBitmap(memory: fixture.memory, address: Fixture.mmioBitmap)
            .setTrap(offset: 0x204, write: false, true)
        #expect(fixture.unit.guestRegisterAccess(.read(0x204, size: 2), region: Fixture.region) == .trapped)
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .mmioAccess(.init(offset: 0x204, size: 2, isWrite: false), data: nil))
        #expect(record.qualification & 0xF == 0b1001)
    }

    @Test("G-EPT violation on a data write: qualification, addresses; the head stays; fix and resume")
    func geptViolation() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.mapGEPT(Fixture.outGPA, [.read, .execute])
        try fixture.push(.dispatch(kernel: 0, input: Fixture.dataGVA, output: Fixture.outGVA, length: 64))
        let record = try fixture.unit.gvmlaunch()
        let qualification = GEPTViolationQualification(
            access: .write, allowed: [.read, .execute], guestGPUAddressValid: true, translatedAccess: true)
        #expect(record.exit == .geptViolation(qualification, guestPhysical: Fixture.outGPA,
                                              guestGPUAddress: Fixture.outGVA))
        #expect(record.qualification == 0b1_1010_1010)
        #expect(record.commandIndex == 0)
        #expect(record.commandOffset == 16)
        #expect(try fixture.unit.gvmread(.guestPhysicalAddress) == Fixture.outGPA)
        #expect(try fixture.unit.gvmread(.guestGPUAddress) == Fixture.outGVA)
        #expect(try fixture.unit.gvmread(.commandRingHead) == 0)
        try fixture.mapGEPT(Fixture.outGPA, .all)
        #expect(try fixture.unit.gvmresume().exit == .idle)
        #expect(fixture.executor.executed.count == 1)
    }

    @Test("G-EPT violation on a command fetch reports execute access")
    func geptViolationFetch() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.mapGEPT(Fixture.ringGPA, [.read, .write])
        try fixture.push(.nop)
        let record = try fixture.unit.gvmlaunch()
        guard case .geptViolation(let q, let gpa, let gva) = record.exit else {
            Issue.record("expected a G-EPT violation, got \(record.exit)")
            return
        }
        #expect(q.access == .execute)
        #expect(q.allowed == [.read, .write])
        #expect(gpa == Fixture.ringGPA)
        #expect(gva == Fixture.ringGVA)
    }

    @Test("G-EPT violation while reading a guest page-table entry clears qualification bit 8")
    func geptViolationDuringWalk() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.push(.write64(address: Fixture.outGVA, value: 1))
        let slot = try fixture.guestTables.leafSlot(for: Fixture.outGVA)
        let tablePage = slot & ~0xFFF
        try fixture.setGEPTLeaf(tablePage, raw: 0)
        let record = try fixture.unit.gvmlaunch()
        guard case .geptViolation(let q, let gpa, _) = record.exit else {
            Issue.record("expected a G-EPT violation, got \(record.exit)")
            return
        }
        #expect(!q.translatedAccess)
        #expect(q.access == .read)
        #expect(q.allowed.isEmpty)
        #expect(gpa == slot)
    }

    @Test("G-EPT misconfiguration: write without read, reserved bits, bad memory type",
          arguments: [GEPTPermissions.write.rawValue as UInt8, 0xFF, 0x77])
    func geptMisconfiguration(kind: UInt8) throws {
        let fixture = try Fixture()
        try fixture.load()
        let raw: UInt64 = switch kind {
        case 0xFF: GEPTEntry(address: fixture.host(Fixture.outGPA), permissions: .all, memoryType: 6).rawValue | 1 << 52
        case 0x77: GEPTEntry(address: fixture.host(Fixture.outGPA), permissions: .all, memoryType: 2).rawValue
        default: GEPTEntry(address: fixture.host(Fixture.outGPA), permissions: .write, memoryType: 6).rawValue
        }
        try fixture.setGEPTLeaf(Fixture.outGPA, raw: raw)
        try fixture.push(.write64(address: Fixture.outGVA, value: 1))
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .geptMisconfiguration(guestPhysical: Fixture.outGPA,
                                                     guestGPUAddress: Fixture.outGVA))
        #expect(record.rawReason == 4)
    }

    @Test("preemption timer: exits at the first command boundary past the slice, saves the rest")
    func preemption() throws {
        let fixture = try Fixture()
        try fixture.load()
        fixture.executor.cost = 4_000_000   // 4 ms a dispatch, 10 ms slice
        for _ in 0..<5 {
            try fixture.push(.dispatch(kernel: 1, input: Fixture.dataGVA, output: Fixture.outGVA, length: 8))
        }
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .preemptionTimerExpired)
        #expect(record.rawReason == 5)
        #expect(record.timeRun == 12_000_000)   // overran by one dispatch, never cut
        #expect(record.commandIndex == 3)
        #expect(try fixture.unit.gvmread(.commandRingHead) == 3)
        #expect(try fixture.unit.gvmread(.preemptionTimerValue) == 0)

        // The scheduler reloads the slice and resumes 5 ms later.
        fixture.clock.advance(5_000_000)
        try fixture.unit.gvmwrite(.preemptionTimerValue, 10_000)
        let second = try fixture.unit.gvmresume()
        #expect(second.exit == .idle)
        #expect(second.timeRun == 8_000_000)
        #expect(try fixture.unit.gvmread(.preemptionTimerValue) == 2_000)
        #expect(try fixture.unit.gvmread(.cumulativeTimeRun) == 20_000_000)
        #expect(try fixture.unit.gvmread(.cumulativePreemptionTime) == 5_000_000)
    }

    @Test("preemption timer not saved: the field keeps the slice for the next entry")
    func preemptionNotSaved() throws {
        let fixture = try Fixture()
        var vmcs = Fixture.validVMCS()
        vmcs.exitControls.remove(.savePreemptionTimer)
        try fixture.load(vmcs)
        fixture.executor.cost = 11_000_000
        try fixture.push(.dispatch(kernel: 1, input: Fixture.dataGVA, output: Fixture.outGVA, length: 8))
        try fixture.push(.nop)
        #expect(try fixture.unit.gvmlaunch().exit == .preemptionTimerExpired)
        #expect(try fixture.unit.gvmread(.preemptionTimerValue) == 10_000)
    }

    @Test("completion (not posted): exits after the fence with the value; acknowledged vector")
    func completion() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.push(.fence(value: 42, vector: 5))
        try fixture.push(.nop)
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .completion(fence: 42, vector: 5))
        #expect(record.rawReason == 6)
        #expect(record.qualification == 42)
        #expect(try fixture.unit.gvmread(.exitCompletionInformation) == 0x8000_0005)
        #expect(try fixture.unit.gvmread(.commandRingHead) == 1)
        #expect(try fixture.unit.gvmresume().exit == .idle)
    }

    @Test("completion without acknowledge-on-exit leaves the information field invalid")
    func completionNotAcknowledged() throws {
        let fixture = try Fixture()
        var vmcs = Fixture.validVMCS()
        vmcs.exitControls.remove(.acknowledgeCompletionOnExit)
        try fixture.load(vmcs)
        try fixture.push(.fence(value: 7, vector: 3))
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .completion(fence: 7, vector: nil))
        #expect(try fixture.unit.gvmread(.exitCompletionInformation) == 0)
        #expect(record.commandIndex == 0)
    }

    @Test("posted completions: no exit; descriptor updated; one notification for a burst")
    func posted() throws {
        let fixture = try Fixture()
        var vmcs = Fixture.validVMCS()
        vmcs.executionControls.insert(.postedCompletions)
        try fixture.load(vmcs)
        try fixture.push(.fence(value: 1, vector: 3))
        try fixture.push(.fence(value: 2, vector: 9))
        #expect(try fixture.unit.gvmlaunch().exit == .idle)
        let descriptor = PostedCompletionDescriptor(memory: fixture.memory, address: Fixture.descriptor)
        #expect(try descriptor.isPending(vector: 3))
        #expect(try descriptor.isPending(vector: 9))
        #expect(try !descriptor.isPending(vector: 4))
        #expect(try descriptor.lastFence() == 2)
        #expect(try descriptor.outstandingNotification())
        #expect(fixture.sink.notifications == [0xF2])
    }

    struct BadCommand: Sendable, CustomTestStringConvertible {
        let words: [UInt64]
        let cause: GVMInvalidCommandCause
        let offset: UInt32
        var testDescription: String { "\(cause) at +\(offset)" }
    }

    static let badCommands: [BadCommand] = [
        BadCommand(words: [0x09, 0, 0, 0], cause: .unknownOpcode, offset: 0),
        BadCommand(words: [0x100, 0, 0, 0], cause: .reservedBitsSet, offset: 0),
        BadCommand(words: [0x00, 0, 0, 1], cause: .reservedBitsSet, offset: 24),
        BadCommand(words: [0x01, Fixture.outGVA + 4, 1, 0], cause: .misalignedAddress, offset: 8),
        BadCommand(words: [0x03, Fixture.dataGVA, Fixture.outGVA, 0], cause: .lengthOutOfRange, offset: 24),
        BadCommand(words: [0x03, Fixture.dataGVA, Fixture.outGVA, (16 << 20) + 1],
                   cause: .lengthOutOfRange, offset: 24),
        BadCommand(words: [32 << 32 | 0x02, 1, 0, 0], cause: .vectorOutOfRange, offset: 0),
        BadCommand(words: [9 << 32 | 0x03, Fixture.dataGVA, Fixture.outGVA, 8], cause: .unknownKernel, offset: 0),
    ]

    @Test("invalid commands: cause and the offending word's offset", arguments: badCommands)
    func invalidCommand(bad: BadCommand) throws {
        let (words, cause, offset) = (bad.words, bad.cause, bad.offset)
        let fixture = try Fixture()
        try fixture.load()
        try fixture.writeSlot(0, words)
        try fixture.unit.gvmwrite(.commandRingTail, 1)
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .invalidCommand(cause))
        #expect(record.rawReason == 7)
        #expect(record.qualification == UInt64(cause.rawValue))
        #expect(record.commandOffset == offset)
        #expect(try fixture.unit.gvmread(.exitCommandOffset) == UInt64(offset))
        #expect(try fixture.unit.gvmread(.commandRingHead) == 0)
    }

    @Test("invalid command: nested paging off and an address host memory lacks")
    func unbacked() throws {
        let fixture = try Fixture()
        var vmcs = Fixture.validVMCS()
        vmcs.executionControls.remove(.nestedPaging)
        // Without the G-EPT, guest-physical is host: point the guest tables at host copies.
        vmcs[.gpuPageTableRoot] = Fixture.guestRAMBase + fixture.guestRoot
        try fixture.load(vmcs)
        let root = Fixture.guestRAMBase + 0x20_0000
        let tables = FourLevelTableBuilder(memory: fixture.memory, root: root, format: .guestGPU,
                                           allocateTable: HostAllocator(next: root + 4096).allocate)
        try tables.setLeaf(for: Fixture.ringGVA, to: GuestGPUPageTableEntry(
            address: fixture.host(Fixture.ringGPA), writable: false, executable: true).rawValue)
        try tables.setLeaf(for: Fixture.outGVA, to: GuestGPUPageTableEntry(
            address: 1 << 40, writable: true, executable: false).rawValue)
        try fixture.unit.gvmwrite(.gpuPageTableRoot, root)
        try fixture.push(.write64(address: Fixture.outGVA, value: 1))
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .invalidCommand(.unbackedAddress))
        #expect(record.commandOffset == 8)
    }

    @Test("guest GPU page faults: not present, write to read-only, fetch from no-execute")
    func guestPageFaults() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.unmapGuest(Fixture.outGVA)
        try fixture.push(.write64(address: Fixture.outGVA, value: 1))
        var record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .guestPageFault(.init(present: false, access: .write),
                                               guestGPUAddress: Fixture.outGVA))
        #expect(record.rawReason == 8)
        #expect(record.qualification == 0b10)
        #expect(try fixture.unit.gvmread(.guestGPUAddress) == Fixture.outGVA)

        try fixture.mapGuest(Fixture.outGVA, to: Fixture.outGPA, writable: false)
        record = try fixture.unit.gvmresume()
        #expect(record.exit == .guestPageFault(.init(present: true, access: .write),
                                               guestGPUAddress: Fixture.outGVA))
        #expect(record.qualification == 0b11)

        try fixture.mapGuest(Fixture.ringGVA, to: Fixture.ringGPA, writable: false, executable: false)
        record = try fixture.unit.gvmresume()
        #expect(record.exit == .guestPageFault(.init(present: true, access: .execute),
                                               guestGPUAddress: Fixture.ringGVA))
        #expect(record.qualification == 0b1_0001)
    }

    @Test("a guest GPU address at or above 2^48 is a not-present page fault")
    func nonCanonical() throws {
        let fixture = try Fixture()
        try fixture.load()
        try fixture.push(.write64(address: 1 << 48, value: 1))
        #expect(try fixture.unit.gvmlaunch().exit
                == .guestPageFault(.init(present: false, access: .write), guestGPUAddress: 1 << 48))
    }

    @Test("event injection is delivered once and its valid bit cleared on exit")
    func injection() throws {
        let fixture = try Fixture()
        var vmcs = Fixture.validVMCS()
        vmcs.eventInjection = GVMEventInjection(vector: 4, type: .faultNotification)
        try fixture.load(vmcs)
        _ = try fixture.unit.gvmlaunch()
        #expect(fixture.sink.delivered == [GVMEventInjection(vector: 4, type: .faultNotification)])
        #expect(try fixture.unit.gvmread(.entryEventInjection) == 0x104)
        _ = try fixture.unit.gvmresume()
        #expect(fixture.sink.delivered.count == 1)
    }

    @Test("every exit reason has a number and the table is closed")
    func reasons() {
        #expect(GVMExitReason.allCases.map(\.rawValue) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 33])
    }
}
