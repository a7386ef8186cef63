import Foundation
import Glibc
import GPUHost
import Hypervisor
import Logging
import Platform
import Synchronization
import VGPUCore
import VirtioGPU

/// The GPU daemon (`malvvm gpud`): the one process that owns a physical GPU and its scheduler
/// and serves every VM's para-vGPUs over the vgpu-user protocol (`VGPUUser`).
///
/// Each connection is one vGPU, served by a `VirtioGPU` on the VM's own guest memory. A VM that
/// dies (its connection ends) loses its vGPU: queued work is cancelled, its GPU buffers are
/// zeroed and freed and its scheduler clients removed, so its share goes to the others at the
/// scheduler's next decision. Nothing a VM sends can stop the daemon or reach another VM.
public final class VGPUServer: @unchecked Sendable {
    public let scheduler: GPUScheduler
    /// Where VMs connect (the vgpu-user socket).
    public let socketPath: String
    public let started = Date()
    private let listener: MessageListener
    /// Held while this daemon serves `socketPath` (`SOCKET.lock`).
    private let lock: DaemonLock
    private let logger: Logger
    /// The profiles VMs may ask for by name, as the operator defined them. A VM names a
    /// profile; it never says what memory, weight or contexts it gets.
    public let profiles: [String: VGPUProfile]
    /// The most guest RAM one VM may share with the daemon (its regions in all).
    public let guestMemoryLimit: UInt64
    /// The daemon's MLaaS services for the VMs it serves (nil: none).
    private let services: (any VGPUSessionServices)?
    private let sessions = Mutex<[UInt64: Session]>([:])
    private let nextSessionID = Atomic<UInt64>(1)
    private var acceptThread: NativeThread?

    /// What the daemon knows of one connected vGPU.
    public struct VGPUSession: Sendable {
        public let id: UInt64
        public let vm: String
        public let vgpu: String
        public let profile: VGPUProfile
        public let connected: Date
        /// Whether the guest's driver has the device running (DRIVER_OK, not reset since).
        public let active: Bool
        public let statistics: VGPUStatistics
        /// For people ("vm/vgpu0", its clients' names start with it); code finds the
        /// vGPU's scheduler clients by their `ClientOwner`.
        public var deviceName: String { "\(vm)/\(vgpu)" }
    }

    /// A vGPU whose VM hung up or died, and how long giving its share back took.
    public struct Departure: Sendable {
        public let vm: String
        public let vgpu: String
        public let at: Date
        /// End of the connection seen, on the scheduler's clock (`nanosecondsSinceStart`).
        public let disconnectedNanoseconds: UInt64
        /// From the end of the connection to its clients removed (their share the others'),
        /// their batches on the GPU retired and their buffers zeroed and freed.
        public let releaseNanoseconds: UInt64
        public var deviceName: String { "\(vm)/\(vgpu)" }
    }

    /// The latest departures, oldest first (at most `departureLogSize`).
    public var departures: [Departure] { departureLog.withLock { $0 } }
    static let departureLogSize = 32
    private let departureLog = Mutex<[Departure]>([])

    /// Takes `SOCKET.lock` and starts listening on `socketPath` (a stale socket is replaced; a
    /// socket another daemon holds the lock of, or one something else listens on, is an error).
    /// With `activated`, serves the socket systemd passed instead (`socketPath` is its path),
    /// leaving it bound for the service manager when the daemon stops.
    public init(scheduler: GPUScheduler, socketPath: String, activated: ActivatedSocket? = nil,
                profiles: [String: VGPUProfile] = VGPUProfile.named,
                guestMemoryLimit: UInt64 = GuestMemory.defaultSharingLimit,
                services: (any VGPUSessionServices)? = nil,
                logger: Logger = Logger(label: "malvvm.gpud")) throws(ChannelError) {
        let lock = try DaemonLock(socketPath: socketPath)
        if activated == nil {
            if MessageChannel.isLive(socketPath) {
                lock.release()
                throw ChannelError("something is already serving '\(socketPath)'")
            }
            unlink(socketPath)
        }
        self.lock = lock
        self.scheduler = scheduler
        self.socketPath = socketPath
        self.profiles = profiles
        self.guestMemoryLimit = guestMemoryLimit
        self.services = services
        self.logger = logger
        do {
            if let activated {
                listener = try MessageListener(adopting: activated)
            } else {
                listener = try MessageListener(path: socketPath)
            }
        } catch {
            lock.release()
            throw error
        }
        do {
            acceptThread = try NativeThread(name: "gpud-accept") { [weak self] in self?.acceptLoop() }
        } catch {
            listener.shutDown()
            lock.release()
            throw ChannelError("\(error)")
        }
    }

