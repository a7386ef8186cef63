import Foundation
import Glibc
import Hypervisor
import Logging
import Platform
import VGPUCore
import VirtioGPU

/// A para-vGPU whose device the GPU daemon runs: the VM's side of the vgpu-user protocol.
///
/// The VM keeps the virtio-pci transport; at DRIVER_OK it hands the daemon the rings, the
/// doorbell ioeventfds and the irqfds, and from then on submissions and completions go between
/// the guest and the daemon without this process. If the daemon goes away the device reports
/// DEVICE_NEEDS_RESET (with a config interrupt) instead of leaving the guest waiting; the
/// driver's reset reconnects, so a restarted daemon serves the VM again.
public final class RemoteVGPU: VGPUBackend, @unchecked Sendable {
    public let name: String
    /// What the daemon granted: its operator's profile of the name asked for.
    public let profile: VGPUProfile
    /// The daemon profile asked for (sent again on a reconnect).
    public let profileName: String
    /// The VM's MLaaS services (`--mlaas`), named in every hello (a reconnection's too).
    private let selectedServices: [String]
    /// The VM's MLaaS services the daemon applies to it (learned-slice on its scheduler).
    public let servingServices: [String]
    public let daemonSocket: String
    public let deviceType: UInt16
    public let offeredFeatures: UInt64
    public let queueMaximumSizes: [UInt16]
    public let configurationSize: Int
    public let pciClass: (UInt8, UInt8, UInt8)
    /// How long a request waits for the daemon's reply.
    static let replyTimeout: DispatchTimeInterval = .seconds(20)
    static let helloTimeoutSeconds = 20

    private let vm: String
    private let memory: GuestMemory
    private let configuration: [UInt8]
    private let logger: Logger
    /// One request at a time: replies come back in order.
    private let requestLock = Monitor()
    private let lock = Monitor()
    private var connection: Connection?
    private var needsReset: (@Sendable (String) -> Void)?
    private var lastStatistics = VGPUStatistics()

    /// A live connection: the channel and the thread reading it.
    private final class Connection: @unchecked Sendable {
        let channel: MessageChannel
        let replies = DispatchSemaphore(value: 0)
        let lock = Monitor()
        var pending: [VGPUUser.Reply] = []
        var closed = false

        init(channel: MessageChannel) { self.channel = channel }
    }

    /// Connects to the daemon at `daemonSocket` and asks it for a vGPU of its profile
    /// `profileName` on this VM's guest memory, naming the MLaaS services the VM selected
    /// (`services`; the daemon applies those it has, `servingServices`).
    public init(daemonSocket: String, vm: String, name: String, profileName: String, memory: GuestMemory,
                services: [String] = [], logger: Logger = Logger(label: "malvvm.vgpu.remote")) throws(ChannelError) {
        self.daemonSocket = daemonSocket
        self.vm = vm
        self.name = name
        self.profileName = profileName
        self.memory = memory
        self.logger = logger
        selectedServices = services
        let (connection, device) = try Self.connect(daemonSocket, hello: Self.hello(vm: vm, vgpu: name, profileName: profileName,
                                                                                    services: services, memory: memory),
                                                    memory: memory)
        profile = device.profile
        servingServices = device.mlaas ?? []
        if !servingServices.isEmpty {
            logger.info("\(name): the GPU daemon serves MLaaS \(servingServices.joined(separator: ", ")) for VM '\(vm)'")
        }
        deviceType = device.deviceType
        offeredFeatures = device.features
        queueMaximumSizes = device.queueSizes
        configuration = device.configuration
        configurationSize = device.configuration.count
        guard device.pciClass.count == 3 else { throw ChannelError("the daemon described a device without a PCI class") }
        pciClass = (device.pciClass[0], device.pciClass[1], device.pciClass[2])
        self.connection = connection
        try startReader(connection)
    }

    deinit { connection?.channel.shutDown() }

    private static func hello(vm: String, vgpu: String, profileName: String, services: [String],
                              memory: GuestMemory) -> VGPUUser.Request {
        .hello(VGPUUser.Hello(version: VGPUUser.version, vm: vm, vgpu: vgpu, profile: profileName,
                              regions: memory.regions.map { VGPUUser.MemoryRegion(start: $0.start.raw, size: $0.size, fileOffset: $0.fileOffset) },
                              mlaas: services.isEmpty ? nil : services))
    }

    /// Connects and says hello; the reply is read here, before any reader thread exists.
    private static func connect(_ path: String, hello: VGPUUser.Request,
                                memory: GuestMemory) throws(ChannelError) -> (Connection, VGPUUser.Device) {
        let channel: MessageChannel
        do { channel = try MessageChannel.connect(to: path) } catch {
            throw ChannelError("no GPU daemon at '\(path)' (start one with 'malvvm gpud --socket \(path)'): \(error)")
        }
        try channel.send(hello, fds: [memory.fileDescriptor])
        // A daemon that accepts and never answers must not hold the VM (or its API) for ever.
        channel.setReceiveTimeout(seconds: helloTimeoutSeconds)
        let message: (VGPUUser.Reply, [Int32])?
        do { message = try channel.receive(VGPUUser.Reply.self) } catch {
            throw ChannelError("the GPU daemon at '\(path)' did not answer within \(helloTimeoutSeconds) s (\(error))")
        }
        channel.setReceiveTimeout(seconds: 0)
        guard let (reply, fds) = message else {
            throw ChannelError("the GPU daemon at '\(path)' hung up")
        }
        fds.forEach { close($0) }
        switch reply {
        case let .device(device): return (Connection(channel: channel), device)
        case let .failed(message): throw ChannelError("the GPU daemon refused the vGPU: \(message)")
        default: throw ChannelError("the GPU daemon answered hello with \(reply)")
        }
    }

