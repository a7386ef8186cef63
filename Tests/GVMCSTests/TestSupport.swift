@testable import GVMCS

/// A clock that moves only when told: the preemption timer and time fields become exact.
final class ManualClock: GVMClock {
    var time: UInt64 = 1_000_000
    func now() -> UInt64 { time }
    func advance(_ nanoseconds: UInt64) { time += nanoseconds }
}

/// Records what the unit signalled.
final class RecordingSink: GVMEventSink {
    var delivered: [GVMEventInjection] = []
    var notifications: [UInt16] = []
    func deliver(_ event: GVMEventInjection) { delivered.append(event) }
    func notifyPostedCompletion(vector: UInt16) { notifications.append(vector) }
}

/// Runs a dispatch by advancing the clock by `cost` ns; knows kernels below `kernelCount`.
final class FakeExecutor: GVMCommandExecutor {
    let clock: ManualClock
    var cost: UInt64 = 100_000
    var kernelCount: UInt32 = 4
    var executed: [GVMDispatch] = []
    init(clock: ManualClock) { self.clock = clock }
    func execute(_ dispatch: GVMDispatch) -> GVMExecutionOutcome {
        guard dispatch.kernel < kernelCount else { return .unknownKernel }
        executed.append(dispatch)
        clock.advance(cost)
        return .completed
    }

    /// A stream "decodes" when its first word is `validStreamMagic`; it then names
    /// `streamBuffers` (GPU address, length, access), which are translated and recorded.
    static let validStreamMagic: UInt64 = 0x4D56_4743
    var streamBuffers: [(UInt64, UInt64, GEPTPermissions)] = []
    var streams: [(GVMStream, [[GVMHostRange]])] = []
    var streamMemory: (any GPUMemory)?
    func execute(_ stream: GVMStream, translator: GVMBufferTranslator) -> GVMExecutionOutcome {
        guard let first = stream.ranges.first,
              (try? streamMemory?.load64(first.address)) == Self.validStreamMagic else { return .invalidWork }
        var translated: [[GVMHostRange]] = []
        for (address, length, access) in streamBuffers {
            do { translated.append(try translator.ranges(address, length: length, access: access)) } catch {
                return .fault(error)
            }
        }
        streams.append((stream, translated))
        clock.advance(cost)
        return .completed
    }
}

/// Guest-physical addresses seen through the identity-plus-offset G-EPT of the fixture: lets
/// the guest page-table builder write guest tables the way a guest driver would.
final class GuestPhysicalView: GPUMemory {
    let host: any GPUMemory
    let base: UInt64
    init(host: any GPUMemory, base: UInt64) { self.host = host; self.base = base }
    func load64(_ address: UInt64) throws(GPUMemoryFault) -> UInt64 { try host.load64(base + address) }
    func store64(_ address: UInt64, _ value: UInt64) throws(GPUMemoryFault) {
        try host.store64(base + address, value)
    }
}

/// A unit with one G-VMCS region, a G-EPT mapping guest-physical [0, 4 MiB) to host
/// [16 MiB, 20 MiB), guest GPU page tables mapping the ring and two data buffers, and a
/// G-VMCS that passes every entry check.
final class Fixture {
    static let region: UInt64 = 0x1000
    static let otherRegion: UInt64 = 0x2000
    static let guestRAMBase: UInt64 = 16 << 20
    static let guestRAMSize: UInt64 = 4 << 20
    static let mmioBitmap: UInt64 = 0x3000
    static let descriptor: UInt64 = 0x4000
    static let hostSaveArea: UInt64 = 0x5000
    static let ringGVA: UInt64 = 0x4000_0000
    static let ringGPA: UInt64 = 0x1_0000
    static let dataGVA: UInt64 = 0x5000_0000
    static let dataGPA: UInt64 = 0x2_0000
    static let outGVA: UInt64 = 0x6000_0000
    static let outGPA: UInt64 = 0x3_0000
    static let ringSize: UInt32 = 16

    let capabilities: GVMCapabilities
    let memory = SparseGPUMemory(size: 64 << 20)
    let clock = ManualClock()
    let sink = RecordingSink()
    let executor: FakeExecutor
    let unit: GPUVirtualizationUnit
    let geptRoot: UInt64
    let guestRoot: UInt64
    let gept: FourLevelTableBuilder
    let guestTables: FourLevelTableBuilder
    let guestView: GuestPhysicalView

