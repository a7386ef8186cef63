import Logging
import Synchronization

/// A single-vector MSI capability (PCI 3.0 §6.8.1: 64-bit address, per-vector masking) whose
/// message KVM delivers: one GSI routed to what the guest programmed, and an irqfd, so raising
/// it is one eventfd write from any thread. A message raised while masked sets the pending bit
/// and goes out when the guest unmasks it, as the spec asks.
///
/// Layout from the capability's offset: +2 message control, +4 address low, +8 address high,
/// +0xc data, +0x10 mask bits, +0x14 pending bits.
public final class MSICapability: Sendable {
    public static let capabilityID: UInt8 = 0x05
    static let controlEnable: UInt16 = 0x1
    static let control64Bit: UInt16 = 0x80
    static let controlPerVectorMasking: UInt16 = 0x100

    struct Message: Equatable {
        var address: UInt64
        var data: UInt32
    }

    struct State {
        var routed: Message?
        var pending = false
    }

    public let offset: Int
    private let configuration: PCIConfiguration
    private let router: InterruptRouter
    private let vm: KVMVirtualMachine
    private let gsi: UInt32
    private let eventfd: EventFD
    private let state = Mutex(State())
    private let sent = Atomic<UInt64>(0)
    private let logger: Logger

    /// Messages handed to KVM so far (pending ones once delivered).
    public var messagesSent: UInt64 { sent.load(ordering: .relaxed) }

    init(configuration: PCIConfiguration, vm: KVMVirtualMachine, router: InterruptRouter,
         logger: Logger = Logger(label: "malvvm.msi")) throws(HypervisorError) {
        self.configuration = configuration
        self.router = router
        self.vm = vm
        self.logger = logger
        gsi = try router.allocateGSI()
        do {
            eventfd = try EventFD()
            try vm.registerIRQFD(eventfd, gsi: gsi)
        } catch {
            try? router.releaseGSI(gsi)
            throw .system(error)
        }
        var body: [UInt8] = []
        body.appendLittleEndian(Self.control64Bit | Self.controlPerVectorMasking)
        body += [UInt8](repeating: 0, count: 20)
        // Enable (bit 0) is the guest's; with one vector, Multiple Message Enable stays 0.
        // Data is 16 bits; the mask has one bit; pending is the device's to set.
        let writable: [UInt8] = [0x01, 0x00, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
                                 0x01, 0, 0, 0, 0, 0, 0, 0]
        offset = configuration.addCapability(id: Self.capabilityID, body: body, writableMask: writable)
    }

    deinit {
        try? vm.unregisterIRQFD(eventfd, gsi: gsi)
        try? router.releaseGSI(gsi)
    }

    public var isEnabled: Bool { configuration.value16(at: offset + 2) & Self.controlEnable != 0 }
    private var isMasked: Bool { configuration.value32(at: offset + 0x10) & 1 != 0 }

    /// Sends the message: now through the irqfd, or later if masked. Nothing when disabled.
    public func signal() {
        guard isEnabled else { return }
        let deliver = state.withLock { s -> Bool in
            if isMasked {
                s.pending = true
                configuration.setBytes([1, 0, 0, 0], at: offset + 0x14)
                return false
            }
            return true
        }
        if deliver {
            sent.add(1, ordering: .relaxed)
            eventfd.signal()
        }
    }

    /// Follows a guest write that touched the capability: re-routes a changed message and
    /// delivers a pending one that was just unmasked.
    func configurationWritten(offset written: Int, size: Int) {
        guard written < offset + 0x18 && written + size > offset else { return }
        let address = UInt64(configuration.value32(at: offset + 8)) << 32 | UInt64(configuration.value32(at: offset + 4))
        let message = Message(address: address, data: UInt32(configuration.value16(at: offset + 0xc)))
        let enabled = isEnabled, masked = isMasked
        let (route, deliver) = state.withLock { s -> (Message?, Bool) in
            var route: Message?
            if enabled && s.routed != message {
                s.routed = message
                route = message
            }
            let deliver = enabled && !masked && s.pending
            if deliver {
                s.pending = false
                configuration.setBytes([0, 0, 0, 0], at: offset + 0x14)
            }
            return (route, deliver)
        }
        if let route {
            do { try router.setMSI(gsi: gsi, address: route.address, data: route.data) } catch {
                logger.error("MSI route update failed", metadata: ["error": "\(error)"])
            }
        }
        if deliver {
            sent.add(1, ordering: .relaxed)
            eventfd.signal()
        }
    }
}
