import CKVM
import Dispatch
import Glibc
import Platform
import Logging
import Synchronization

/// A running VM: KVM objects, guest memory, buses, platform devices, and its vCPU threads.
///
/// Built from a `MachineConfiguration`; `run()` blocks until the guest exits, faults, or is
/// stopped by `requestStop` (which SIGINT/SIGTERM call when `run(stopOnSignals:)` asks).
public final class Machine: @unchecked Sendable {
    public static let serialPort: UInt64 = 0x3f8
    public static let serialIRQ: UInt32 = 4

    public let configuration: MachineConfiguration
    public let memory: GuestMemory
    public let portBus = IOBus(name: "pio")
    public let mmioBus = IOBus(name: "mmio")
    public let serial: Serial8250
    public let pci: PCIRootComplex
    /// The virtio-blk disks, in `configuration.disks` order (what MLaaS's block hooks reach);
    /// filled while `init` adds them, never changed after.
    public private(set) var disks: [VirtioBlock] = []
    /// Devices on bus 0 from boot (`PCIPlacement.builtIn`), for name checks.
    let builtInDevices = Mutex<[any HotpluggablePCIDevice]>([])

    let kvm: KVMSystem
    let vm: KVMVirtualMachine
    /// vCPU 0 is the boot processor; the others wait in KVM (the in-kernel LAPIC holds them in
    /// the INIT state) until the guest starts them with INIT and SIPI.
    let vcpus: [KVMVCPU]
    let interrupts: InterruptRouter
    private let console: ConsoleWriter
    let logger: Logger
    private let requestedExit = Mutex<MachineExit?>(nil)
    private let vcpuThreads = Mutex<[NativeThread]>([])
    private let exitCounts = Mutex(ExitStatistics())
    private let pauseGate = PauseGate()
    private let running = Atomic<Bool>(false)
    /// Devices in hot-plug slots (see Machine+Hotplug.swift).
    let hotplugTable = Mutex(HotplugTable())
    /// KVM memory slots handed to devices for memory in their BARs; RAM uses the first few.
    let deviceMemorySlots = Mutex<UInt32>(32)

    public var statistics: ExitStatistics { exitCounts.withLock { $0 } }

    /// KVM's own counters for this VM: the VM's plus the sum over its vCPUs (exits by kind,
    /// halts, interrupt injections). Empty when this kernel has no binary statistics.
    public func kvmStatistics() -> [String: UInt64] {
        var totals = (try? vm.statistics()) ?? [:]
        for vcpu in vcpus {
            for (name, value) in (try? vcpu.statistics()) ?? [:] { totals[name, default: 0] += value }
        }
        return totals
    }