    init(capabilities: GVMCapabilities = GVMCapabilities()) throws {
        self.capabilities = capabilities
        executor = FakeExecutor(clock: clock)
        unit = GPUVirtualizationUnit(capabilities: capabilities, memory: memory, clock: clock,
                                     executor: executor, events: sink)
        guestView = GuestPhysicalView(host: memory, base: Self.guestRAMBase)
        geptRoot = 0x10_0000
        let hostAllocator = HostAllocator(next: geptRoot + 4096)
        gept = FourLevelTableBuilder(memory: memory, root: geptRoot, format: .gept,
                                     allocateTable: hostAllocator.allocate)
        let guestAllocator = HostAllocator(next: 0x10_1000)
        guestRoot = 0x10_0000
        guestTables = FourLevelTableBuilder(memory: guestView, root: guestRoot, format: .guestGPU,
                                            allocateTable: guestAllocator.allocate)
        for page in stride(from: UInt64(0), to: Self.guestRAMSize, by: 4096) {
            try mapGEPT(page, .all)
        }
        try mapGuest(Self.ringGVA, to: Self.ringGPA, writable: false, executable: true)
        for page in 0..<UInt64(4) {
            try mapGuest(Self.dataGVA + page * 4096, to: Self.dataGPA + page * 4096)
            try mapGuest(Self.outGVA + page * 4096, to: Self.outGPA + page * 4096)
        }
        try memory.store64(Self.region, UInt64(capabilities.revisionIdentifier))
        try memory.store64(Self.otherRegion, UInt64(capabilities.revisionIdentifier))
    }

    func mapGEPT(_ gpa: UInt64, _ permissions: GEPTPermissions, memoryType: UInt8 = 6) throws {
        try gept.setLeaf(for: gpa, to: GEPTEntry(address: Self.guestRAMBase + gpa,
                                                 permissions: permissions,
                                                 memoryType: memoryType).rawValue)
    }

    func setGEPTLeaf(_ gpa: UInt64, raw: UInt64) throws {
        try gept.setLeaf(for: gpa, to: raw)
    }

    func mapGuest(_ gva: UInt64, to gpa: UInt64, writable: Bool = true, executable: Bool = false) throws {
        try guestTables.setLeaf(for: gva, to: GuestGPUPageTableEntry(
            address: gpa, writable: writable, executable: executable).rawValue)
    }

    func unmapGuest(_ gva: UInt64) throws { try guestTables.setLeaf(for: gva, to: 0) }

    /// Host address of a guest-physical address (through the fixture's G-EPT).
    func host(_ gpa: UInt64) -> UInt64 { Self.guestRAMBase + gpa }

    /// The G-VMCS every entry check accepts: nested paging, preemption timer (10 ms),
    /// MMIO bitmap, posted completions off, doorbell exiting off.
    static func validVMCS(capabilities: GVMCapabilities = GVMCapabilities(),
                          geptRoot: UInt64 = 0x10_0000, guestRoot: UInt64 = 0x10_0000) -> GVMControlStructure {
        var vmcs = GVMControlStructure()
        vmcs.executionControls = [.nestedPaging, .activatePreemptionTimer, .useMMIOBitmap]
        vmcs.exitControls = [.savePreemptionTimer, .acknowledgeCompletionOnExit]
        vmcs.geptPointer = GEPTPointer(root: geptRoot)
        vmcs[.mmioBitmapAddress] = mmioBitmap
        vmcs[.postedCompletionDescriptorAddress] = descriptor
        vmcs[.postedCompletionNotificationVector] = 0xF2
        vmcs[.memoryQuota] = 1 << 30
        vmcs[.hostContextID] = 1
        vmcs[.hostContextSaveAreaAddress] = hostSaveArea
        vmcs[.hostGPUPageTableRoot] = 0x8000
        vmcs[.schedulerClientID] = 3
        vmcs[.guestContextID] = 7
        vmcs[.commandRingBase] = ringGVA
        vmcs[.commandRingSize] = UInt64(ringSize)
        vmcs[.gpuPageTableRoot] = guestRoot
        vmcs[.preemptionTimerValue] = 10_000
        vmcs[.contextSaveAreaAddress] = 0x9000
        return vmcs
    }

    /// Clears and loads the region, then writes every writable field of `vmcs` with gvmwrite.
    func load(_ vmcs: GVMControlStructure? = nil, region: UInt64 = Fixture.region) throws {
        let vmcs = vmcs ?? Self.validVMCS(capabilities: capabilities, geptRoot: geptRoot,
                                          guestRoot: guestRoot)
        try unit.gvmclear(region)
        try unit.gvmptrld(region)
        for field in GVMCSField.allCases where !field.isReadOnly {
            try unit.gvmwrite(field, vmcs[field])
        }
    }

    /// Writes `command` at the ring's tail and moves the tail (as the guest does before its
    /// doorbell), without going through the doorbell.
    func push(_ command: GVMCommand) throws {
        let tail = UInt32(try unit.gvmread(.commandRingTail))
        try writeSlot(tail, command.words)
        try unit.gvmwrite(.commandRingTail, UInt64((tail + 1) % Self.ringSize))
    }

    func writeSlot(_ slot: UInt32, _ words: [UInt64]) throws {
        for (index, word) in words.enumerated() {
            try guestView.store64(Self.ringGPA + UInt64(slot) * 32 + UInt64(index) * 8, word)
        }
    }
}

/// Bump allocator of 4 KiB tables (memory starts zeroed).
final class HostAllocator: @unchecked Sendable {
    private var next: UInt64
    init(next: UInt64) { self.next = next }
    func allocate() -> UInt64 {
        defer { next += 4096 }
        return next
    }
}
