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
///
/// This file holds the device's state, its construction and its end; the two sides have a
/// file each: the register front the vCPU sees (`FullVGPUDevice+Registers`: BAR and
/// configuration access, the register page, the doorbell) and the device-thread hypervisor
/// (`FullVGPUDevice+Hypervisor`: the G-VMCS, the entry/exit loop, faults and completions).
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

    let memory: HostMemory
    let vm: KVMVirtualMachine
    let msix: MSIXTable
    private let scheduler: GPUScheduler
    let client: ClientID
    let logger: Logger
    let doorbell: EventFD
    let kick: EventFD
    let registers = Mutex(FullVGPURegisterFile())
    let mailbox = Mutex(Mailbox())
    let published = Mutex((counters: FullVGPUCounters(), statistics: VGPUStatistics()))
    let doorbellAddress = Mutex<UInt64?>(nil)
    /// Guest RAM shared with the GPU so the executor's guest-page transfers are device copies
    /// in place (`ComputeBackend.shareHostMemory`); released in `stop` once the client's
    /// batches are off the GPU.
    private let guestMemoryShares = Mutex<[HostMemoryShare]>([])
    private var worker: DeviceWorker?
    /// With the MMIO bitmap on, the first register page is also guest memory (a read-only KVM
    /// slot over the BAR): the reads the bitmap does not trap cost no exit, as they would be
    /// served by a virtual function's own registers; writes still exit to the handler.
    let registerPage: RegisterPage?

    // Device thread only.
    let unit: GPUVirtualizationUnit
    let executor: StreamExecutor
    let region: UInt64
    let geptRoot: UInt64
    let bitmap: UInt64
    let hostSaveArea: UInt64
    let hostPageTableRoot: UInt64
    let sliceMicroseconds: UInt64
    var counters = FullVGPUCounters()

    struct Mailbox {
        var accesses: [GVMRegisterAccess] = []
        var enable = false
        var reset = false
        var stopped = false
    }

    /// A vGPU of `profile` on `scheduler` (one scheduler client) in the VM `host` describes;
    /// `vmName` is the VM's name as the scheduler knows its clients (a service's batch model).
    public init(host: PCIDeviceHost, scheduler: GPUScheduler, profile: VGPUProfile, controls: FullVGPUControls,
                name: String, vmName: String? = nil, logger: Logger = Logger(label: "malvvm.fullvgpu")) throws(HypervisorError) {
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
            client = try scheduler.addClient(profile.clientConfiguration(name: "\(name)/full", owner: ClientOwner(vm: vmName, vgpu: name)))
        } catch {
            throw .configuration("\(name): \(error)")
        }
        executor = StreamExecutor(scheduler: scheduler, client: client, memoryLimit: UInt64(max(profile.memoryBytes, 0)),
                                  memory: hostMemory, logger: logger)
        guestMemoryShares.withLock { $0 = host.memory.hostMappings.compactMap { scheduler.backend.shareHostMemory($0) } }
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
        guestMemoryShares.withLock { $0 = [] }
    }

    // MARK: VGPU

    public var statistics: VGPUStatistics { published.withLock { $0.statistics } }
    public var fullCounters: FullVGPUCounters { published.withLock { $0.counters } }
    public var mechanismCounters: (any Encodable & Sendable)? { fullCounters }

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
