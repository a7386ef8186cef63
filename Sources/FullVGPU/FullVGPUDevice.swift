import GPUHost
import GVMCS
import Hypervisor
import Logging
import Synchronization
import VGPUCore

/// The full-vGPU: a PCI GPU whose virtualisation support is the G-VMCS model (docs/fullvgpu.md).
///
/// Two threads touch it. The vCPU thread's BAR accesses are answered from the register file at
/// once and posted to a mailbox (PCIe writes are posted too); the device thread — the
/// hypervisor of this vGPU — owns the `GPUVirtualizationUnit`: it hands the mailbox's accesses
/// to the unit (which traps them or completes them, per the G-VMCS's controls), programs and
/// launches the G-VMCS on ENABLE, and runs the VMX-style loop, `gvmresume` and handle each exit,
/// until the ring is idle or the vGPU faults. Doorbells reach it by ioeventfd when doorbell
/// exiting is off; completions reach the guest through MSI-X irqfds, signalled by the unit
/// itself when they are posted.
public final class FullVGPUDevice: HotpluggablePCIDevice, VGPU, @unchecked Sendable {
    public static let vendorID: UInt16 = 0x1af4
    public static let deviceID: UInt16 = 0x10f0
    static let registerBAR = 0
    static let msixBAR = 2
    static let msixPendingOffset: UInt64 = 0x800

    public let configuration: PCIConfiguration
    public let name: String
    public let profile: VGPUProfile
    public let controls: FullVGPUControls
    public var kind: String { "full" }

    private let memory: HostMemory
    private let vm: KVMVirtualMachine
    private let msix: MSIXTable
    private let scheduler: GPUScheduler
    private let client: ClientID
    private let logger: Logger
    private let doorbell: EventFD
    private let kick: EventFD
    private let registers = Mutex(FullVGPURegisterFile())
    private let mailbox = Mutex(Mailbox())
    private let published = Mutex((counters: FullVGPUCounters(), statistics: VGPUStatistics()))
    private let doorbellAddress = Mutex<UInt64?>(nil)
    private var worker: DeviceWorker?
    /// With the MMIO bitmap on, the first register page is also guest memory (a read-only KVM
    /// slot over the BAR): the reads the bitmap does not trap cost no exit, as they would be
    /// served by a virtual function's own registers; writes still exit to the handler.
    private let registerPage: RegisterPage?

    // Device thread only.
    private let unit: GPUVirtualizationUnit
    private let executor: StreamExecutor
    private let region: UInt64
    private let geptRoot: UInt64
    private let bitmap: UInt64
    private let hostSaveArea: UInt64
    private let hostPageTableRoot: UInt64
    private let sliceMicroseconds: UInt64
    private var counters = FullVGPUCounters()

    private struct Mailbox {
        var accesses: [GVMRegisterAccess] = []
        var enable = false
        var reset = false
        var stopped = false
    }