    /// Stops accepting, ends every session (their VMs see the device fail) and removes the socket.
    public func stop() {
        listener.shutDown()
        let open = sessions.withLock { sessions in Array(sessions.values) }
        for session in open { session.channel.shutDown() }
        for session in open { session.finished.wait() }
        lock.release()
    }

    public var vgpus: [VGPUSession] {
        sessions.withLock { Array($0.values) }.compactMap(\.snapshot).sorted { $0.id < $1.id }
    }

    private func acceptLoop() {
        var shortage: Int32?
        while true {
            let channel: MessageChannel
            switch listener.accept() {
            case let .connection(accepted):
                if shortage != nil { logger.notice("accepting VMs again") }
                shortage = nil
                channel = accepted
            case .closed:
                return
            case let .outOfResources(code):
                // EMFILE and its kin pass when sessions end: wait and try again, never stop
                // serving. Logged once per shortage, not once per try.
                if shortage == nil {
                    logger.error("cannot accept a VM: \(String(cString: strerror(code))); retrying while sessions end")
                }
                shortage = code
                usleep(20_000)
                continue
            }
            let id = nextSessionID.add(1, ordering: .relaxed).oldValue
            let session = Session(id: id, channel: channel, scheduler: scheduler, profiles: profiles,
                                  guestMemoryLimit: guestMemoryLimit, services: services, logger: logger) { [weak self] departure in
                self?.departureLog.withLock { log in
                    log.append(departure)
                    if log.count > Self.departureLogSize { log.removeFirst() }
                }
            }
            sessions.withLock { $0[id] = session }
            do {
                _ = try NativeThread(name: "gpud-session", detached: true) { [weak self] in
                    session.serve()
                    self?.sessions.withLock { _ = $0.removeValue(forKey: id) }
                    // The VM's device and memory are gone: the heap's free pages go back too.
                    FreedMemory.returnToTheSystem()
                    session.finished.signal()
                }
            } catch {
                // Out of threads: this VM is turned away, and nobody waits for a session that
                // never ran (stop() would otherwise wait for it forever).
                logger.error("cannot serve a VM: \(error)")
                sessions.withLock { _ = $0.removeValue(forKey: id) }
                channel.shutDown()
                session.finished.signal()
            }
        }
    }
}

/// One VM's vGPU: the connection, the device, and the activation being served.
private final class Session: @unchecked Sendable {
    let id: UInt64
    let channel: MessageChannel
    let finished = DispatchSemaphore(value: 0)
    private let scheduler: GPUScheduler
    private let profiles: [String: VGPUProfile]
    private let guestMemoryLimit: UInt64
    private let services: (any VGPUSessionServices)?
    private var logger: Logger
    private let connected = Date()

    // Touched by the session thread; read under `lock` by `snapshot`.
    private let lock = Monitor()
    private var hello: VGPUUser.Hello?
    private var profile: VGPUProfile?
    private var device: VirtioGPU?
    private var memory: GuestMemory?
    private var server: (any VirtioQueueService)?
    /// The eventfds of the activation served now; they close with it.
    private var activationFDs: [EventFD] = []

    private let departed: (VGPUServer.Departure) -> Void

    /// The most services a hello may name (a VM selects a handful).
    static let maxSelectedServices = 16

    init(id: UInt64, channel: MessageChannel, scheduler: GPUScheduler, profiles: [String: VGPUProfile],
         guestMemoryLimit: UInt64, services: (any VGPUSessionServices)?, logger: Logger,
         departed: @escaping (VGPUServer.Departure) -> Void) {
        self.departed = departed
        self.services = services
        self.profiles = profiles
        self.guestMemoryLimit = guestMemoryLimit
        self.id = id
        self.channel = channel
        self.scheduler = scheduler
        self.logger = logger
        self.logger[metadataKey: "session"] = "\(id)"
    }