    public init(configuration: MachineConfiguration, console: ConsoleWriter,
                logger: Logger = Logger(label: "malvvm.machine")) throws(HypervisorError) {
        try configuration.validate()
        // Read and check the kernel before any KVM state exists: a bad path is the common mistake.
        let loader: any KernelLoader
        let initrd: [UInt8]?
        do throws(BootError) {
            loader = try KernelImage.loader(path: configuration.kernelPath)
            initrd = try configuration.initrdPath.map { path throws(BootError) in try ImageFile.read(path, role: .initrd) }
        } catch { throw .boot(error) }

        self.configuration = configuration
        self.console = console
        self.logger = logger
        kvm = try KVMSystem(path: configuration.kvmPath)
        vm = try kvm.createVM()
        do {
            memory = try GuestMemory(layout: X86BootLayout.ramLayout(size: configuration.memorySize))
        } catch { throw .memory(error) }

        do {
            for (slot, region) in memory.regions.enumerated() {
                try vm.setUserMemoryRegion(slot: UInt32(slot), guestAddress: region.start, size: region.size,
                                           host: region.host)
            }
            try vm.setIdentityMapAddress(X86BootLayout.kvmIdentityMap)
            try vm.setTSSAddress(X86BootLayout.kvmTSS)
            try vm.createIRQChip()
            interrupts = try InterruptRouter(vm: vm)
            try vm.createPIT()
        } catch { throw .system(error) }
        pci = PCIRootComplex(mmioBus: mmioBus, logger: logger)

        let vm = self.vm
        serial = Serial8250(output: { [console] byte in console.append(byte) }, interrupt: {
            // The UART's interrupt is an edge on ISA IRQ 4: pulse the line.
            try? vm.setIRQLine(Machine.serialIRQ, high: true)
            try? vm.setIRQLine(Machine.serialIRQ, high: false)
        })
        let maximumVCPUs = kvm.maximumVCPUs
        guard configuration.vcpuCount <= maximumVCPUs else {
            throw .configuration("\(configuration.vcpuCount) vCPUs asked for; this host's KVM allows at most \(maximumVCPUs)")
        }
        var vcpus: [KVMVCPU] = []
        for id in 0..<configuration.vcpuCount { vcpus.append(try vm.createVCPU(id: id)) }
        self.vcpus = vcpus

        do {
            try portBus.insert(serial, name: "serial0", base: Self.serialPort, size: Serial8250.portCount)
            try portBus.insert(DebugExit { [weak self] code in self?.requestStop(.guestExit(code: code)) },
                               name: "debug-exit", base: DebugExit.defaultPort, size: DebugExit.portCount)
            try portBus.insert(ACPIPowerControl { [weak self] request in
                self?.logger.info("the guest asked to \(request == .powerOff ? "power off" : "reset"); ending the VM")
                self?.requestStop(.guestShutdown)
            }, name: "acpi-power", base: ACPIPowerControl.basePort, size: ACPIPowerControl.portCount)
            try portBus.insert(pci.configPorts, name: "pci-conf1", base: PCIRootComplex.configAddressPort, size: 8)
            try mmioBus.insert(pci.ecam, name: "pci-ecam", base: X86BootLayout.ecamStart, size: X86BootLayout.ecamSize)
        } catch { throw .bus(error) }

        for index in 0..<configuration.hotplugSlots {
            let port = try PCIeRootPort(physicalSlot: index + 1, vm: vm, router: interrupts, logger: logger)
            try pci.plug(rootPort: port, slot: PCIRootComplex.slotCount - configuration.hotplugSlots + index, name: "pcie-port\(index + 1)")
        }
        for (index, disk) in configuration.disks.enumerated() {
            let device = try VirtioBlock(path: disk.path, readOnly: disk.readOnly, direct: disk.direct)
            try addVirtioDevice(device, name: "virtio-blk\(index)", placement: .builtIn)
            disks.append(device)
        }

        try configureCPUID()
        let kernel: LoadedKernel
        do throws(BootError) {
            kernel = try loader.load(into: memory)
            let placedInitrd = try initrd.map { bytes throws(BootError) in
                try InitrdPlacement.place(bytes, kernel: kernel, memory: memory)
            }
            let rsdp: GuestAddress
            do {
                rsdp = try ACPITables.write(into: memory, vcpuCount: configuration.vcpuCount)
                try MPTable.write(into: memory, vcpuCount: configuration.vcpuCount)
            } catch { throw BootError.bootAreaOutsideMemory }
            let memoryMap = X86BootLayout.memoryMap(ram: memory.regions)
            switch kernel.bootProtocol {
            case .pvh:
                try PVHBoot.writeBootInformation(into: memory, commandLine: configuration.commandLine,
                                                 memoryMap: memoryMap, rsdp: rsdp, initrd: placedInitrd)
            case let .linux64(_, loadAddress, setupHeader):
                try LinuxBoot.writeBootInformation(into: memory, LinuxBoot.Parameters(
                    loadAddress: loadAddress, setupHeader: setupHeader, commandLine: configuration.commandLine,
                    memoryMap: memoryMap, rsdp: rsdp, initrd: placedInitrd))
            }
        } catch { throw .boot(error) }
        let vcpu = vcpus[0]
        do {
            switch kernel.bootProtocol {
            case let .pvh(entry):
                try vcpu.setSpecialRegisters(PVHBoot.initialSpecialRegisters(from: vcpu.specialRegisters()))
                try vcpu.setRegisters(PVHBoot.initialRegisters(entry: entry))
                logger.debug("loaded PVH kernel", metadata: ["entry": "0x\(String(entry, radix: 16))",
                                                             "end": "0x\(String(kernel.end, radix: 16))"])
            case let .linux64(entry, loadAddress, _):
                try vcpu.setSpecialRegisters(LinuxBoot.initialSpecialRegisters(from: vcpu.specialRegisters()))
                try vcpu.setRegisters(LinuxBoot.initialRegisters(entry: entry))
                logger.debug("loaded bzImage", metadata: ["load": "0x\(String(loadAddress, radix: 16))",
                                                          "end": "0x\(String(kernel.end, radix: 16))"])
            }
        } catch { throw .system(error) }
    }

