import Foundation
import Glibc
import GPUHost
import Hypervisor
import Logging
import Synchronization
import VirtioGPU

/// The GPU daemon (`malvvm gpud`): the one process that owns a physical GPU and its scheduler
/// and serves every VM's para-vGPUs over the vgpu-user protocol (`VGPUUser`).
///
/// Each connection is one vGPU, served by a `VirtioGPU` on the VM's own guest memory. A VM that
/// dies (its connection ends) loses its vGPU: queued work is cancelled, its GPU buffers are
/// zeroed and freed and its scheduler clients removed, so its share goes to the others at the
/// scheduler's next decision. Nothing a VM sends can stop the daemon or reach another VM.
public final class GPUDaemon: @unchecked Sendable {
    public let scheduler: GPUScheduler
    /// Where VMs connect (the vgpu-user socket).
    public let socketPath: String
    public let started = Date()
    private let listener: MessageListener
    private let logger: Logger
    private let sessions = Mutex<[UInt64: Session]>([:])
    private let nextSessionID = Atomic<UInt64>(1)
    private var acceptThread: Thread?

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
        /// The device's name, the prefix of its scheduler clients' names ("vm/vgpu0/ctx1").
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

    /// Starts listening on `socketPath` (a stale socket is replaced, a live one is an error).
    public init(scheduler: GPUScheduler, socketPath: String, logger: Logger = Logger(label: "malvvm.gpud")) throws(ChannelError) {
        if MessageChannel.isLive(socketPath) {
            throw ChannelError("a GPU daemon is already serving '\(socketPath)'")
        }
        unlink(socketPath)
        self.scheduler = scheduler
        self.socketPath = socketPath
        self.logger = logger
        listener = try MessageListener(path: socketPath)
        let thread = Thread { [weak self] in self?.acceptLoop() }
        thread.name = "gpud-accept"
        acceptThread = thread
        thread.start()
    }

    /// Stops accepting, ends every session (their VMs see the device fail) and removes the socket.
    public func stop() {
        listener.shutDown()
        let open = sessions.withLock { sessions in Array(sessions.values) }
        for session in open { session.channel.shutDown() }
        for session in open { session.finished.wait() }
    }

    public var vgpus: [VGPUSession] {
        sessions.withLock { Array($0.values) }.compactMap(\.snapshot).sorted { $0.id < $1.id }
    }

    private func acceptLoop() {
        while let channel = listener.accept() {
            let id = nextSessionID.add(1, ordering: .relaxed).oldValue
            let session = Session(id: id, channel: channel, scheduler: scheduler, logger: logger) { [weak self] departure in
                self?.departureLog.withLock { log in
                    log.append(departure)
                    if log.count > Self.departureLogSize { log.removeFirst() }
                }
            }
            sessions.withLock { $0[id] = session }
            let thread = Thread { [weak self] in
                session.serve()
                self?.sessions.withLock { _ = $0.removeValue(forKey: id) }
                session.finished.signal()
            }
            thread.name = "gpud-session-\(id)"
            thread.start()
        }
    }
}

/// One VM's vGPU: the connection, the device, and the activation being served.
private final class Session: @unchecked Sendable {
    let id: UInt64
    let channel: MessageChannel
    let finished = DispatchSemaphore(value: 0)
    private let scheduler: GPUScheduler
    private var logger: Logger
    private let connected = Date()

    // Touched by the session thread; read under `lock` by `snapshot`.
    private let lock = NSLock()
    private var hello: VGPUUser.Hello?
    private var device: VirtioGPU?
    private var memory: GuestMemory?
    private var server: VirtioQueueServer?
    /// The eventfds of the activation served now; they close with it.
    private var activationFDs: [EventFD] = []

    private let departed: (GPUDaemon.Departure) -> Void

    init(id: UInt64, channel: MessageChannel, scheduler: GPUScheduler, logger: Logger,
         departed: @escaping (GPUDaemon.Departure) -> Void) {
        self.departed = departed
        self.id = id
        self.channel = channel
        self.scheduler = scheduler
        self.logger = logger
        self.logger[metadataKey: "session"] = "\(id)"
    }

    var snapshot: GPUDaemon.VGPUSession? {
        lock.withLock {
            guard let hello, let device else { return nil }
            return GPUDaemon.VGPUSession(id: id, vm: hello.vm, vgpu: hello.vgpu, profile: hello.profile, connected: connected,
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
            if let problem = Self.check(hello.profile) { return .failed(problem) }
            unused = []
            let memory: GuestMemory
            do {
                memory = try GuestMemory(sharing: fds[0], regions: hello.regions.map {
                    (start: GuestAddress($0.start), size: $0.size, fileOffset: $0.fileOffset)
                })
            } catch { return .failed("guest memory: \(error)") }
            let device = VirtioGPU(scheduler: scheduler, profile: hello.profile, memory: memory, name: "\(hello.vm)/\(hello.vgpu)",
                                   logger: logger)
            lock.withLock {
                self.hello = hello
                self.device = device
                self.memory = memory
            }
            logger.info("vGPU \(hello.vm)/\(hello.vgpu) connected (\(hello.profile))")
            var configuration = [UInt8](repeating: 0, count: device.configurationSize)
            configuration.withUnsafeMutableBytes { device.readConfiguration(offset: 0, into: $0) }
            let (classCode, subclass, interface) = device.pciClass
            return .device(VGPUUser.Device(deviceType: device.deviceType, features: device.offeredFeatures,
                                           queueSizes: device.queueMaximumSizes, configuration: configuration,
                                           pciClass: [classCode, subclass, interface]))

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
            do {
                let server = try VirtioQueueServer(
                    device: device, name: "gpud-\(id)", features: activation.features,
                    queues: activation.queues.map { $0?.configuration(features: activation.features) },
                    memory: memory, doorbells: doorbells,
                    interrupt: { queue in irqfds[queue]?.signal() },
                    needsReset: { error in
                        logger.warning("vGPU needs reset: \(error)")
                        try? channel.send(VGPUUser.Reply.needsReset(error.description))
                    })
                lock.withLock {
                    self.server = server
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
            guard offset >= 0, bytes.count <= 8, offset + bytes.count <= device.configurationSize else {
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
        let server = lock.withLock { () -> VirtioQueueServer? in
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
        device.shutdown()
        let release = scheduler.nanosecondsSinceStart() - disconnected
        departed(GPUDaemon.Departure(vm: hello.vm, vgpu: hello.vgpu, at: Date(), disconnectedNanoseconds: disconnected,
                                     releaseNanoseconds: release))
        logger.info("vGPU \(hello.vm)/\(hello.vgpu) disconnected; work cancelled, memory zeroed and freed in \(release / 1000) µs")
        lock.withLock {
            self.device = nil
            memory = nil
        }
    }

    static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    static func check(_ profile: VGPUProfile) -> String? {
        guard profile.memoryBytes > 0 else { return "profile memory must be positive" }
        guard profile.weight.isFinite, profile.weight > 0 else { return "profile weight must be a positive number" }
        guard (1 ... 1024).contains(profile.maxContexts) else { return "profile contexts must be 1-1024" }
        return nil
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
