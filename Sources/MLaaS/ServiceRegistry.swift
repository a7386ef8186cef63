import CMLaaS
import Glibc
import Logging
import Platform
import Synchronization

/// A loaded service as `malvvm mlaas list` shows it.
public struct ServiceInfo: Sendable, Equatable {
    public let name: String
    public let version: String
    public let kind: ServiceKind
    public let description: String?
    /// The module file it was loaded from (canonical).
    public let path: String
    /// The VMs attached to it, in the order they attached.
    public let vms: [String]
}

/// The service modules one process (a `malvvm run` or `malvvm gpud`) has loaded, and the VMs
/// attached to each.
///
/// Modules load only from `directory` (`ModuleDirectory` says what is refused and why), with
/// dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE): a module whose code is Swift cannot be unmapped
/// safely (the Swift runtime keeps pointers into its metadata), so unloading ends the service —
/// its VMs detached, its `unload` called, its handle closed — and leaves its code mapped.
///
/// Thread-safe. Loads and unloads are serialised; a service's lifecycle calls never overlap
/// each other or its requests (`ServiceBinding`), as the ABI promises the module.
public final class ServiceRegistry: @unchecked Sendable {
    public let directory: ModuleDirectory
    private let logger: Logger
    /// Serialises load and unload, so two loads of one name cannot both pass the duplicate check.
    private let loadLock = Monitor()
    private let services = Mutex<[LoadedService]>([])
    /// The GPU scheduler of this process, for services' batch-duration models (nil: none here).
    public let scheduling: (any ServiceScheduling)?

    public init(directory: ModuleDirectory, scheduling: (any ServiceScheduling)? = nil,
                logger: Logger = Logger(label: "malvvm.mlaas")) {
        self.directory = directory
        self.scheduling = scheduling
        self.logger = logger
    }

    /// Loads the module `request` names (an absolute path in the directory, or a file name in
    /// it), checks its descriptor and initialises it.
    @discardableResult
    public func load(_ request: String) throws(MLaaSError) -> ServiceInfo {
        try loadLock.withLock { () throws(MLaaSError) in try loadLocked(request, expecting: nil).info }
    }

    /// Loads the service called `name` from `lib<name>.so` in the directory (`--mlaas NAME`).
    @discardableResult
    public func load(service name: String) throws(MLaaSError) -> ServiceInfo {
        guard ServiceABI.isValidName(name) else { throw .invalidName(name) }
        return try loadLock.withLock { () throws(MLaaSError) in
            try loadLocked(ModuleDirectory.fileName(forService: name), expecting: name).info
        }
    }

    public func list() -> [ServiceInfo] { services.withLock { $0 }.map(\.info) }

    /// Detaches every VM from the service (their next request gets `.serviceUnloaded`), calls
    /// its `unload` and closes the module.
    public func unload(_ name: String) throws(MLaaSError) {
        try loadLock.withLock { () throws(MLaaSError) in
            let service = services.withLock { list -> LoadedService? in
                guard let index = list.firstIndex(where: { $0.name == name }) else { return nil }
                return list.remove(at: index)
            }
            guard let service else { throw .unknownService(name) }
            service.close()
            logger.info("mlaas: unloaded \(name) (\(service.path))")
        }
    }

    /// Unloads every service, the last loaded first (a process that ends).
    public func unloadAll() {
        loadLock.withLock {
            let all = services.withLock { list in
                defer { list.removeAll() }
                return list
            }
            for service in all.reversed() { service.close() }
        }
    }

    /// Attaches `vm` to the service `name`: its disks are granted read-only for the service's
    /// `read_range`, and the service's `attach` runs.
    @discardableResult
    public func attach(service name: String, vm: VMDescription) throws(MLaaSError) -> ServiceBinding {
        guard let service = find(name) else { throw .unknownService(name) }
        return try service.attach(vm)
    }

    public func detach(service name: String, vm: String) throws(MLaaSError) {
        guard let service = find(name) else { throw .unknownService(name) }
        try service.detach(vm: vm)
    }

    /// Detaches `vm` from every service it is attached to (the VM ended).
    public func detachEverywhere(vm: String) {
        for service in services.withLock({ $0 }) { try? service.detach(vm: vm) }
    }

    /// The binding through which `vm` asks the service `name`, if attached.
    public func binding(service name: String, vm: String) -> ServiceBinding? {
        find(name)?.binding(vm: vm)
    }

    private func find(_ name: String) -> LoadedService? { services.withLock { $0.first { $0.name == name } } }