    /// Whether `run()` is under way (the guest may be running): devices then come and go by
    /// hot-plug only.
    public var isRunning: Bool { running.load(ordering: .acquiring) }

    /// The host's supported CPUID shaped by the CPU template, marked as a hypervisor guest, each
    /// vCPU with its own APIC ID (the one the MADT and MP table list for it).
    private func configureCPUID() throws(HypervisorError) {
        var supported = try kvm.supportedCPUID()
        configuration.cpuTemplate.apply(to: &supported)
        for vcpu in vcpus {
            var entries = supported
            let apicID = UInt32(vcpu.id)
            for index in entries.indices {
                switch entries[index].function {
                case 1:
                    entries[index].ecx |= 1 << 31  // hypervisor present
                    entries[index].ebx = (entries[index].ebx & 0x00ff_ffff) | apicID << 24  // initial APIC ID
                case 0xb, 0x1f:
                    entries[index].edx = apicID  // x2APIC ID
                default:
                    break
                }
            }
            do { try vcpu.setCPUID(entries) } catch { throw .system(error) }
            setTSCFrequencySelect(vcpu, cpuid: entries)
        }
    }

    /// AMD's MSR_K7_HWCR and its TscFreqSel bit (24): real family 10h+ parts set it (the TSC
    /// counts at the P0 frequency), KVM's reset value leaves it clear, and Linux then prints
    /// "[Firmware Bug]: TSC doesn't count with P0 frequency!". KVM lets the VMM set it since
    /// Linux 6.7; an older KVM refuses the write, and the message stays.
    private func setTSCFrequencySelect(_ vcpu: KVMVCPU, cpuid: [kvm_cpuid_entry2]) {
        let amdHardwareConfiguration: UInt32 = 0xc001_0015
        let tscFrequencySelect: UInt64 = 1 << 24
        guard let vendor = cpuid.first(where: { $0.function == 0 }),
              vendor.ebx == 0x6874_7541, vendor.edx == 0x6974_6e65, vendor.ecx == 0x444d_4163,  // "AuthenticAMD"
              let current = vcpu.modelSpecificRegister(amdHardwareConfiguration) else { return }
        if !vcpu.setModelSpecificRegister(amdHardwareConfiguration, current | tscFrequencySelect) {
            logger.debug("KVM refused HWCR.TscFreqSel; Linux will report the TSC as not counting at P0")
        }
    }

    /// Knocks every vCPU out of KVM_RUN: immediate_exit for one about to enter, the signal for
    /// one inside (an AP still waiting for its SIPI included).
    private func kickAllVCPUs() {
        for vcpu in vcpus { vcpu.setImmediateExit(true) }
        // Under the lock: run() clears the threads only after joining them, so none is signalled once gone.
        vcpuThreads.withLock { threads in for thread in threads { thread.signal(VCPUKick.signal) } }
    }

