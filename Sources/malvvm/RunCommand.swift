import ArgumentParser
import ControlAPI
import Foundation
import Glibc
import GPUDaemon
import GPUHost
import Hypervisor
import Logging
import MLaaS
import VGPUAssembly
import VGPUCore

extension Malvvm {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Boot a guest kernel and print its serial console; exits with the guest's exit code.",
            discussion: """
            The guest ends the VM by writing a value v to the debug-exit port 0xf4 (QEMU's \
            isa-debug-exit).

            Exit codes (malvvm's own never look like a guest's):
              0-63    the guest's v, unchanged; 0 also when the guest powers off or the
                      VM is shut down through its API
              63      also a guest v >= 64: stderr names v, and --metrics records it
                      as guest_exit_code
              64      a command-line mistake (EX_USAGE)
              70      malvvm failed while running: no /dev/kvm, an unreadable,
                      truncated or unsupported kernel, a kernel or initrd that does
                      not fit in memory, a missing disk, a socket in use (EX_SOFTWARE)
              71      the guest faulted (triple fault, KVM internal error); the vCPU
                      registers are printed
              128+N   stopped by signal N (SIGINT, SIGTERM)
            """
        )

        @Option(name: .long, help: ArgumentHelp("Kernel to boot: a PVH ELF (ELF32 or ELF64, e.g. a Linux vmlinux) or a 64-bit Linux bzImage (boot protocol 2.12+).", valueName: "path"))
        var kernel: String

        @Option(name: .long, help: ArgumentHelp("An initial ramdisk: placed at the top of RAM below 3 GiB (and below the kernel's initrd_addr_max), handed over as the first PVH module or in boot_params.", valueName: "path"))
        var initrd: String?

        @Option(name: .long, help: ArgumentHelp("vCPUs, each on a thread of its own: 1 to what this host's KVM allows (at most \(MachineConfiguration.maximumVCPUs)). vCPU 0 boots; the guest starts the others with INIT/SIPI; the ACPI MADT and the MP table list them all.",
                                                valueName: "n"))
        var cpus: Int = 1

        @Option(name: .long, help: ArgumentHelp("The CPUID the guest sees: 'host' (what KVM supports), 'no-cx16-xsave' (hides CX16 and XSAVE, which this host's software KVM cannot emulate in ring 0), or a Firecracker-style custom template FILE.json (cpuid_modifiers with 0b/0/1/x bitmaps).",
                                                valueName: "name|file"),
                transform: { text in
                    do { return try CPUTemplateArgument.parse(text) } catch { throw ValidationError("\(error)") }
                })
        var cpuTemplate: CPUTemplate = .host

        @Option(name: .long, help: ArgumentHelp("Guest RAM, e.g. 256M, 1G (a bare number is MiB).", valueName: "size"))
        var memory: MemoryArgument = MemoryArgument(bytes: MachineConfiguration.defaultMemory)

        @Option(name: .long, help: ArgumentHelp("Kernel command line.", valueName: "string"))
        var cmdline: String = ""

        @Option(name: .long, help: ArgumentHelp("A virtio-blk disk backed by a file; repeat for more. Add ',readonly' to forbid writes, ',direct' to read with O_DIRECT (past the host's page cache, as QEMU's cache=none).",
                                                valueName: "path[,readonly][,direct]"))
        var disk: [DiskArgument] = []

        @Option(name: .long, help: ArgumentHelp(
            "A vGPU: a named profile (1g.1gb, 2g.2gb, 4g.4gb, 8g.8gb: N compute units (share weight N) and N GiB of GPU memory; 1g-8g are their former names) and overrides, e.g. 'profile=4g.4gb,weight=2,memory=512m'; add 'gpud=PATH' (or 'gpud' for the default socket) to make it a client of the GPU daemon; 'kind=full' for a full-vGPU on the G-VMCS model (with doorbell-exiting, mmio-bitmap, nested-paging, posted-completions=on|off); repeat for more.",
            valueName: "spec"),
                transform: { text in
                    do { return try VGPUSpecification(parsing: text, defaultDaemonSocket: GPUDaemonAPI.defaultSocket) } catch {
                        throw ValidationError("\(error)")
                    }
                })
        var vgpu: [VGPUSpecification] = []

        @Option(name: .long, help: ArgumentHelp("The physical GPU the vGPUs share: a Vulkan device index or name, 'cpu' for the CPU reference (default: the best Vulkan device).",
                                                valueName: "gpu"))
        var gpu: GPUArgument = GPUArgument(selector: .automatic)

        @Option(name: .long, help: ArgumentHelp("Write the VM's exit counters (KVM's and malvvm's) as JSON to this file when it ends.",
                                                valueName: "path"))
        var metrics: String?

        @Option(name: .long, help: ArgumentHelp("The VM's name, for 'malvvm ps' and the API commands (default: vm-PID).",
                                                valueName: "name"))
        var name: String?

        @Option(name: .long, help: ArgumentHelp("Serve the control API (docs/api/malvvm.yaml) on this Unix socket, or 'none' (default: NAME.sock under $XDG_RUNTIME_DIR/malvvm, /run/malvvm for root, else /tmp/malvvm-UID).",
                                                valueName: "path"))
        var apiSocket: String?

        @Option(name: .long, help: ArgumentHelp("MLaaS services this VM selects, loaded from the module directory (libNAME.so) and attached to the VM (docs/mlaas.md).",
                                                valueName: "name[,name]"))
        var mlaas: ServiceNamesArgument?

        @Option(name: .long, help: ArgumentHelp("Parameters for a service in --mlaas, in its own format, e.g. 'prefetch:policy=markov,order=2' (docs/mlaas.md); repeat for more.",
                                                valueName: "name:parameters"))
        var mlaasConfig: [ServiceParametersArgument] = []

        @Option(name: .long, help: ArgumentHelp("The operator's MLaaS module directory (default: the directory of the malvvm binary).",
                                                valueName: "dir"))
        var mlaasDir: ModuleDirectoryArgument?

        @OptionGroup var confinement: ConfinementOptions

        @OptionGroup var global: GlobalOptions

        var machineConfiguration: MachineConfiguration {
            var configuration = MachineConfiguration(kernelPath: kernel, commandLine: cmdline, memorySize: memory.bytes)
            configuration.disks = disk.map(\.configuration)
            configuration.initrdPath = initrd
            configuration.vcpuCount = cpus
            configuration.cpuTemplate = cpuTemplate
            return configuration
        }

        func validate() throws {
            guard (1...MachineConfiguration.maximumVCPUs).contains(cpus) else {
                throw ValidationError("--cpus must be 1 to \(MachineConfiguration.maximumVCPUs), not \(cpus)")
            }
            do { try machineConfiguration.validate() } catch { throw ValidationError(error.description) }
            // KVM's own limit is a usage error too, where /dev/kvm can be asked; without it
            // the run fails later with the reason.
            if let kvm = try? KVMSystem(), cpus > kvm.maximumVCPUs {
                throw ValidationError("--cpus \(cpus) is more than the \(kvm.maximumVCPUs) vCPUs this host's KVM allows")
            }
            for item in mlaasConfig where !(mlaas?.names ?? []).contains(item.name) {
                throw ValidationError("--mlaas-config names '\(item.name)', which is not in --mlaas")
            }
            if let name, !SocketPath.isValidName(name) {
                throw ValidationError("bad --name '\(name)': use up to 64 letters, digits, '-', '_' or '.'")
            }
        }

        var vmName: String { name ?? "vm-\(getpid())" }

        func run() throws {
            global.bootstrapLogging()
            // The API server's event loops start on their own threads while the VM is built
            // below; requests wait for the controller (`PendingVMControl`), and the vCPUs start
            // only once the socket is bound, so a client started after the guest's first output
            // finds it.
            let control = PendingVMControl()
            let socketPath = apiSocket ?? SocketPath.forVM(named: vmName)
            var server: APIServer?
            if apiSocket != "none" {
                do { server = try APIServer(startingOn: socketPath, control: control, version: MalvvmVersion.api) } catch {
                    throw RuntimeFailure(message: error.description)
                }
            }
            defer { server?.stop() }
            let machine: Machine
            do {
                machine = try Machine(configuration: machineConfiguration, console: .fileDescriptor(STDOUT_FILENO))
            } catch {
                throw RuntimeFailure(message: error.description)
            }
            // The embedded scheduler owns the physical GPU for this VM's own vGPUs; the others
            // are the GPU daemon's clients.
            var scheduler: GPUScheduler?
            // Services' batch-duration models (learned-slice) reach it through this bridge,
            // including a scheduler made only when a vGPU is hot-plugged.
            let schedulerBridge = MLaaSSchedulerBridge()
            var vgpus: [any VGPU] = []
            defer { scheduler?.stop() }
            // Every vGPU stops (device threads, GPU memory, a daemon's connection) before the
            // scheduler it submits to.
            defer { vgpus.forEach { $0.stop() } }
            for (index, spec) in vgpu.enumerated() {
                let id = "vgpu\(index)"
                do {
                    vgpus.append(try spec.add(to: machine, vm: vmName, name: id, placement: .builtIn, services: mlaas?.names ?? []) {
                        if scheduler == nil {
                            let made = try GPUScheduler(backend: try BackendFactory.make(gpu.selector))
                            schedulerBridge.adopt(made)
                            scheduler = made
                        }
                        return scheduler!
                    })
                } catch {
                    throw RuntimeFailure(message: "vGPU: \(error)")
                }
            }
            let selector = gpu.selector
            let services = MLaaSController(registry: ServiceRegistry(directory: mlaasDir?.directory ?? .besideExecutable,
                                                                     scheduling: schedulerBridge),
                                           vm: .init(name: vmName, diskPaths: disk.map(\.configuration.path), disks: machine.disks),
                                           permitted: mlaas?.names ?? [])
            // Services end (VM detached, unload, dlclose) before the VM's devices and GPU do.
            defer { services.registry.unloadAll() }
            do {
                if mlaasDir != nil { _ = try services.registry.directory.validate() }
                for name in mlaas?.names ?? [] { try services.enable(service: name) }
                for item in mlaasConfig { try services.configure(service: item.name, parameters: item.parameters) }
            } catch { throw RuntimeFailure(message: "mlaas: \(error)") }
            let controller = MachineController(name: vmName, apiSocket: socketPath,
                                               machine: machine, scheduler: scheduler,
                                               makeScheduler: {
                                                   let made = try GPUScheduler(backend: try BackendFactory.make(selector))
                                                   schedulerBridge.adopt(made)
                                                   return made
                                               },
                                               services: services)
            vgpus.forEach(controller.adopt)
            defer { controller.shutDownGPU() }
            control.resolve(controller)
            do { try server?.waitUntilListening() } catch { throw RuntimeFailure(message: error.description) }
            // With --metrics, the GPU's own busy measure over the run (NVML, where it exists).
            let nvml = metrics != nil ? NVMLRun.start() : nil
            // Everything is set up: the system-call filter goes in (README, "Hardening: confinement").
            try confinement.confine()
            let exit: MachineExit
            do { exit = try machine.run(stopOnSignals: true) } catch { throw RuntimeFailure(message: error.description) }
            let status: Int32
            switch exit {
            case let .guestExit(code): status = MalvvmExit.status(forGuestCode: code)
            case .guestShutdown, .shutdownRequested: status = 0
            case let .stopped(signal): status = 128 + signal
            case .fault: status = MalvvmExit.guestFault
            }
            if let metrics {
                try writeMetrics(controller.metrics(), exit: exit, status: status, nvml: nvml?.finish(),
                                 disks: machine.disks.map(\.readStatistics), to: metrics)
            }

            switch exit {
            case let .guestExit(code):
                if Int32(exactly: code) != status {
                    Terminal.note("the guest exited with code \(code) (reported as \(status))")
                }
            case .guestShutdown:
                break
            case .shutdownRequested:
                Terminal.note("VM shut down through the control API")
            case let .stopped(signal):
                Terminal.note("VM stopped by signal \(signal)")
            case let .fault(reason, details):
                Terminal.error("guest fault: \(reason)")
                FileHandleWriter.standardError.write(details + "\n")
            }
            if status != 0 { throw ExitCode(status) }
        }
    }
}