    private func loadLocked(_ request: String, expecting expected: String?) throws(MLaaSError) -> LoadedService {
        let path = try directory.resolve(request)
        let handle = try MappedImages.open(path)
        var keep = false
        defer { if !keep { dlclose(handle) } }
        guard let symbol = dlsym(handle, ServiceABI.entrySymbol) else { throw .notAService(path: path) }
        let entry = unsafeBitCast(symbol, to: malv_mlaas_entry_fn.self)
        guard let raw = entry() else { throw .invalidDescriptor(path: path, reason: "\(ServiceABI.entrySymbol) returned NULL") }
        let descriptor = try ServiceDescriptor(validating: raw, path: path)
        if let expected, descriptor.name != expected {
            throw .nameMismatch(path: path, expected: expected, declared: descriptor.name)
        }
        if let loaded = find(descriptor.name) { throw .duplicateName(name: descriptor.name, loadedFrom: loaded.path) }
        let service = try LoadedService(descriptor: descriptor, path: path, handle: handle, scheduling: scheduling)
        keep = true
        services.withLock { $0.append(service) }
        logger.info("mlaas: loaded \(descriptor.name) \(descriptor.version) (\(descriptor.kind.rawValue)) from \(path)")
        return service
    }
}

/// The module images this process has mapped, by canonical path, with the identity of the file
/// each was mapped from: dlopen of a path already mapped returns the old image, so a rebuilt
/// file at the same path is refused rather than silently ignored.
enum MappedImages {
    struct Identity: Equatable {
        let device: UInt64
        let inode: UInt64
        let size: Int
        let modified: Int
        let modifiedNanoseconds: Int

        init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int(info.st_size)
            modified = info.st_mtim.tv_sec
            modifiedNanoseconds = info.st_mtim.tv_nsec
        }
    }

    private static let mapped = Mutex<[String: Identity]>([:])

    static func open(_ path: String) throws(MLaaSError) -> UnsafeMutableRawPointer {
        guard let identity = Identity(path: path) else { throw .cannotLoad(path: path, reason: ModuleDirectory.errnoString()) }
        if let earlier = dlopen(path, RTLD_NOW | RTLD_NOLOAD) {
            dlclose(earlier)
            if let recorded = mapped.withLock({ $0[path] }), recorded != identity { throw .staleImage(path: path) }
        }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let reason = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            // dlerror repeats the path first ("PATH: invalid ELF header"): keep the reason.
            throw .cannotLoad(path: path, reason: reason.hasPrefix(path + ": ") ? String(reason.dropFirst(path.count + 2)) : reason)
        }
        mapped.withLock { $0[path] = identity }
        return handle
    }
}

/// A VM attached to a service.
struct Attachment {
    let vm: String
    let handle: UInt64
    let state: UnsafeMutableRawPointer?
    let binding: ServiceBinding
}

/// One initialised service: its module, its host table, its state and the VMs attached.
final class LoadedService: @unchecked Sendable {
    let descriptor: ServiceDescriptor
    let path: String
    private let handle: UnsafeMutableRawPointer
    let context: HostContext
    private let table: UnsafeMutablePointer<malv_mlaas_host>
    private let state: UnsafeMutableRawPointer?

    /// Guards everything below: lifecycle calls run alone; requests run beside each other.
    private let monitor = Monitor()
    private let changed: Monitor.Condition
    private var lifecycleBusy = false
    private var requestsInFlight = 0
    /// Set when an unload begins: new requests and attaches are refused from then on.
    private var closing = false
    private var attachments: [Attachment] = []

    private static let nextVMHandle = Atomic<UInt64>(1)
    private static let nextRangeHandle = Atomic<UInt64>(0x1000)

    var name: String { descriptor.name }

    init(descriptor: ServiceDescriptor, path: String, handle: UnsafeMutableRawPointer,
         scheduling: (any ServiceScheduling)?) throws(MLaaSError) {
        self.descriptor = descriptor
        self.path = path
        self.handle = handle
        context = HostContext(serviceName: descriptor.name, scheduling: scheduling)
        table = context.makeTable()
        changed = monitor.makeCondition()
        var state: UnsafeMutableRawPointer?
        let status = descriptor.initialize(table, &state)
        guard status == MALV_MLAAS_OK else {
            table.deallocate()
            throw .initFailed(name: descriptor.name, status: status)
        }
        self.state = state
    }

