import ArgumentParser
import ControlAPI
import Dispatch
import Foundation
import Glibc
import GPUDaemon
import GPUHost
import MLaaS
import VGPUCore

struct GPUDaemonCommand: ParsableCommand {
    /// `gpud` itself takes no options: they are its default subcommand's, `serve`. ArgumentParser
    /// answers a lone `--help` with the help of the command it belongs to, before falling back to
    /// the default subcommand, so `malvvm gpud --help` used to list only the two subcommands and
    /// none of --policy, --slice, --socket. With no help names of its own, `gpud --help` goes on
    /// to `serve`, whose help shows every option (`malvvm help gpud` still lists the subcommands).
    static let configuration = CommandConfiguration(
        commandName: "gpud", abstract: "The GPU daemon: one process that owns a GPU and serves the vGPUs of every VM on the host.",
        subcommands: [Serve.self, Status.self], defaultSubcommand: Serve.self, helpNames: [])

    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve a GPU to VMs started with '--vgpu gpud=PATH,...' until SIGINT or SIGTERM.",
            discussion: """
            VMs connect on the socket PATH (the vgpu-user protocol: guest memory, doorbells and \
            interrupts are shared with the daemon, so GPU work never passes through the VM's process); \
            the daemon's REST API (docs/api/gpud.yaml) is served on PATH.api.

            'serve' is the default: 'malvvm gpud --policy equal-share' is 'malvvm gpud serve --policy \
            equal-share'. 'malvvm gpud status' reports on a running daemon (--help for its options).
            """,
            helpNames: [.short, .long])

        @Option(name: .long, help: ArgumentHelp("The GPU: a Vulkan device index or name, 'cpu' for the CPU reference (default: the best Vulkan device).",
                                                valueName: "gpu"))
        var gpu: GPUArgument = GPUArgument(selector: .automatic)

        @Option(name: .long, help: ArgumentHelp("best-effort, equal-share or fixed-share.", valueName: "policy"))
        var policy: PolicyArgument = PolicyArgument(name: "best-effort")

        @Option(name: .long, help: ArgumentHelp("Fixed share: the weight of the whole GPU (a vGPU's share is its profile weight over this).",
                                                valueName: "weight"))
        var totalWeight: Double = 8

        @Option(name: .long, help: ArgumentHelp("The time slice, 1-30 ms: '2ms', '1500us' or a bare number of ms (default: 2 ms, 1 ms beyond 8 clients).",
                                                valueName: "time"))
        var slice: SliceArgument?

        @Option(name: .long, help: ArgumentHelp("Where VMs connect (default: gpud.sock in the socket directory; under systemd socket activation, the socket the .socket unit passes).", valueName: "path"))
        var socket: String?

        @Option(name: .long, help: ArgumentHelp("Let this group's members connect: both sockets become group-owned, mode 0660 (default: only the daemon's user).",
                                                valueName: "group"))
        var socketGroup: String?

        @Option(name: .customLong("profile"), help: ArgumentHelp(
            "Define a profile VMs may ask for by name, e.g. 'heavy:profile=4g.4gb,weight=8' or 'small:memory=512m,contexts=4'; repeat for more. VMs name a profile; its memory, weight and contexts are only ever these (1g.1gb, 2g.2gb, 4g.4gb, 8g.8gb: N compute units (weight N) and N GiB, are defined unless redefined; 1g-8g are their former names).",
            valueName: "name:spec"),
                transform: { text in
                    do { return try VGPUProfile(definition: text) } catch { throw ValidationError("--profile: \(error)") }
                })
        var profiles: [VGPUProfile] = []

        @Option(name: .long, help: ArgumentHelp("The operator's MLaaS module directory, where 'malvvm mlaas load' finds modules (default: the directory of the malvvm binary).",
                                                valueName: "dir"))
        var mlaasDir: ModuleDirectoryArgument?

        @Option(name: .long, help: ArgumentHelp("MLaaS services to load at start, from the module directory (libNAME.so); a VM that selects one of its ML-for-OS services (run --mlaas) is attached to it while its vGPUs are connected (docs/mlaas.md).",
                                                valueName: "name[,name...]"))
        var mlaas: ServiceNamesArgument?

        @OptionGroup var confinement: ConfinementOptions

        @OptionGroup var global: GlobalOptions

        func validate() throws {
            guard totalWeight.isFinite, totalWeight > 0 else { throw ValidationError("--total-weight must be a positive number") }
            if let socketGroup, SocketPath.groupID(named: socketGroup) == nil {
                throw ValidationError("--socket-group: no group '\(socketGroup)' on this host")
            }
        }

        func run() throws {
            global.bootstrapLogging()
            let configuration = SchedulerConfiguration(policy: policy.policy(totalWeight: totalWeight),
                                                       timeSliceNanoseconds: slice?.nanoseconds)
            // Services' batch-duration models (learned-slice) reach the scheduler through this.
            let schedulerBridge = MLaaSSchedulerBridge(configuration: configuration)
            // An operator's module directory that is missing or unsafe stops the daemon at once.
            let services = MLaaSController(registry: ServiceRegistry(directory: mlaasDir?.directory ?? .besideExecutable,
                                                                     scheduling: schedulerBridge))
            do {
                if mlaasDir != nil { _ = try services.registry.directory.validate() }
                for name in mlaas?.names ?? [] { try services.registry.load(service: name) }
            } catch { throw RuntimeFailure(message: "mlaas: \(error)") }
            // Blocked before any thread starts, so every thread inherits the mask and sigwait
            // below is the only place they arrive.
            var signals = sigset_t()
            sigemptyset(&signals)
            sigaddset(&signals, SIGINT)
            sigaddset(&signals, SIGTERM)
            pthread_sigmask(SIG_BLOCK, &signals, nil)

            // Socket activation (contrib/systemd): the listening socket comes from systemd.
            let activated: ActivatedSocket?
            do { activated = try ActivatedSocket.take() } catch { throw RuntimeFailure(message: error.description) }
            if let activated, let socket, socket != activated.path {
                throw RuntimeFailure(message: "--socket \(socket) is not the socket-activated socket \(activated.path)")
            }
            let socketPath = activated?.path ?? socket ?? GPUDaemonAPI.defaultSocket
            let scheduler: GPUScheduler
            do { scheduler = try GPUScheduler(backend: try BackendFactory.make(gpu.selector), configuration: configuration) } catch {
                throw RuntimeFailure(message: "cannot open the GPU: \(error)")
            }
            defer { scheduler.stop() }
            schedulerBridge.adopt(scheduler)
            do { try SocketPath.prepareDirectory((socketPath as NSString).deletingLastPathComponent) } catch {
                throw RuntimeFailure(message: error.description)
            }
            let daemon: VGPUServer
            var catalog = VGPUProfile.named
            for profile in profiles { catalog[profile.name] = profile }
            do {
                daemon = try VGPUServer(scheduler: scheduler, socketPath: socketPath, activated: activated, profiles: catalog,
                                        services: DaemonVMServices(registry: services.registry))
            } catch {
                throw RuntimeFailure(message: error.description)
            }
            defer { daemon.stop() }
            defer { services.registry.unloadAll() }
            let apiSocket = GPUDaemonAPI.apiSocket(forVGPUSocket: socketPath)
            let server: APIServer
            do {
                server = try APIServer(socketPath: apiSocket, daemon: GPUDaemonController(daemon: daemon, mlaas: services),
                                       version: MalvvmVersion.api)
            } catch { throw RuntimeFailure(message: error.description) }
            defer { server.stop() }
            if let group = socketGroup.flatMap(SocketPath.groupID(named:)) {
                // An activated socket's group and mode are the .socket unit's to set.
                do {
                    for path in (activated == nil ? [socketPath] : []) + [apiSocket] { try SocketPath.share(path, withGroup: group) }
                } catch { throw RuntimeFailure(message: error.description) }
            }
            let slice = Double(configuration.timeSlice(forClients: 1)) / 1e6
            let serving = "serving \(scheduler.backend.device.name) (\(configuration.policy), slice \(slice) ms)"
                + " on \(socketPath)\(activated == nil ? "" : " (socket-activated)"), API on \(apiSocket)"
            // Both sockets are up: the system-call filter goes in (README, "Hardening: confinement").
            try confinement.confine()
            // Unbuffered: whoever started us waits for this line to know the sockets are up.
            FileHandle.standardOutput.write(Data("gpud: \(serving)\n".utf8))
            // A Type=notify unit is started once both sockets are up.
            ServiceNotifier.notify("READY=1\nMAINPID=\(getpid())\nSTATUS=\(serving)")
            var received: Int32 = 0
            sigwait(&signals, &received)
            ServiceNotifier.notify("STOPPING=1")
            Terminal.note("gpud: stopping on signal \(received); connected VMs see their vGPUs fail")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The daemon's GPU, policy, utilisation and each vGPU's share.",
                                                        helpNames: [.short, .long])

        @Option(name: .long, help: ArgumentHelp("The daemon's socket (default: gpud.sock in the socket directory).", valueName: "path"))
        var socket: String?

        @Flag(name: .long, help: "Print the status as JSON (docs/api/gpud.yaml's GPUDaemonStatus).")
        var json = false

        func run() async throws {
            let client = APIClient(socketPath: GPUDaemonAPI.apiSocket(forVGPUSocket: socket ?? GPUDaemonAPI.defaultSocket), peer: "GPU daemon")
            let status = try await callAPI { () throws(APIError) in try await client.daemonStatus() }
            if json { return try printJSON(status) }
            print(String(format: "GPU %@  policy %@  slice %.1f ms  utilisation %.1f %%  Jain %.4f  window %.1f s  pid %d",
                         status.gpu, status.policy, status.timeSliceMilliseconds, status.utilisation * 100, status.jainIndex,
                         status.windowSeconds, status.pid))
            if let dispatch = status.dispatchBusy, let retire = status.retireBusy {
                print(String(format: "scheduler threads busy: dispatching %.1f %%, retiring %.1f %%", dispatch * 100, retire * 100))
            }
            if let nvml = status.nvml {
                print(nvml.summary)
            } else {
                print("nvml: not available on the daemon's host")
            }
            printTable(["VM", "VGPU", "PROFILE", "WEIGHT", "ACTIVE", "SUBMISSIONS", "GPU MS", "SHARE", "TARGET"], status.vgpus.map { v in
                [v.vm, v.vgpu, v.profile.name, String(format: "%g", v.profile.weight), v.active ? "yes" : "no", "\(v.submissions)",
                 String(format: "%.1f", v.gpuMilliseconds), String(format: "%.3f", v.measuredShare), String(format: "%.3f", v.targetShare)]
            })
        }
    }
}