/// The run's counters as one JSON object: how the VM ended (the guest's exact exit code, the
/// process's status), KVM's and malvvm's exit counters, the GPU scheduler's utilisation, and
/// each vGPU's submission costs (keys in snake_case). The same counters `GET /v1/metrics`
/// serves while the VM runs.
func writeMetrics(_ metrics: VMMetrics, exit: MachineExit, status: Int32, nvml: NVMLReport?,
                  disks: [VirtioBlock.ReadStatistics] = [], to path: String) throws {
    struct VGPUSummary: Encodable {
        let vgpu: VMMetrics.VGPU

        enum CodingKeys: CodingKey { case name, kind, statistics, gvm }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(vgpu.name, forKey: .name)
            try container.encode(vgpu.kind, forKey: .kind)
            try container.encode(vgpu.statistics, forKey: .statistics)
            if let gvm = vgpu.mechanism { try container.encode(gvm, forKey: .gvm) }
        }
    }
    struct Report: Encodable {
        /// What the guest wrote to the debug-exit port, whole (null when it ended otherwise).
        let guestExitCode: UInt32?
        /// guest_exit, guest_shutdown, shutdown_requested, signal or fault.
        let end: String
        /// What `malvvm run` exits with.
        let exitStatus: Int32
        let kvm: [String: UInt64]
        let vmm: [String: UInt64]
        let scheduler: VMMetrics.Scheduler?
        let vgpus: [VGPUSummary]
        /// The GPU's own utilisation over the run, or why it could not be read.
        let nvml: NVMLReport?
        /// Each virtio-blk disk's reads: how many, the read-ahead cache's hits, bytes from the file.
        let disks: [VirtioBlock.ReadStatistics]

        enum CodingKeys: CodingKey { case guestExitCode, end, exitStatus, kvm, vmm, scheduler, vgpus, nvml, disks }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            // Always there, null when the guest did not end through the debug-exit port.
            try container.encode(guestExitCode, forKey: .guestExitCode)
            try container.encode(end, forKey: .end)
            try container.encode(exitStatus, forKey: .exitStatus)
            try container.encode(kvm, forKey: .kvm)
            try container.encode(vmm, forKey: .vmm)
            try container.encodeIfPresent(scheduler, forKey: .scheduler)
            try container.encode(vgpus, forKey: .vgpus)
            try container.encodeIfPresent(nvml, forKey: .nvml)
            try container.encode(disks, forKey: .disks)
        }
    }
    let (guestExitCode, end): (UInt32?, String) = switch exit {
    case let .guestExit(code): (code, "guest_exit")
    case .guestShutdown: (nil, "guest_shutdown")
    case .shutdownRequested: (nil, "shutdown_requested")
    case .stopped: (nil, "signal")
    case .fault: (nil, "fault")
    }
    let report = Report(guestExitCode: guestExitCode, end: end, exitStatus: status, kvm: metrics.kvm, vmm: metrics.vmm,
                        scheduler: metrics.scheduler, vgpus: metrics.vgpus.map(VGPUSummary.init), nvml: nvml,
                        disks: disks)
    do {
        try (jsonEncoder().encode(report) + Data("\n".utf8)).write(to: URL(fileURLWithPath: path))
    } catch {
        throw RuntimeFailure(message: "cannot write metrics to '\(path)': \(error.localizedDescription)")
    }
}