    /// Asks the VM to end with `exit`; the first request wins. Safe from any thread.
    public func requestStop(_ exit: MachineExit) {
        let first = requestedExit.withLock { current -> Bool in
            guard current == nil else { return false }
            current = exit
            return true
        }
        guard first else { return }
        // A parked vCPU must wake to see the stop.
        _ = pauseGate.release()
        kickAllVCPUs()
    }

    /// Whether the vCPUs are paused (or asked to pause).
    public var isPaused: Bool { pauseGate.isPaused }

    /// Stops every vCPU at its next exit and returns once all are parked; devices keep running.
    /// Safe from any thread while `run()` runs.
    public func pause(timeout: Duration = .seconds(2)) throws(HypervisorError) {
        guard vcpuThreads.withLock({ !$0.isEmpty }), requestedExit.withLock({ $0 }) == nil else {
            throw .state("the VM is not running")
        }
        guard pauseGate.request() else { throw .state("the VM is already paused") }
        kickAllVCPUs()
        guard pauseGate.waitUntilParked(count: vcpus.count, timeout: timeout) else {
            _ = pauseGate.release()
            throw .state("the vCPUs did not stop within \(timeout)")
        }
    }

    /// Lets paused vCPUs run again.
    public func resume() throws(HypervisorError) {
        guard pauseGate.release() else { throw .state("the VM is not paused") }
    }