struct PolicyArgument: ExpressibleByArgument {
    let name: String

    init(name: String) { self.name = name }

    init?(argument: String) {
        guard ["best-effort", "equal-share", "fixed-share"].contains(argument) else { return nil }
        name = argument
    }

    func policy(totalWeight: Double) -> SchedulingPolicy {
        switch name {
        case "equal-share": return .equalShare
        case "fixed-share": return .fixedShare(totalWeight: totalWeight)
        default: return .bestEffort
        }
    }

    static var allValueStrings: [String] { ["best-effort", "equal-share", "fixed-share"] }
    var defaultValueDescription: String { name }
}

/// A time slice: "2ms", "1500us", "0.5ms" or a bare number of milliseconds, within 1-30 ms.
struct SliceArgument: ExpressibleByArgument {
    let nanoseconds: UInt64

    init?(argument: String) {
        let text = argument.lowercased()
        let (number, scale): (Substring, Double) = text.hasSuffix("ms") ? (text.dropLast(2), 1e6)
            : text.hasSuffix("us") ? (text.dropLast(2), 1e3) : (Substring(text), 1e6)
        guard let value = Double(number), value.isFinite, value > 0 else { return nil }
        let ns = value * scale
        guard SchedulerConfiguration.timeSliceRange.contains(UInt64(ns)) else { return nil }
        nanoseconds = UInt64(ns)
    }
}