    /// A vGPU of `profile` on `scheduler` (one scheduler client) in the VM `host` describes.
    public init(host: PCIDeviceHost, scheduler: GPUScheduler, profile: VGPUProfile, controls: FullVGPUControls,
                name: String, logger: Logger = Logger(label: "malvvm.fullvgpu")) throws(HypervisorError) {
        self.name = name
        self.profile = profile
        self.controls = controls
        self.scheduler = scheduler
        self.logger = logger
        vm = host.vm
        msix = try host.makeMSIXTable(vectorCount: FullVGPUInterrupt.vectorCount)
        do {
            doorbell = try EventFD()
            kick = try EventFD()
        } catch { throw .system(error) }
        registerPage = controls.mmioBitmap ? RegisterPage(vm: host.vm, slot: host.memorySlot) : nil

        configuration = PCIConfiguration(
            identity: PCIIdentity(vendorID: Self.vendorID, deviceID: Self.deviceID, classCode: 0x03, subclass: 0x02,
                                  revision: 1, subsystemVendorID: Self.vendorID, subsystemID: Self.deviceID),
            bars: [PCIBarDefinition(index: Self.registerBAR, size: UInt64(GVMRegisterAccess.barSize), kind: .memory64),
                   PCIBarDefinition(index: Self.msixBAR, size: 0x1000, kind: .memory64)])
        msix.addCapability(to: configuration, tableBAR: Self.msixBAR, tableOffset: 0, pendingBAR: Self.msixBAR,
                           pendingOffset: UInt32(Self.msixPendingOffset))

        // Private pages: the G-VMCS region, the MMIO bitmap, host state, and the G-EPT (one
        // level-1 table per 2 MiB of RAM, plus the upper levels).
        let ramPages = host.memory.regions.reduce(0) { $0 + Int($1.size / 4096) }
        let tablePages = ramPages / 512 + host.memory.regions.count * 4 + 16
        let hostMemory = HostMemory(guest: host.memory, privateBytes: (tablePages + 8) * 4096)
        memory = hostMemory
        func page() throws(HypervisorError) -> UInt64 {
            guard let page = hostMemory.allocatePrivatePage() else { throw .configuration("full-vGPU private memory exhausted") }
            return page
        }
        region = try page()
        bitmap = try page()
        hostSaveArea = try page()
        hostPageTableRoot = try page()
        geptRoot = try page()

        let slice = scheduler.configuration.timeSlice(forClients: 1) / 1000
        sliceMicroseconds = min(max(slice, 1000), 30_000)
        do throws(SchedulerError) {
            client = try scheduler.addClient(profile.clientConfiguration(name: "\(name)/full"))
        } catch {
            throw .configuration("\(name): \(error)")
        }
        executor = StreamExecutor(scheduler: scheduler, client: client, memoryLimit: UInt64(max(profile.memoryBytes, 0)),
                                  memory: hostMemory, logger: logger)
        let capabilities = GVMCapabilities(commandRingSizeRange: 2...FullVGPURegister.maximumRingSize,
                                           completionVectorCount: FullVGPUInterrupt.vectorCount,
                                           schedulerClientCount: .max)
        let events = UnitEvents()
        unit = GPUVirtualizationUnit(capabilities: capabilities, memory: hostMemory, clock: MonotonicClock(),
                                     executor: executor, events: events)
        events.device = self
        do {
            try buildPrivateStructures(capabilities: capabilities)
        } catch {
            try? scheduler.removeClient(client)
            throw .configuration("\(name): cannot build the G-VMCS structures: \(error)")
        }
        do {
            worker = try DeviceWorker(name: name, doorbells: [doorbell, kick]) { [unowned self] source in
                serve(doorbellRung: source == 0)
            }
        } catch {
            try? scheduler.removeClient(client)
            throw .system(error)
        }
    }

    deinit { stop() }

    /// The vGPU's end (`VGPU.stop`, and `HotpluggablePCIDevice.stop` once it is off the bus):
    /// stops the device thread, takes the doorbell off KVM and gives the scheduler client (its
    /// queued work and GPU memory) back. Idempotent.
    public func stop() {
        let first = mailbox.withLock { box -> Bool in
            defer { box.stopped = true }
            return !box.stopped
        }
        guard first else { return }
        worker?.stop()
        moveDoorbell(to: nil)
        _ = registerPage?.map(at: nil)
        executor.releaseStaging()
        try? scheduler.removeClient(client)
    }

    // MARK: VGPU

    public var statistics: VGPUStatistics { published.withLock { $0.statistics } }
    public var fullCounters: FullVGPUCounters { published.withLock { $0.counters } }
    public var mechanismCounters: (any Encodable & Sendable)? { fullCounters }

    // MARK: PCIDevice

    public func barMapped(_ index: Int, at address: UInt64?) {
        guard index == Self.registerBAR else { return }
        if !controls.doorbellExiting { moveDoorbell(to: address) }
        if let registerPage {
            refreshRegisterPage(all: true)
            if let error = registerPage.map(at: address) {
                logger.warning("full-vGPU register page not mapped (reads will exit): \(error)", metadata: ["device": "\(name)"])
            }
        }
    }

    public func configurationWritten(offset: Int, size: Int) {
        msix.configurationWritten(offset: offset, size: size)
    }

