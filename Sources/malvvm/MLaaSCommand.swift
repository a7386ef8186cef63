import ArgumentParser
import ControlAPI
import Foundation
import MLaaS

/// `malvvm mlaas list|load|unload`: the MLaaS services of the GPU daemon or of one VM, through
/// their REST APIs (docs/mlaas.md).
struct MLaaSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlaas", abstract: "List, load and unload the MLaaS service modules of the GPU daemon or of a running VM.",
        subcommands: [List.self, Load.self, Unload.self])

    /// Whose services: exactly one of --gpud and --api.
    struct Target: ParsableArguments {
        @Option(name: .long, help: ArgumentHelp("The GPU daemon's socket (its API is PATH.api).", valueName: "socket"))
        var gpud: String?

        @Option(name: .long, help: ArgumentHelp("A running VM: its name or API socket path.", valueName: "socket"))
        var api: VMArgument?

        func validate() throws {
            guard (gpud == nil) != (api == nil) else { throw ValidationError("name whose services: --gpud SOCKET or --api SOCKET") }
        }

        var client: APIClient {
            if let gpud { return APIClient(socketPath: GPUDaemonAPI.apiSocket(forVGPUSocket: gpud), peer: "GPU daemon") }
            return APIClient(socketPath: api!.socketPath)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The loaded services: name, version, kind, attached VMs, module file.")
        @OptionGroup var target: Target
        @Flag(name: .long, help: "Print the services as a JSON array, as the API returns them.")
        var json = false

        func run() async throws {
            let client = target.client
            let services = try await callAPI { () throws(APIError) in try await client.mlaasServices() }
            if json { return try printJSON(services) }
            printTable(["NAME", "VERSION", "KIND", "VMS", "PATH"], services.map { s in
                [s.name, s.version, s.kind, s.vms.isEmpty ? "-" : s.vms.joined(separator: ","), s.path]
            })
        }
    }

    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load a service module from the server's module directory; prints the service's name.",
            discussion: """
            PATH is a path inside the server's module directory (--mlaas-dir of 'malvvm gpud' or \
            'malvvm run'), a file name in it, or a service name (NAME for libNAME.so). A VM attaches \
            itself to what it loads.
            """)
        @OptionGroup var target: Target
        @Argument(help: "The module: a path, a file name in the module directory, or a service name.") var path: String

        func run() async throws {
            let client = target.client
            // A relative path with a directory in it means the caller's working directory; a bare
            // name is the server's to look up in its module directory.
            let request = LoadServiceRequest(path: path.contains("/") && !path.hasPrefix("/")
                ? FileManager.default.currentDirectoryPath + "/" + path : path)
            let service = try await callAPI { () throws(APIError) in try await client.loadService(request) }
            print(service.name)
        }
    }

    struct Unload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Unload a service: attached VMs are detached first (their next request gets an error).")
        @OptionGroup var target: Target
        @Argument(help: "The service's name (from 'malvvm mlaas list').") var name: String

        func run() async throws {
            let client = target.client
            try await callAPI { () throws(APIError) in try await client.unloadService(name: name) }
        }
    }
}

/// `--mlaas-dir`: the operator's module directory.
struct ModuleDirectoryArgument: ExpressibleByArgument {
    let directory: ModuleDirectory

    init?(argument: String) {
        guard !argument.isEmpty else { return nil }
        directory = ModuleDirectory(argument)
    }
}

/// `--mlaas NAME[,NAME]`: service names, each [a-z0-9][a-z0-9-]*.
/// `--mlaas-config NAME:PARAMETERS`: a service name, then its parameters (its own format, any
/// text; the service checks them when the VM starts).
struct ServiceParametersArgument: ExpressibleByArgument {
    let name: String
    let parameters: String

    init?(argument: String) {
        guard let colon = argument.firstIndex(of: ":") else { return nil }
        name = String(argument[..<colon])
        parameters = String(argument[argument.index(after: colon)...])
        guard ServiceABI.isValidName(name) else { return nil }
    }
}

struct ServiceNamesArgument: ExpressibleByArgument {
    let names: [String]

    init?(argument: String) {
        let names = argument.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !names.isEmpty, names.allSatisfy(ServiceABI.isValidName), Set(names).count == names.count else { return nil }
        self.names = names
    }
}