    /// Runs the guest, each vCPU on a thread of its own, until it ends. With `stopOnSignals`, SIGINT and
    /// SIGTERM end the VM cleanly (`.stopped`) instead of killing the process.
    public func run(stopOnSignals: Bool = false) throws(HypervisorError) -> MachineExit {
        _ = VCPUKick.installed
        running.store(true, ordering: .releasing)
        defer { running.store(false, ordering: .releasing) }
        var sources: [DispatchSourceSignal] = []
        if stopOnSignals {
            for number in [SIGINT, SIGTERM] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number)
                source.setEventHandler { [weak self] in self?.requestStop(.stopped(signal: number)) }
                source.resume()
                sources.append(source)
            }
        }
        defer {
            for source in sources { source.cancel() }
        }

        let failure = Mutex<SystemError?>(nil)
        var startError: ThreadStartError?
        for vcpu in vcpus {
            do throws(ThreadStartError) {
                let thread = try NativeThread(name: "vcpu\(vcpu.id)") { [self] in
                    VCPUKick.unblockOnThisThread()
                    do throws(SystemError) { try runLoop(vcpu) } catch {
                        failure.withLock { $0 = $0 ?? error }
                        // One vCPU's loop failing ends the VM: the others must not run on alone.
                        requestStop(.fault(reason: "vCPU \(vcpu.id) failed: \(error)", details: ""))
                    }
                }
                vcpuThreads.withLock { $0.append(thread) }
            } catch {
                startError = error
                requestStop(.fault(reason: "cannot start the thread of vCPU \(vcpu.id)", details: ""))
                break
            }
        }
        // A stop requested before a thread existed could not signal it; immediate_exit covers that.
        for thread in vcpuThreads.withLock({ $0 }) { thread.join() }
        vcpuThreads.withLock { $0 = [] }
        console.flush()

        if let startError { throw .system(SystemError("pthread_create", errno: startError.errno)) }

        if let error = failure.withLock({ $0 }) { throw .system(error) }
        let exit = requestedExit.withLock { $0 } ?? .fault(reason: "vCPU loop ended without a reason", details: "")
        logger.debug("VM ended", metadata: ["exit": "\(exit)", "exits": "\(statistics)"])
        return exit
    }

    private func runLoop(_ vcpu: KVMVCPU) throws(SystemError) {
        var counts = ExitStatistics()
        defer { exitCounts.withLock { $0.add(counts) } }
        while requestedExit.withLock({ $0 }) == nil {
            pauseGate.parkIfRequested()
            guard requestedExit.withLock({ $0 }) == nil else { break }
            switch try vcpu.run() {
            case let .portOut(port, size, data):
                counts.portIO += 1
                for start in stride(from: 0, to: data.count, by: size) {
                    portBus.write(UInt64(port), data: UnsafeRawBufferPointer(rebasing: data[start..<start + size]))
                }
                console.flush()
            case let .portIn(port, size, data):
                counts.portIO += 1
                for start in stride(from: 0, to: data.count, by: size) {
                    portBus.read(UInt64(port), into: UnsafeMutableRawBufferPointer(rebasing: data[start..<start + size]))
                }
            case let .mmioWrite(address, data):
                counts.mmio += 1
                mmioBus.write(address, data: data)
            case let .mmioRead(address, data):
                counts.mmio += 1
                mmioBus.read(address, into: data)
            case .interrupted:
                counts.interrupted += 1
                vcpu.setImmediateExit(false)
            case .halt:
                // The in-kernel LAPIC handles HLT; seeing one means the guest halted for good.
                counts.other += 1
                requestStop(.fault(reason: "guest halted with no way to wake", details: registerDump(vcpu)))
            case .shutdown:
                counts.other += 1
                requestStop(.fault(reason: "triple fault", details: registerDump(vcpu)))
            case let .internalError(suberror, data):
                counts.other += 1
                let words = data.map { "0x" + String($0, radix: 16) }.joined(separator: " ")
                requestStop(.fault(reason: "KVM internal error (suberror \(suberror), emulation failure or triple fault)",
                                   details: "data: \(words)\n" + registerDump(vcpu)))
            case let .failEntry(reason):
                counts.other += 1
                requestStop(.fault(reason: "VM entry failed (hardware reason 0x\(String(reason, radix: 16)))",
                                   details: registerDump(vcpu)))
            case let .systemEvent(type):
                counts.other += 1
                if type == UInt32(KVM_SYSTEM_EVENT_CRASH) {
                    requestStop(.fault(reason: "guest reported a crash", details: registerDump(vcpu)))
                } else {
                    requestStop(.guestShutdown)
                }
            case let .unhandled(reason):
                counts.other += 1
                requestStop(.fault(reason: "unhandled KVM exit reason \(reason)", details: registerDump(vcpu)))
            }
        }
    }

    /// A vCPU's registers (the boot processor's by default), for the report of a fatal exit.
    public func registerDump(_ vcpu: KVMVCPU? = nil) -> String {
        let vcpu = vcpu ?? vcpus[0]
        guard let r = try? vcpu.registers(), let s = try? vcpu.specialRegisters() else { return "(registers unavailable)" }
        func hex(_ value: UInt64) -> String {
            let digits = String(value, radix: 16)
            return "0x" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits
        }
        func seg(_ name: String, _ x: kvm_segment) -> String {
            "\(name)=\(String(x.selector, radix: 16)) base=\(hex(x.base)) limit=\(String(x.limit, radix: 16)) type=\(x.type) dpl=\(x.dpl) l=\(x.l) db=\(x.db)"
        }
        return """
        vcpu=\(vcpu.id)
        rip=\(hex(r.rip)) rsp=\(hex(r.rsp)) rflags=\(hex(r.rflags))
        rax=\(hex(r.rax)) rbx=\(hex(r.rbx)) rcx=\(hex(r.rcx)) rdx=\(hex(r.rdx))
        rsi=\(hex(r.rsi)) rdi=\(hex(r.rdi)) rbp=\(hex(r.rbp)) r8=\(hex(r.r8))
        r9=\(hex(r.r9)) r10=\(hex(r.r10)) r11=\(hex(r.r11)) r12=\(hex(r.r12))
        r13=\(hex(r.r13)) r14=\(hex(r.r14)) r15=\(hex(r.r15))
        cr0=\(hex(s.cr0)) cr2=\(hex(s.cr2)) cr3=\(hex(s.cr3)) cr4=\(hex(s.cr4)) efer=\(hex(s.efer))
        \(seg("cs", s.cs)) \(seg("ss", s.ss))
        gdt=\(hex(s.gdt.base))/\(s.gdt.limit) idt=\(hex(s.idt.base))/\(s.idt.limit)
        """
    }
}