    private func startReader(_ connection: Connection) throws(ChannelError) {
        let name = name
        do {
            _ = try NativeThread(name: "vgpu-remote", detached: true) { [weak self] in
                while true {
                    let message = try? connection.channel.receive(VGPUUser.Reply.self)
                    guard let (reply, fds) = message else { break }
                    fds.forEach { close($0) }
                    if case let .needsReset(reason) = reply {
                        self?.deviceFailed("the GPU daemon: \(reason)")
                        continue
                    }
                    connection.lock.withLock { connection.pending.append(reply) }
                    connection.replies.signal()
                }
                connection.lock.withLock { connection.closed = true }
                connection.replies.signal()
                self?.disconnected(connection)
            }
        } catch {
            connection.channel.shutDown()
            throw ChannelError("vGPU \(name): \(error)")
        }
    }

    private func disconnected(_ connection: Connection) {
        let wasCurrent = lock.withLock { () -> Bool in
            guard self.connection === connection else { return false }
            self.connection = nil
            return true
        }
        if wasCurrent { deviceFailed("the GPU daemon at '\(daemonSocket)' went away") }
    }

    private func deviceFailed(_ reason: String) {
        logger.error("vGPU \(name): \(reason)")
        lock.withLock { needsReset }?(reason)
    }

    /// Sends one request and waits for its reply.
    private func request(_ request: VGPUUser.Request, fds: [Int32] = []) throws(ChannelError) -> VGPUUser.Reply {
        requestLock.lock()
        defer { requestLock.unlock() }
        do {
            guard let connection = lock.withLock({ connection }) else {
                throw ChannelError("no connection to the GPU daemon at '\(daemonSocket)'")
            }
            do { try connection.channel.send(request, fds: fds) } catch {
                throw ChannelError("the GPU daemon: \(error)")
            }
            while true {
                guard connection.replies.wait(timeout: .now() + Self.replyTimeout) == .success else {
                    // A late reply would answer the next request: this connection is done.
                    connection.channel.shutDown()
                    throw ChannelError("the GPU daemon did not answer within \(Self.replyTimeout)")
                }
                let next = connection.lock.withLock { () -> VGPUUser.Reply?? in
                    if !connection.pending.isEmpty { return connection.pending.removeFirst() }
                    return connection.closed ? .some(nil) : nil
                }
                switch next {
                case let .some(.some(reply)):
                    if case let .failed(message) = reply { throw ChannelError("the GPU daemon: \(message)") }
                    return reply
                case .some(.none): throw ChannelError("the GPU daemon at '\(daemonSocket)' went away")
                case .none: continue
                }
            }
        }
    }

    // MARK: VirtioDeviceBackend

    /// Hands the daemon the rings, the doorbell ioeventfds and the irqfds: it serves the queues
    /// until the next `reset()`, so there is no service here to stop.
    public func activate(_ activation: VirtioActivation) throws(VirtioActivationError) -> (any VirtioQueueService)? {
        lock.withLock { needsReset = activation.needsReset }
        let wire = VGPUUser.Activation(features: activation.features, queues: activation.queues.map { $0.map(VGPUUser.Queue.init) },
                                       interrupts: activation.interruptFDs.map { $0 != nil })
        let fds = activation.doorbells.map(\.fileDescriptor) + activation.interruptFDs.compactMap { $0?.fileDescriptor }
        do { _ = try request(.activate(wire), fds: fds) } catch { throw .remote(error.description) }
        return nil
    }

    /// The driver reset the device (or it was unplugged): the daemon drops the activation. A
    /// connection lost meanwhile is made again, for a daemon that restarted.
    public func reset() {
        lock.withLock { needsReset = nil }
        if lock.withLock({ connection }) == nil { reconnect() }
        do { _ = try request(.reset) } catch { logger.warning("vGPU \(name): reset: \(error)") }
    }

    private func reconnect() {
        do {
            let (connection, _) = try Self.connect(daemonSocket, hello: Self.hello(vm: vm, vgpu: name, profileName: profileName,
                                                                                   services: selectedServices, memory: memory),
                                                   memory: memory)
            lock.withLock { self.connection = connection }
            try startReader(connection)
            logger.notice("vGPU \(name): reconnected to the GPU daemon at '\(daemonSocket)'")
        } catch {
            logger.warning("vGPU \(name): \(error)")
        }
    }

    /// The vGPU's end (`VGPU.stop`): closes the connection, and the daemon frees everything of
    /// this vGPU.
    public func stop() {
        let connection = lock.withLock { () -> Connection? in
            defer { self.connection = nil }
            return self.connection
        }
        connection?.channel.shutDown()
    }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for i in data.indices { data[i] = offset + i < configuration.count ? configuration[offset + i] : 0 }
    }

    public func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {
        do { _ = try request(.writeConfiguration(offset: offset, bytes: Array(data))) } catch {
            logger.warning("vGPU \(name): configuration write: \(error)")
        }
    }

    // MARK: VGPUBackend

    public var statistics: VGPUStatistics {
        if case let .statistics(statistics)? = try? request(.statistics) {
            lock.withLock { lastStatistics = statistics }
            return statistics
        }
        return lock.withLock { lastStatistics }
    }
}
