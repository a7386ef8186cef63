import Dispatch
import Foundation
import Hypervisor
import MLaaS
import Synchronization
import VGPUCore

/// A loaded MLaaS service as both APIs show it (docs/api/*.yaml, MLaaSService).
public struct MLaaSServiceInfo: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    /// "os-for-ml" or "ml-for-os".
    public var kind: String
    public var description: String?
    /// The module file it was loaded from.
    public var path: String
    /// The VMs attached to it.
    public var vms: [String]

    public init(name: String, version: String, kind: String, description: String? = nil, path: String, vms: [String] = []) {
        self.name = name
        self.version = version
        self.kind = kind
        self.description = description
        self.path = path
        self.vms = vms
    }

    public init(_ info: ServiceInfo) {
        name = info.name
        version = info.version
        kind = info.kind.rawValue
        description = info.description
        path = info.path
        vms = info.vms
    }
}

/// POST /v1/mlaas.
public struct LoadServiceRequest: Codable, Sendable, Equatable {
    /// An absolute path inside the server's module directory, or a file name in it
    /// (`libpreprocess.so`, or the service name `preprocess`).
    public var path: String

    public init(path: String) { self.path = path }
}

/// What the MLaaS routes ask of a VM's process or the GPU daemon.
public protocol MLaaSControl: Sendable {
    func services() -> [MLaaSServiceInfo]
    func loadService(_ request: LoadServiceRequest) async throws(APIError) -> MLaaSServiceInfo
    func unloadService(name: String) async throws(APIError)
}

/// The MLaaS side of one process: its `ServiceRegistry`, and in a VM's process the VM that
/// every loaded service is attached to (its disks granted whole, read-only).
public final class MLaaSController: MLaaSControl {
    /// The VM a `malvvm run` attaches its services to.
    public struct AttachedVM: Sendable {
        public var name: String
        /// The VM's disks' backing files, in --disk order.
        public var diskPaths: [String]
        /// Their virtio-blk devices, in the same order, for the services' block hooks (none: a
        /// service can read the disks but not watch them).
        public var disks: [VirtioBlock]

        public init(name: String, diskPaths: [String], disks: [VirtioBlock] = []) {
            self.name = name
            self.diskPaths = diskPaths
            self.disks = disks
        }
    }

    public let registry: ServiceRegistry
    public let vm: AttachedVM?
    /// The services the VM's guest may use through its vGPUs (`run --mlaas`), in that order.
    public let permitted: [String]
    /// The services the guest enabled, each with the binding it enabled: a service unloaded
    /// and loaded again is not enabled until the guest asks again.
    private let enabled = Mutex<[String: ServiceBinding]>([:])
    /// One bridge per vGPU the guest enabled services through: a service keeps its scratch
    /// buffers across enables through the same vGPU.
    private let bridges = Mutex<[ObjectIdentifier: MLaaSGPUBridge]>([:])

    public init(registry: ServiceRegistry, vm: AttachedVM? = nil, permitted: [String] = []) {
        self.registry = registry
        self.vm = vm
        self.permitted = permitted
    }

    /// `--mlaas NAME`: loads `lib<NAME>.so` from the module directory and attaches the VM.
    public func enable(service name: String) throws(MLaaSError) {
        _ = try attachVM(to: try registry.load(service: name))
    }

    /// `--mlaas-config NAME:PARAMETERS`: the operator's parameters for a service this VM
    /// selected (its `configure`, as a guest's enable would; no vGPU behind it).
    public func configure(service name: String, parameters: String) throws(MLaaSError) {
        guard let binding = binding(name) else {
            throw vm.map { MLaaSError.notAttached(service: name, vm: $0.name) } ?? .unknownService(name)
        }
        try binding.configure(parameters)
    }

    public func services() -> [MLaaSServiceInfo] { registry.list().map(MLaaSServiceInfo.init) }

    public func loadService(_ request: LoadServiceRequest) async throws(APIError) -> MLaaSServiceInfo {
        // A service's initialize (and attach) may take a while: not on the server's threads.
        let outcome: Result<ServiceInfo, MLaaSError> = await offThread { () throws(MLaaSError) -> ServiceInfo in
            try self.attachVM(to: try self.registry.load(request.path))
        }
        switch outcome {
        case let .success(info): return MLaaSServiceInfo(info)
        case let .failure(error): throw APIError(error)
        }
    }

    public func unloadService(name: String) async throws(APIError) {
        let outcome: Result<Void, MLaaSError> = await offThread { () throws(MLaaSError) in try self.registry.unload(name) }
        if case let .failure(error) = outcome { throw APIError(error) }
    }

    /// Attaches this process's VM (if any) to a service just loaded; a service that refuses the
    /// VM is unloaded again, so a failed load leaves nothing behind.
    private func attachVM(to loaded: ServiceInfo) throws(MLaaSError) -> ServiceInfo {
        guard let vm else { return loaded }
        do throws(MLaaSError) {
            try registry.attach(service: loaded.name,
                                vm: try VMDescription.grantingWholeDisks(name: vm.name, paths: vm.diskPaths, devices: vm.disks))
        } catch {
            try? registry.unload(loaded.name)
            throw error
        }
        return registry.list().first { $0.name == loaded.name } ?? loaded
    }

