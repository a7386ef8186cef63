import ArgumentParser
import ControlAPI
import Dispatch
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

/// Runs one API call to completion on the calling thread (the CLI is synchronous).
func callAPI<T: Sendable>(_ operation: @escaping @Sendable () async throws(APIError) -> T) throws -> T {
    let result = LockedResult<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do throws(APIError) { result.set(.success(try await operation())) } catch { result.set(.failure(error)) }
        done.signal()
    }
    done.wait()
    switch result.get()! {
    case let .success(value): return value
    case let .failure(error): throw RuntimeFailure(message: error.message)
    }
}

final class LockedResult<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<T, APIError>?
    func set(_ new: Result<T, APIError>) { lock.withLock { value = new } }
    func get() -> Result<T, APIError>? { lock.withLock { value } }
}

struct PS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps", abstract: "List the running VMs (those serving an API socket in the socket directory).")

    @Option(name: .long, help: ArgumentHelp("The socket directory (default: $XDG_RUNTIME_DIR/malvvm, /run/malvvm for root, else /tmp/malvvm-UID).",
                                            valueName: "dir"))
    var dir: String?

    @Flag(name: .long, help: "Print the VMs as a JSON array of 'malvvm vm info' objects.")
    var json = false

    func run() throws {
        let sockets = SocketPath.sockets(in: dir ?? SocketPath.defaultDirectory)
        // A socket nobody answers on was left by a VM that died: not a running VM.
        let infos = sockets.filter(SocketPath.isLive).compactMap { path in
            try? callAPI { () throws(APIError) in try await APIClient(socketPath: path, timeout: .seconds(5)).vmInfo() }
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

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the VM's state as JSON.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        func run() throws {
            let client = APIClient(socketPath: vm.socketPath)
            try printJSON(try callAPI { () throws(APIError) in try await client.vmInfo() })
        }
    }

    struct Pause: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the VM's vCPUs; devices keep running.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        func run() throws {
            let client = APIClient(socketPath: vm.socketPath)
            try callAPI { () throws(APIError) in try await client.pause() }
        }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let a paused VM run again.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        func run() throws {
            let client = APIClient(socketPath: vm.socketPath)
            try callAPI { () throws(APIError) in try await client.resume() }
        }
    }

    struct Shutdown: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the VM; its 'malvvm run' exits 0.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        func run() throws {
            let client = APIClient(socketPath: vm.socketPath)
            try callAPI { () throws(APIError) in try await client.shutdown() }
        }
    }
}

struct VGPUCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vgpu", abstract: "List, attach and detach the vGPUs of a running VM.",
        subcommands: [List.self, Attach.self, Detach.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The VM's vGPUs, with their submission counters.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        @Flag(name: .long, help: "Print the vGPUs as a JSON array (docs/api/malvvm.yaml's VGPUInfo objects, statistics included).")
        var json = false
        func run() throws {
            let client = APIClient(socketPath: vm.socketPath)
            let vgpus = try callAPI { () throws(APIError) in try await client.vgpus() }
            if json { return try printJSON(vgpus) }
            printTable(["ID", "KIND", "PROFILE", "MEMORY", "WEIGHT", "PCI", "HOTPLUGGED", "SUBMISSIONS", "GPU MS"], vgpus.map { v in
                [v.id, v.kind, v.profile.name, MemorySize.format(v.profile.memoryBytes), String(format: "%g", v.profile.weight),
                 v.pciAddress, v.hotplugged ? "yes" : "no", "\(v.statistics?.submissions ?? 0)",
                 String(format: "%.1f", Double(v.statistics?.gpuNanoseconds ?? 0) / 1e6)]
            })
        }
    }

    struct Attach: ParsableCommand {
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

        func run() throws {
            let client = APIClient(socketPath: vm.socketPath)
            let request = AttachVGPURequest(try specification)
            let vgpu = try callAPI { () throws(APIError) in try await client.attachVGPU(request) }
            print(vgpu.id)
        }
    }

    struct Detach: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ask the guest to release a vGPU, then remove it.")
        @Argument(help: "The VM's name or API socket path.") var vm: VMArgument
        @Argument(help: "The vGPU's id (from 'malvvm vgpu list').") var id: String
        func run() throws {
            let client = APIClient(socketPath: vm.socketPath)
            try callAPI { () throws(APIError) in try await client.detachVGPU(id: id) }
        }
    }
}