    var snapshot: VGPUServer.VGPUSession? {
        lock.withLock {
            guard let hello, let profile, let device else { return nil }
            return VGPUServer.VGPUSession(id: id, vm: hello.vm, vgpu: hello.vgpu, profile: profile, connected: connected,
                                         active: server != nil, statistics: device.statistics)
        }
    }

    /// Serves requests until the VM hangs up or sends something unreadable, then gives
    /// everything of this vGPU back.
    func serve() {
        defer { tearDown() }
        while true {
            let message: (VGPUUser.Request, [Int32])?
            do { message = try channel.receive(VGPUUser.Request.self) } catch {
                logger.warning("vgpu-user: \(error); closing the connection")
                return
            }
            guard let (request, fds) = message else { return }
            let reply = handle(request, fds: fds)
            do { try channel.send(reply) } catch { return }
        }
    }

    private func handle(_ request: VGPUUser.Request, fds: [Int32]) -> VGPUUser.Reply {
        var unused = fds
        defer { unused.forEach { close($0) } }
        switch request {
        case let .hello(hello):
            guard device == nil else { return .failed("hello sent twice") }
            guard hello.version == VGPUUser.version else {
                return .failed("vgpu-user version \(hello.version) is not spoken here (version \(VGPUUser.version))")
            }
            guard fds.count == 1 else { return .failed("hello carries exactly one descriptor, the guest memory") }
            guard Self.isPlainName(hello.vm), Self.isPlainName(hello.vgpu) else { return .failed("bad VM or vGPU name") }
            let selected = hello.mlaas ?? []
            guard selected.count <= Self.maxSelectedServices, selected.allSatisfy(Self.isPlainName) else {
                return .failed("mlaas: at most \(Self.maxSelectedServices) plain service names")
            }
            // The operator's profile of that name, whatever else the VM might wish for.
            guard let profile = VGPUProfile.resolve(hello.profile, in: profiles) else {
                return .failed("profile '\(hello.profile)' is not offered by this GPU daemon (offered: \(profiles.keys.sorted().joined(separator: ", ")))")
            }
            unused = []
            let memory: GuestMemory
            do {
                memory = try GuestMemory(sharing: fds[0], regions: hello.regions.map {
                    (start: GuestAddress($0.start), size: $0.size, fileOffset: $0.fileOffset)
                }, limit: guestMemoryLimit)
            } catch { return .failed("guest memory: \(error)") }
            let device = VirtioGPU(scheduler: scheduler, profile: profile, memory: memory, name: "\(hello.vm)/\(hello.vgpu)",
                                   owner: ClientOwner(vm: hello.vm, vgpu: hello.vgpu), logger: logger)
            lock.withLock {
                self.hello = hello
                self.profile = profile
                self.device = device
                self.memory = memory
            }
            // After the device exists, so a model installed now finds the VM's clients as they come.
            let serving = services?.vgpuConnected(vm: hello.vm, selected: selected) ?? []
            logger.info("vGPU \(hello.vm)/\(hello.vgpu) connected (\(profile))\(serving.isEmpty ? "" : ", MLaaS: \(serving.joined(separator: ", "))")")
            var configuration = [UInt8](repeating: 0, count: device.configurationSize)
            configuration.withUnsafeMutableBytes { device.readConfiguration(offset: 0, into: $0) }
            let (classCode, subclass, interface) = device.pciClass
            return .device(VGPUUser.Device(deviceType: device.deviceType, features: device.offeredFeatures,
                                           queueSizes: device.queueMaximumSizes, configuration: configuration,
                                           pciClass: [classCode, subclass, interface], profile: profile, mlaas: serving))

        case let .activate(activation):
            guard let device, let memory else { return .failed("activate before hello") }
            deactivate(device)
            let queueCount = device.queueMaximumSizes.count
            let interruptCount = activation.interrupts.filter { $0 }.count
            guard activation.queues.count == queueCount, activation.interrupts.count == queueCount,
                  fds.count == queueCount + interruptCount else {
                return .failed("activate carries \(queueCount) queues, their doorbells and their interrupts")
            }
            for (index, queue) in activation.queues.enumerated() {
                if let queue, queue.size > device.queueMaximumSizes[index] {
                    return .failed("queue \(index) of \(queue.size) entries is larger than \(device.queueMaximumSizes[index])")
                }
            }
            guard activation.features & ~device.offeredFeatures == 0 else { return .failed("features beyond those offered") }
            // Only eventfds: a write to anything else could block a thread that serves every VM.
            guard fds.allSatisfy(Self.isEventFD) else { return .failed("doorbells and interrupts must be eventfds") }
            unused = []
            let doorbells = fds.prefix(queueCount).map { EventFD(adopting: $0) }
            var interrupts: [EventFD?] = []
            var next = queueCount
            for wanted in activation.interrupts {
                interrupts.append(wanted ? EventFD(adopting: fds[next]) : nil)
                if wanted { next += 1 }
            }
            let channel = channel, logger = logger, irqfds = interrupts
            // The same activation the VM's transport would make, with the VM's irqfds as the
            // interrupts: the device serves it exactly as it would in the VM's process.
            let activationRequest = VirtioActivation(
                name: "gpud-session", features: activation.features,
                queues: activation.queues.map { $0?.configuration(features: activation.features) },
                memory: memory, doorbells: doorbells, interruptFDs: interrupts,
                interrupt: { queue in irqfds[queue]?.signal() },
                needsReset: { reason in
                    logger.warning("vGPU needs reset: \(reason)")
                    try? channel.send(VGPUUser.Reply.needsReset(reason))
                })
            do {
                let service = try device.activate(activationRequest)
                lock.withLock {
                    self.server = service
                    activationFDs = doorbells + interrupts.compactMap { $0 }
                }
                return .done
            } catch {
                return .failed("\(error)")
            }

        case .reset:
            guard let device else { return .failed("reset before hello") }
            deactivate(device)
            device.reset()
            return .done

        case let .writeConfiguration(offset, bytes):
            guard let device else { return .failed("configuration write before hello") }
            // Compared without adding: a peer's offset near Int.max must not overflow the check.
            guard offset >= 0, bytes.count <= 8, bytes.count <= device.configurationSize,
                  offset <= device.configurationSize - bytes.count else {
                return .failed("configuration write outside the device's configuration")
            }
            bytes.withUnsafeBytes { device.writeConfiguration(offset: offset, data: $0) }
            return .done

        case .statistics:
            guard let device else { return .failed("statistics before hello") }
            return .statistics(device.statistics)
        }
    }