    private func offThread<T: Sendable>(_ body: @escaping @Sendable () throws(MLaaSError) -> T) async -> Result<T, MLaaSError> {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                do throws(MLaaSError) { continuation.resume(returning: .success(try body())) } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
    }
}

/// The guest's MLaaS requests through its vGPUs (docs/vgpu-protocol.md, "MLaaS requests").
extension MLaaSController: MLaaSGuestPort {
    public func mlaasServices() -> [MLaaSGuestService] {
        let loaded = registry.list()
        return permitted.map { name in
            let binding = self.binding(name)
            let info = loaded.first { $0.name == name }
            let kind: UInt32 = switch info?.kind {
            case .osForML?: 1
            case .mlForOS?: 2
            case nil: 0
            }
            return MLaaSGuestService(name: name, kind: binding == nil ? 0 : kind, loaded: binding != nil,
                                     enabled: binding.map { b in enabled.withLock { $0[name] === b } } ?? false)
        }
    }

    public func mlaasEnable(_ name: String, parameters: [UInt8], gpu: (any MLaaSContextGPU)?) throws(MLaaSGuestError) {
        let binding = try permittedBinding(name)
        let bridge = gpu.map { device in
            bridges.withLock { $0[ObjectIdentifier(device), default: MLaaSGPUBridge(device)] }
        }
        if let bridge, let gpu { bridges.withLock { $0[ObjectIdentifier(gpu)] = bridge } }
        do throws(MLaaSError) { try binding.configure(bytes: parameters, gpu: bridge) } catch {
            throw Self.guestError(error, name)
        }
        enabled.withLock { $0[name] = binding }
    }

    public func mlaasDisable(_ name: String) throws(MLaaSGuestError) {
        let binding = try permittedBinding(name)
        // The guest's enable is withdrawn; the service stops the VM's work (its `disable`) and
        // keeps the VM attached.
        let was = enabled.withLock { $0.removeValue(forKey: name) }
        guard was === binding else {
            throw MLaaSGuestError(.notEnabled, "service '\(name)' is not enabled")
        }
        do throws(MLaaSError) { try binding.disable() } catch { throw Self.guestError(error, name) }
    }

    public func mlaasRequest(_ name: String, request: [UInt8], capacity: Int) throws(MLaaSGuestError) -> [UInt8] {
        let binding = try permittedBinding(name)
        guard enabled.withLock({ $0[name] === binding }) else {
            throw MLaaSGuestError(.notEnabled, "service '\(name)' is not enabled")
        }
        do throws(MLaaSError) { return try binding.request(request, capacity: capacity) } catch {
            throw Self.guestError(error, name)
        }
    }

    private func binding(_ name: String) -> ServiceBinding? {
        guard let vm else { return nil }
        return registry.binding(service: name, vm: vm.name)
    }

    /// The binding of a service this VM may use: not permitted (in `--mlaas`), no module of
    /// that name in the directory, or not loaded now are the guest's errors.
    private func permittedBinding(_ name: String) throws(MLaaSGuestError) -> ServiceBinding {
        guard permitted.contains(name) else {
            let file = registry.directory.path + "/" + ModuleDirectory.fileName(forService: name)
            let known = registry.list().contains { $0.name == name } || FileManager.default.fileExists(atPath: file)
            throw known ? MLaaSGuestError(.notPermitted, "service '\(name)' is not permitted for this VM")
                        : MLaaSGuestError(.unknownService, "no service '\(name)'")
        }
        guard let binding = binding(name) else {
            throw MLaaSGuestError(.notLoaded, "service '\(name)' is not loaded")
        }
        return binding
    }

    static func guestError(_ error: MLaaSError, _ name: String) -> MLaaSGuestError {
        switch error {
        case let .refused(_, reason): MLaaSGuestError(.refused, "\(name): \(reason)")
        case .serviceUnloaded, .notAttached, .unknownService: MLaaSGuestError(.notLoaded, "service '\(name)' is not loaded")
        default: MLaaSGuestError(.internalError, error.description)
        }
    }
}

extension APIError {
    /// A registry error as an HTTP status: unknown names 404, clashes 409, a module's own
    /// failure 500, everything about the request (paths, files, descriptors) 400.
    public init(_ error: MLaaSError) {
        switch error {
        case .unknownService, .notAttached: self = .notFound(error.description)
        case .duplicateName, .alreadyAttached, .staleImage: self = .conflict(error.description)
        case .initFailed, .attachFailed, .badGrant, .serviceUnloaded, .refused: self = .failed(error.description)
        case .moduleDirectory, .notInModuleDirectory, .insecureModule, .noSuchModule, .cannotLoad, .notAService,
             .wrongABIVersion, .invalidDescriptor, .nameMismatch, .invalidName:
            self = .badRequest(error.description)
        }
    }
}