    var info: ServiceInfo {
        ServiceInfo(name: descriptor.name, version: descriptor.version, kind: descriptor.kind, description: descriptor.description,
                    path: path, vms: monitor.withLock { attachments.map(\.vm) })
    }

    func binding(vm: String) -> ServiceBinding? { monitor.withLock { attachments.first { $0.vm == vm }?.binding } }

    func attach(_ vm: VMDescription) throws(MLaaSError) -> ServiceBinding {
        try lifecycle { () throws(MLaaSError) in
            guard !monitor.withLock({ attachments.contains { $0.vm == vm.name } }) else {
                throw .alreadyAttached(service: name, vm: vm.name)
            }
            let vmHandle = Self.nextVMHandle.wrappingAdd(1, ordering: .relaxed).oldValue
            var grants: [OpenGrant] = []
            for grant in vm.disks {
                grants.append(try OpenGrant(handle: Self.nextRangeHandle.wrappingAdd(1, ordering: .relaxed).oldValue, grant: grant))
            }
            // Readable from inside attach: the service may look at its ranges right away.
            context.attach(vm: vmHandle, name: vm.name, grants: grants)
            let ranges = grants.map { grant in
                malv_mlaas_disk_range(handle: grant.handle, disk_index: UInt32(grant.grant.diskIndex),
                                      flags: UInt32(MALV_MLAAS_RANGE_READ_ONLY), length: grant.grant.length)
            }
            var vmState: UnsafeMutableRawPointer?
            let status = ranges.withUnsafeBufferPointer { ranges in
                vm.name.withCString { name in
                    var description = malv_mlaas_vm(struct_size: UInt32(MemoryLayout<malv_mlaas_vm>.size),
                                                    disk_range_count: UInt32(ranges.count), handle: vmHandle, name: name,
                                                    disk_ranges: ranges.baseAddress)
                    return descriptor.attach(state, &description, &vmState)
                }
            }
            guard status == MALV_MLAAS_OK else {
                context.detach(vm: vmHandle)
                throw .attachFailed(service: name, vm: vm.name, reason: ServiceABI.statusString(status))
            }
            let binding = ServiceBinding(service: self, vm: vm.name, handle: vmHandle)
            monitor.withLock { attachments.append(Attachment(vm: vm.name, handle: vmHandle, state: vmState, binding: binding)) }
            return binding
        }
    }

    func detach(vm: String) throws(MLaaSError) {
        try lifecycle { () throws(MLaaSError) in
            let attachment = monitor.withLock { () -> Attachment? in
                guard let index = attachments.firstIndex(where: { $0.vm == vm }) else { return nil }
                return attachments.remove(at: index)
            }
            guard let attachment else { throw .notAttached(service: name, vm: vm) }
            // The VM's block hooks end before its state does: no read calls into freed state.
            context.stopHooks(vm: attachment.handle)
            descriptor.detach(state, attachment.state)
            context.detach(vm: attachment.handle)
        }
    }

    /// Refuses new requests, waits for those in flight, detaches every VM, calls unload and
    /// closes the module handle.
    func close() {
        monitor.withLock {
            closing = true
            changed.broadcast()
        }
        // Cannot throw: lifecycle only refuses when closing and not allowed to.
        try? lifecycle(whileClosing: true) { () throws(MLaaSError) in
            let all = monitor.withLock {
                defer { attachments.removeAll() }
                return attachments
            }
            for attachment in all {
                context.stopHooks(vm: attachment.handle)
                descriptor.detach(state, attachment.state)
                context.detach(vm: attachment.handle)
            }
            descriptor.unload(state)
        }
        table.deallocate()
        dlclose(handle)
    }

