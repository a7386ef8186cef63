import ArgumentParser
import ControlAPI
import Foundation
import Hypervisor
import VGPUAssembly
import VGPUCore

/// A running VM, named on the command line: a name in the default socket directory, or the
/// path of its API socket.
struct VMArgument: ExpressibleByArgument {
    let socketPath: String
    let label: String

    init?(argument: String) {
        label = argument
        socketPath = argument.contains("/") ? argument : SocketPath.forVM(named: argument)
    }
}

/// One API call, its failure the one line the CLI prints.
func callAPI<T>(_ operation: () async throws(APIError) -> T) async throws -> T {
    do throws(APIError) { return try await operation() } catch { throw RuntimeFailure(message: error.message) }
}

struct PS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps", abstract: "List the running VMs (those serving an API socket in the socket directory).")

    @Option(name: .long, help: ArgumentHelp("The socket directory (default: $XDG_RUNTIME_DIR/malvvm, /run/malvvm for root, else /tmp/malvvm-UID).",
                                            valueName: "dir"))
    var dir: String?

    @Flag(name: .long, help: "Print the VMs as a JSON array of 'malvvm vm info' objects.")
    var json = false

    func run() async throws {
        let sockets = SocketPath.sockets(in: dir ?? SocketPath.defaultDirectory)
        // A socket nobody answers on was left by a VM that died: not a running VM.
        var infos: [VMInfo] = []
        for path in sockets where SocketPath.isLive(path) {
            if let info = try? await APIClient(socketPath: path, timeout: .seconds(5)).vmInfo() { infos.append(info) }
        }
        if json { return try printJSON(infos) }
        printTable(["NAME", "PID", "STATE", "MEMORY", "VGPUS", "UPTIME", "API SOCKET"], infos.map { vm in
            [vm.name, "\(vm.pid)", vm.state.rawValue, MemorySize.format(vm.memoryBytes), "\(vm.vgpus)",
             String(format: "%.0fs", vm.uptimeSeconds), vm.apiSocket]
        })
    }
}

struct VMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm", abstract: "Inspect, pause, resume or shut down a running VM through its API.",
        subcommands: [Info.self, Pause.self, Resume.self, Shutdown.self])

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the VM's state as JSON.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        func run() async throws {
            let client = APIClient(socketPath: vm.socketPath)
            try printJSON(try await callAPI { () throws(APIError) in try await client.vmInfo() })
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the VM's vCPUs; devices keep running.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        func run() async throws {
            let client = APIClient(socketPath: vm.socketPath)
            try await callAPI { () throws(APIError) in try await client.pause() }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let a paused VM run again.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        func run() async throws {
            let client = APIClient(socketPath: vm.socketPath)
            try await callAPI { () throws(APIError) in try await client.resume() }
        }
    }

    struct Shutdown: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the VM; its 'malvvm run' exits 0.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        func run() async throws {
            let client = APIClient(socketPath: vm.socketPath)
            try await callAPI { () throws(APIError) in try await client.shutdown() }
        }
    }
}

struct VGPUCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vgpu", abstract: "List, attach and detach the vGPUs of a running VM.",
        subcommands: [List.self, Attach.self, Detach.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The VM's vGPUs, with their submission counters.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        @Flag(name: .long, help: "Print the vGPUs as a JSON array (docs/api/malvvm.yaml's VGPUInfo objects, statistics included).")
        var json = false
        func run() async throws {
            let client = APIClient(socketPath: vm.socketPath)
            let vgpus = try await callAPI { () throws(APIError) in try await client.vgpus() }
            if json { return try printJSON(vgpus) }
            printTable(["ID", "KIND", "PROFILE", "MEMORY", "WEIGHT", "PCI", "HOTPLUGGED", "SUBMISSIONS", "GPU MS"], vgpus.map { v in
                [v.id, v.kind, v.profile.name, MemorySize.format(v.profile.memoryBytes), String(format: "%g", v.profile.weight),
                 v.pciAddress, v.hotplugged ? "yes" : "no", "\(v.statistics?.submissions ?? 0)",
                 String(format: "%.1f", Double(v.statistics?.gpuNanoseconds ?? 0) / 1e6)]
            })
        }
    }

    struct Attach: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hot-plug a new vGPU into the running VM; prints its id.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        @Option(name: .long, help: ArgumentHelp("A profile as --vgpu takes it: 4g, 'profile=4g,weight=2', or a full-vGPU's 'profile=4g,doorbell-exiting=on' with --kind full.", valueName: "spec"))
        var profile: String
        @Option(name: .long, help: "para (virtio-gpu, the default) or full (G-VMCS).")
        var kind: String?
        @Option(name: .long, help: ArgumentHelp("Make the vGPU a client of the GPU daemon on this socket (default: the VM's embedded scheduler).",
                                                valueName: "path"))
        var gpud: String?

        /// The vGPU as `--vgpu` would say it: the profile spec with the kind and daemon added.
        var specification: VGPUSpecification {
            get throws {
                var text = profile
                if let kind { text += ",kind=\(kind)" }
                if let gpud { text += ",gpud=\(gpud)" }
                do { return try VGPUSpecification(parsing: text, defaultDaemonSocket: GPUDaemonAPI.defaultSocket) } catch {
                    throw ValidationError("\(error)")
                }
            }
        }

        func validate() throws {
            if let kind, !["para", "full"].contains(kind) { throw ValidationError("unknown vGPU kind '\(kind)' (known: para, full)") }
            _ = try specification
        }

        func run() async throws {
            let client = APIClient(socketPath: vm.socketPath)
            let request = AttachVGPURequest(try specification)
            let vgpu = try await callAPI { () throws(APIError) in try await client.attachVGPU(request) }
            print(vgpu.id)
        }
    }

    struct Detach: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ask the guest to release a vGPU, then remove it.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        @Argument(help: "The vGPU's id (from 'malvvm vgpu list').") var id: String
        func run() async throws {
            let client = APIClient(socketPath: vm.socketPath)
            try await callAPI { () throws(APIError) in try await client.detachVGPU(id: id) }
        }
    }
}