struct MemoryArgument: ExpressibleByArgument {
    let bytes: UInt64

    init(bytes: UInt64) { self.bytes = bytes }

    init?(argument: String) {
        guard let bytes = MemorySize.parse(argument) else { return nil }
        self.bytes = bytes
    }

    static var defaultCompletionKind: CompletionKind { .default }
    var defaultValueDescription: String { MemorySize.format(bytes) }
}

struct DiskArgument: ExpressibleByArgument {
    let configuration: DiskConfiguration

    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let path = parts.first, !path.isEmpty else { return nil }
        var readOnly = false, direct = false
        for option in parts.dropFirst() {
            switch option {
            case "readonly", "ro": readOnly = true
            case "direct": direct = true
            default: return nil
            }
        }
        configuration = DiskConfiguration(path: path, readOnly: readOnly, direct: direct)
    }
}

struct GPUArgument: ExpressibleByArgument {
    let selector: DeviceSelector

    init(selector: DeviceSelector) { self.selector = selector }

    init?(argument: String) {
        switch argument {
        case "": return nil
        case "cpu": selector = .cpuReference
        case "auto": selector = .automatic
        default: selector = Int(argument).map { .index($0) } ?? .nameContains(argument)
        }
    }

    var defaultValueDescription: String { "auto" }
}