    private func deactivate(_ device: VirtioGPU) {
        let server = lock.withLock { () -> (any VirtioQueueService)? in
            defer { self.server = nil }
            return self.server
        }
        server?.stop()
        lock.withLock { activationFDs = [] }
    }

    private func tearDown() {
        guard let device, let hello else { return }
        let disconnected = scheduler.nanosecondsSinceStart()
        deactivate(device)
        // Cancels queued work, waits out what is on the GPU, zeroes and frees its buffers and
        // removes its scheduler clients.
        device.stop()
        let release = scheduler.nanosecondsSinceStart() - disconnected
        departed(VGPUServer.Departure(vm: hello.vm, vgpu: hello.vgpu, at: Date(), disconnectedNanoseconds: disconnected,
                                     releaseNanoseconds: release))
        logger.info("vGPU \(hello.vm)/\(hello.vgpu) disconnected; work cancelled, memory zeroed and freed in \(release / 1000) µs")
        services?.vgpuDisconnected(vm: hello.vm)
        lock.withLock {
            self.device = nil
            memory = nil
        }
    }

    static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    static func isEventFD(_ fd: Int32) -> Bool {
        var target = [CChar](repeating: 0, count: 64)
        let length = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
        guard length > 0 else { return false }
        return String(decoding: target.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self) == "anon_inode:[eventfd]"
            && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0
    }
}

extension MessageChannel {
    /// Whether something accepts connections on the seqpacket socket at `path`.
    static func isLive(_ path: String) -> Bool {
        (try? connect(to: path)) != nil
    }
}