    public func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard index == Self.registerBAR else {
            if offset < Self.msixPendingOffset {
                msix.readTable(offset: offset, data: data)
            } else {
                msix.readPendingBits(offset: offset - Self.msixPendingOffset, data: data)
            }
            return
        }
        // The 32-bit registers the access touches, from one snapshot of the register file.
        let start = UInt32(offset), size = data.count
        let fence = completedFence
        let words = registers.withLock { r in
            stride(from: start & ~3, through: (start + UInt32(max(size, 1)) - 1) & ~3, by: 4).map {
                Self.registerValue($0, r, fence: fence)
            }
        }
        for i in data.indices {
            let at = Int(start & 3) + i
            data[i] = UInt8(truncatingIfNeeded: words[at / 4] >> (8 * UInt32(at % 4)))
        }
        post(.read(start, size: size))
    }

    public func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {
        guard index == Self.registerBAR else {
            if offset < Self.msixPendingOffset { msix.writeTable(offset: offset, data: data) }
            return
        }
        let value = data.littleEndianValue
        if data.count == 8, offset & 7 == 0 {
            writeRegister(UInt32(offset), UInt32(truncatingIfNeeded: value))
            writeRegister(UInt32(offset) + 4, UInt32(truncatingIfNeeded: value >> 32))
        } else if data.count == 4, offset & 3 == 0 {
            writeRegister(UInt32(offset), UInt32(truncatingIfNeeded: value))
        }
        refreshRegisterPage(all: true)
        post(.write(UInt32(offset), value, size: data.count))
    }

    // MARK: vCPU side

    /// Rewrites the register page from the register file, after anything the guest can read
    /// changed: every register after a guest write (setup registers), otherwise only those the
    /// device moves (head, tail, interrupt and fault state, the fence), as this runs at every exit.
    private func refreshRegisterPage(all: Bool = false) {
        guard let registerPage else { return }
        let fence = completedFence
        registers.withLock { r in
            // STATUS last: the fault registers are valid once it says faulted.
            for register in all ? FullVGPURegister.allCases : FullVGPURegister.deviceWritten where register != .status {
                registerPage.store(Self.registerValue(register.rawValue, r, fence: fence), at: register.rawValue)
            }
            registerPage.store(Self.registerValue(FullVGPURegister.status.rawValue, r, fence: fence),
                               at: FullVGPURegister.status.rawValue)
        }
    }

    private static func registerValue(_ offset: UInt32, _ r: FullVGPURegisterFile, fence: UInt64) -> UInt32 {
        guard let register = FullVGPURegister(rawValue: offset) else { return 0 }
        func low(_ v: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: v) }
        func high(_ v: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: v >> 32) }
        switch register {
        case .doorbell: return 0
        case .ringHead: return r.head
        case .ringTail: return r.tail
        case .status: return r.controlPending ? 0 : (r.running ? 1 : 0) | (r.faulted ? 2 : 0)
        case .id: return FullVGPURegister.identifier
        case .version: return FullVGPURegister.deviceVersion
        case .ringSizeMaximum: return FullVGPURegister.maximumRingSize
        case .opcodeMask: return ComputeStream.Opcode.allCases.reduce(0) { $0 | 1 << UInt32($1.rawValue) }
        case .ringBase: return low(r.ringBase)
        case .ringBaseHigh: return high(r.ringBase)
        case .ringSize: return r.ringSize
        case .pageTableRoot: return low(r.pageTableRoot)
        case .pageTableRootHigh: return high(r.pageTableRoot)
        case .completionPage: return low(r.completionPage)
        case .completionPageHigh: return high(r.completionPage)
        case .tailShadow: return low(r.tailShadow)
        case .tailShadowHigh: return high(r.tailShadow)
        case .control: return r.enabled ? FullVGPUControl.enable : 0
        case .interruptStatus: return r.interruptStatus
        case .faultReason: return r.faultReason
        case .faultQualification: return r.faultQualification
        case .faultAddress: return low(r.faultAddress)
        case .faultAddressHigh: return high(r.faultAddress)
        case .faultCommand: return r.faultCommand
        case .faultOffset: return r.faultOffset
        case .completedFence: return low(fence)
        case .completedFenceHigh: return high(fence)
        }
    }

    /// The fence at byte 40 of the completion page: where both completion paths leave it.
    private var completedFence: UInt64 {
        let page = registers.withLock { $0.running || $0.faulted ? $0.completionPage : 0 }
        guard page != 0, let address = Self.fenceAddress(page) else { return 0 }
        return (try? memory.guest.read(UInt64.self, at: address)) ?? 0
    }

    /// The fence's address in the completion page the guest wrote, which may be anything
    /// (near 2^64 too: an overflowing sum here crashed the VMM, found by fuzzing).
    static func fenceAddress(_ page: UInt64) -> GuestAddress? {
        let (address, overflow) = page.addingReportingOverflow(PostedCompletionDescriptor.fenceOffset)
        return overflow ? nil : GuestAddress(address)
    }

    private func writeRegister(_ offset: UInt32, _ value: UInt32) {
        guard let register = FullVGPURegister(rawValue: offset) else { return }
        func setLow(_ v: inout UInt64) { v = v & 0xFFFF_FFFF_0000_0000 | UInt64(value) }
        func setHigh(_ v: inout UInt64) { v = v & 0xFFFF_FFFF | UInt64(value) << 32 }
        registers.withLock { r in
            switch register {
            case .ringBase: setLow(&r.ringBase)
            case .ringBaseHigh: setHigh(&r.ringBase)
            case .ringSize: r.ringSize = value
            case .pageTableRoot: setLow(&r.pageTableRoot)
            case .pageTableRootHigh: setHigh(&r.pageTableRoot)
            case .completionPage: setLow(&r.completionPage)
            case .completionPageHigh: setHigh(&r.completionPage)
            case .tailShadow: setLow(&r.tailShadow)
            case .tailShadowHigh: setHigh(&r.tailShadow)
            case .interruptStatus: r.interruptStatus &= ~value
            case .control:
                let reset = value & FullVGPUControl.reset != 0
                let enable = !reset && value & FullVGPUControl.enable != 0 && !r.enabled
                if reset { r.enabled = false }
                if enable { r.enabled = true }
                if reset || enable {
                    r.controlPending = true
                    // Inside the register lock, so the device thread sees the flag and the request together.
                    mailbox.withLock { box in
                        if reset { box.reset = true; box.enable = false }
                        if enable { box.enable = true }
                    }
                }
            default: break   // read-only; the doorbell is the device thread's
            }
        }
    }

    /// Hands an access to the device thread; accesses of sizes the bus never makes are dropped.
    private func post(_ access: GVMRegisterAccess) {
        guard [1, 2, 4, 8].contains(access.size) else { return }
        mailbox.withLock { box in
            // One vCPU cannot have many outstanding; a flood means the device thread is busy.
            if box.accesses.count < 256 { box.accesses.append(access) }
        }
        kick.signal()
    }

    private func moveDoorbell(to base: UInt64?) {
        doorbellAddress.withLock { current in
            guard current != base else { return }
            if let old = current { try? vm.unregisterIOEventFD(doorbell, mmioAddress: old, length: 4) }
            current = nil
            if let base {
                do {
                    try vm.registerIOEventFD(doorbell, mmioAddress: base + UInt64(FullVGPURegister.doorbell.rawValue), length: 4)
                    current = base
                } catch {
                    logger.warning("full-vGPU doorbell ioeventfd not registered: \(error)", metadata: ["device": "\(name)"])
                }
            }
        }
    }

    // MARK: Device thread: the hypervisor

    private func serve(doorbellRung: Bool) {
        let (accesses, enable, reset) = mailbox.withLock { box in
            defer { box.accesses.removeAll(keepingCapacity: true); box.enable = false; box.reset = false }
            return (box.accesses, box.enable, box.reset)
        }
        counters.registerExits += UInt64(accesses.count)
        if reset { resetVGPU() }
        if enable { enableVGPU() }
        if reset || enable {
            // Any CONTROL write after the mailbox was taken leaves its own request pending.
            registers.withLock { r in
                if !mailbox.withLock({ $0.reset || $0.enable }) { r.controlPending = false }
            }
        }
        let running = registers.withLock { $0.running && !$0.faulted }
        var pending = accesses
        if doorbellRung {
            if running {
                counters.doorbellKicks += 1
                // The ioeventfd carries no data: the new tail is in the guest's tail shadow.
                let shadow = registers.withLock { $0.tailShadow }
                guard let tail = try? memory.guest.read(UInt32.self, at: GuestAddress(shadow)) else {
                    deviceFault(.badTailShadow, address: shadow)
                    publish()
                    return
                }
                pending.append(.write(FullVGPURegister.doorbell.rawValue, UInt64(tail)))
            }
        }
        for access in pending {
            switch unit.guestRegisterAccess(access, region: region) {
            case .trapped: counters.trappedAccesses += 1
            case .completed: counters.directAccesses += 1
            case .rejected: break
            }
        }
        if running { runGuest(launch: false) }
        refreshRegisterPage()
        publish()
    }

    /// ENABLE: checks what the model cannot, programs the G-VMCS from the registers, launches.
    private func enableVGPU() {
        let r = registers.withLock { r -> FullVGPURegisterFile in
            r.clearFault()
            r.head = 0
            r.tail = 0
            return r
        }
        guard r.completionPage & 0xFFF == 0, r.completionPage != 0,
              memory.guest.contains(GuestAddress(r.completionPage), length: 4096) else {
            return deviceFault(.badCompletionPage, address: r.completionPage)
        }
        guard r.tailShadow & 3 == 0, r.tailShadow != 0, memory.guest.contains(GuestAddress(r.tailShadow), length: 4) else {
            return deviceFault(.badTailShadow, address: r.tailShadow)
        }
        do throws(GVMInstructionFailure) {
            try unit.gvmclear(region)
            try unit.gvmptrld(region)
            let fields: [(GVMCSField, UInt64)] = [
                (.gpuExecutionControls, UInt64(controls.executionControls.rawValue)),
                (.exitControls, UInt64(GVMExitControls.acknowledgeCompletionOnExit.rawValue)),
                (.entryControls, 0),
                (.entryEventInjection, 0),
                (.geptPointer, GEPTPointer(root: geptRoot).rawValue),
                (.mmioBitmapAddress, bitmap),
                (.postedCompletionDescriptorAddress, r.completionPage),
                (.postedCompletionNotificationVector, UInt64(FullVGPUInterrupt.completionVector)),
                (.memoryQuota, UInt64(profile.memoryBytes)),
                (.hostContextID, 1),
                (.hostContextSaveAreaAddress, hostSaveArea),
                (.hostGPUPageTableRoot, hostPageTableRoot),
                (.schedulerClientID, UInt64(client.rawValue)),
                (.guestContextID, 1),
                (.commandRingBase, r.ringBase),
                (.commandRingSize, UInt64(r.ringSize)),
                (.commandRingHead, 0),
                (.commandRingTail, 0),
                (.gpuPageTableRoot, r.pageTableRoot),
                (.preemptionTimerValue, sliceMicroseconds),
            ]
            for (field, value) in fields { try unit.gvmwrite(field, value) }
        } catch {
            // The hypervisor's own fields: a failure here is our bug, reported as a fault.
            logger.error("full-vGPU G-VMCS setup failed: \(error)", metadata: ["device": "\(name)"])
            return deviceFault(.gpuError, address: 0)
        }
        runGuest(launch: true)
    }

    private func resetVGPU() {
        try? unit.gvmclear(region)
        registers.withLock { r in
            r.clearFault()
            r.running = false
            r.head = 0
            r.tail = 0
        }
    }

    /// The VMX loop: enter, handle the exit, resume, until the ring is idle or the vGPU faults.
    private func runGuest(launch: Bool) {
        var launching = launch
        while true {
            let record: GVMExitRecord
            do throws(GVMInstructionFailure) {
                counters.entries += 1
                record = launching ? try unit.gvmlaunch() : try unit.gvmresume()
            } catch {
                // VMfailValid 7/8: controls or host state the hypervisor wrote. Its fault, but
                // the guest learns the vGPU stopped, and the VMM keeps running.
                if case let .failValid(_, check) = error {
                    fault(reason: UInt32(GVMExitReason.entryFailure.rawValue) | 0x8000_0000,
                          qualification: UInt32(check.map { UInt32($0.rawValue) } ?? 0), record: nil)
                } else {
                    deviceFault(.gpuError, address: 0)
                }
                logger.error("full-vGPU entry failed: \(error)", metadata: ["device": "\(name)"])
                return
            }
            launching = false
            logger.trace("full-vGPU exit", metadata: ["device": "\(name)", "exit": "\(record.exit)",
                                                      "command": "\(record.commandIndex)"])
            counters.exits[FullVGPUCounters.key(record.exit.reason), default: 0] += 1
            let head = UInt32(truncatingIfNeeded: (try? unit.gvmread(.commandRingHead)) ?? 0)
            let tail = UInt32(truncatingIfNeeded: (try? unit.gvmread(.commandRingTail)) ?? 0)
            registers.withLock { r in
                r.head = head
                r.tail = tail
                r.running = unit.isLaunched(region) == true
            }
            refreshRegisterPage()
            switch record.exit {
            case let .doorbell(newTail):
                _ = try? unit.gvmwrite(.commandRingTail, UInt64(newTail))
            case .mmioAccess:
                break   // the register file already holds the write; the exit is its cost
            case .preemptionTimerExpired:
                // The slice is over: the GPU scheduler has already arbitrated this batch; give
                // the next entry a full slice again.
                _ = try? unit.gvmwrite(.preemptionTimerValue, sliceMicroseconds)
            case let .completion(fence, vector):
                completeFence(fence, vector: Int(vector ?? UInt8(FullVGPUInterrupt.completionVector)))
            case .idle:
                return
            case .geptViolation, .geptMisconfiguration, .invalidCommand, .guestPageFault, .entryFailure:
                if case .invalidCommand(.invalidWork) = record.exit, case .device = executor.lastFailure {
                    deviceFault(.gpuError, address: 0)
                } else {
                    fault(reason: record.rawReason, qualification: UInt32(truncatingIfNeeded: record.qualification),
                          record: record)
                }
                return
            }
        }
    }

    /// Posted completions off: the hypervisor does what the unit would have, at the cost of an exit.
    private func completeFence(_ fence: UInt64, vector: Int) {
        let page = registers.withLock { $0.completionPage }
        if let address = Self.fenceAddress(page) { try? memory.guest.write(fence, at: address) }
        counters.hypervisorCompletions += 1
        raise(FullVGPUInterrupt.completion, vector: vector)
    }

    fileprivate func postedCompletion(vector: Int) {
        counters.postedNotifications += 1
        raise(FullVGPUInterrupt.completion, vector: vector)
    }

    private func raise(_ status: UInt32, vector: Int) {
        registers.withLock { $0.interruptStatus |= status }
        refreshRegisterPage()
        msix.signal(vector: vector)
    }

    private func fault(reason: UInt32, qualification: UInt32, record: GVMExitRecord?) {
        let address = (try? unit.gvmread(.guestGPUAddress)) ?? 0
        registers.withLock { r in
            r.faulted = true
            r.faultReason = reason
            r.faultQualification = qualification
            r.faultAddress = record == nil ? 0 : address
            r.faultCommand = record?.commandIndex ?? 0
            r.faultOffset = record?.commandOffset ?? 0
        }
        counters.faults += 1
        if case let .invalid(reason) = executor.lastFailure, case .invalidCommand(.invalidWork)? = record?.exit {
            logger.info("full-vGPU stream refused: \(reason)", metadata: ["device": "\(name)"])
        }
        raise(FullVGPUInterrupt.fault, vector: FullVGPUInterrupt.faultVector)
    }

    private func deviceFault(_ fault: FullVGPUDeviceFault, address: UInt64) {
        registers.withLock { r in
            r.faulted = true
            r.faultReason = fault.rawValue
            r.faultQualification = 0
            r.faultAddress = address
            r.faultCommand = r.head
            r.faultOffset = 0
        }
        counters.faults += 1
        raise(FullVGPUInterrupt.fault, vector: FullVGPUInterrupt.faultVector)
    }

    private func publish() {
        let snapshot = (counters, executor.statistics)
        published.withLock { $0 = snapshot }
    }

    /// The G-VMCS region's revision word, the MMIO bitmap (setup-register writes trap), and the
    /// G-EPT: an identity map of the VM's RAM, read/write/execute, write-back.
    private func buildPrivateStructures(capabilities: GVMCapabilities) throws(GPUMemoryFault) {
        try memory.store64(region, UInt64(capabilities.revisionIdentifier))
        let bitmapPage = MMIOBitmap(memory: memory, address: bitmap)
        for register in FullVGPURegister.trappedWrites {
            try bitmapPage.setTrap(offset: register.rawValue, write: true, true)
        }
        let memory = self.memory
        let gept = FourLevelTableBuilder(memory: memory, root: geptRoot, format: .gept) {
            // init sized the private area for these tables.
            guard let page = memory.allocatePrivatePage() else { preconditionFailure("G-EPT outgrew its private pages") }
            return page
        }
        for ram in memory.guest.regions {
            for page in stride(from: ram.start.raw, to: ram.end, by: 4096) {
                try gept.setLeaf(for: page, to: GEPTEntry(address: page, permissions: .all, memoryType: 6).rawValue)
            }
        }
    }
}

/// Forwards the unit's signals to the device (the unit is created before the device is whole).
private final class UnitEvents: GVMEventSink {
    weak var device: FullVGPUDevice?

    func deliver(_ event: GVMEventInjection) {
        device?.postedCompletion(vector: Int(event.vector))
    }

    func notifyPostedCompletion(vector: UInt16) {
        device?.postedCompletion(vector: Int(vector))
    }
}