    /// Runs `body` with a request of VM `handle` counted in flight (lifecycle calls wait for it).
    func request<T>(handle: UInt64, vm: String, _ body: (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> T) throws(MLaaSError) -> T {
        monitor.lock()
        while lifecycleBusy && !closing { changed.wait() }
        if closing {
            monitor.unlock()
            throw .serviceUnloaded(service: name, vm: vm)
        }
        guard let attachment = attachments.first(where: { $0.handle == handle }) else {
            monitor.unlock()
            throw .notAttached(service: name, vm: vm)
        }
        requestsInFlight += 1
        monitor.unlock()
        defer {
            monitor.withLock {
                requestsInFlight -= 1
                if requestsInFlight == 0 { changed.broadcast() }
            }
        }
        return body(state, attachment.state)
    }

    private func lifecycle<T>(whileClosing: Bool = false, _ body: () throws(MLaaSError) -> T) throws(MLaaSError) -> T {
        monitor.lock()
        while lifecycleBusy || requestsInFlight > 0 { changed.wait() }
        if closing && !whileClosing {
            monitor.unlock()
            throw .unknownService(name)
        }
        lifecycleBusy = true
        monitor.unlock()
        defer {
            monitor.withLock {
                lifecycleBusy = false
                changed.broadcast()
            }
        }
        return try body()
    }
}

/// How one VM asks one service: what the VM's process (for its guest's MLaaS requests through
/// a vGPU, `MLaaSController`) holds. Once the VM is detached — or the service unloaded — every call throws.
public final class ServiceBinding: Sendable {
    private let service: LoadedService
    public let vm: String
    let handle: UInt64
    /// Calls for one VM never overlap (the ABI's promise).
    private let requests = Mutex(())

    init(service: LoadedService, vm: String, handle: UInt64) {
        self.service = service
        self.vm = vm
        self.handle = handle
    }

    public var serviceName: String { service.name }

    /// Hands `parameters` (the service's own format) to the service's `configure`.
    public func configure(_ parameters: String, gpu: (any ServiceGPU)? = nil) throws(MLaaSError) {
        try configure(bytes: Array(parameters.utf8), gpu: gpu)
    }

    /// `configure` with `gpu` as the VM's GPU from now on (the vGPU the guest asked through;
    /// nil: none, the service's GPU calls fail with E_UNSUPPORTED).
    public func configure(bytes: [UInt8], gpu: (any ServiceGPU)? = nil) throws(MLaaSError) {
        let descriptor = service.descriptor
        let (status, message) = try requests.withLock { _ throws(MLaaSError) in
            try service.request(handle: handle, vm: vm) { state, vmState -> (Int32, String) in
                service.context.bindGPU(vm: handle, gpu)
                guard let configure = descriptor.configure else {
                    return bytes.isEmpty ? (MALV_MLAAS_OK, "") : (MALV_MLAAS_E_UNSUPPORTED, "it takes no parameters")
                }
                var error = [CChar](repeating: 0, count: ServiceABI.errorMax)
                let status = bytes.withUnsafeBytes { parameters in
                    configure(state, vmState, parameters.baseAddress, UInt64(parameters.count), &error, UInt64(error.count))
                }
                error[error.count - 1] = 0
                return (status, ServiceDescriptor.string(error, max: error.count) ?? "")
            }
        }
        guard status == MALV_MLAAS_OK else {
            let line = message.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            throw .refused(service: descriptor.name, reason: line.isEmpty ? ServiceABI.statusString(status) : line)
        }
    }

    /// The guest withdrew its enable: the service's `disable` (if it has one) stops the VM's work.
    public func disable() throws(MLaaSError) {
        let descriptor = service.descriptor
        try requests.withLock { _ throws(MLaaSError) in
            try service.request(handle: handle, vm: vm) { state, vmState in descriptor.disable?(state, vmState) }
        }
    }

    /// A guest request to the service (its own format); at most `capacity` bytes come back.
    public func request(_ bytes: [UInt8], capacity: Int) throws(MLaaSError) -> [UInt8] {
        let descriptor = service.descriptor
        guard let call = descriptor.request else { throw .refused(service: descriptor.name, reason: "it takes no requests") }
        let (result, response, message) = try requests.withLock { _ throws(MLaaSError) in
            try service.request(handle: handle, vm: vm) { state, vmState -> (Int64, [UInt8], String) in
                var error = [CChar](repeating: 0, count: ServiceABI.errorMax)
                var response = [UInt8](repeating: 0, count: capacity)
                let result = bytes.withUnsafeBytes { request in
                    response.withUnsafeMutableBytes { out in
                        call(state, vmState, request.baseAddress, UInt64(request.count), out.baseAddress, UInt64(out.count),
                             &error, UInt64(error.count))
                    }
                }
                error[error.count - 1] = 0
                return (result, response, ServiceDescriptor.string(error, max: error.count) ?? "")
            }
        }
        guard result >= 0 else {
            let line = message.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            throw .refused(service: descriptor.name, reason: line.isEmpty ? ServiceABI.statusString(Int32(clamping: result)) : line)
        }
        guard result <= Int64(capacity) else {
            throw .refused(service: descriptor.name, reason: "answered \(result) bytes into a \(capacity)-byte response")
        }
        return Array(response.prefix(Int(result)))
    }
}
