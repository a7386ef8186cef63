import Logging
import Synchronization

/// An MSI-X table and pending-bit array (PCI 3.0 §6.8.2) whose vectors are delivered by KVM.
///
/// Each vector owns a GSI routed to the message the guest programmed and an irqfd, so a device
/// thread raises an interrupt with one eventfd write and no exit. Masking follows the spec: a
/// vector signalled while masked (per entry or function-wide) sets its pending bit and is
/// delivered when unmasked. The eventfd is attached to KVM only while its vector can deliver
/// (QEMU's masked-notifier scheme for vhost): a device in another process that writes it
/// directly (the GPU daemon) is then held pending by a mask too, and dropped while MSI-X is off.
public final class MSIXTable: Sendable {
    public static let capabilityID: UInt8 = 0x11
    public static let entrySize = 16
    static let entryMasked: UInt32 = 0x1
    static let controlEnable: UInt16 = 0x8000
    static let controlFunctionMask: UInt16 = 0x4000

    struct Entry {
        var addressLow: UInt32 = 0
        var addressHigh: UInt32 = 0
        var data: UInt32 = 0
        var control: UInt32 = MSIXTable.entryMasked
        var address: UInt64 { UInt64(addressHigh) << 32 | UInt64(addressLow) }
        var masked: Bool { control & MSIXTable.entryMasked != 0 }
    }

    struct Message: Equatable {
        let address: UInt64
        let data: UInt32
    }

    struct State {
        var entries: [Entry]
        var pending: [Bool]
        var enabled = false
        var functionMasked = false
        /// The message each GSI routes to now, so unchanged entries cost no routing update.
        var routed: [Message?]
        /// Whether the vector's eventfd is attached to KVM as an irqfd now.
        var attached: [Bool]

        func deliverable(_ vector: Int) -> Bool { enabled && !functionMasked && !entries[vector].masked }
    }

    public let vectorCount: Int
    private let router: InterruptRouter
    private let vm: KVMVirtualMachine
    private let gsis: [UInt32]
    private let eventfds: [EventFD]
    private let state: Mutex<State>
    private let logger: Logger
    /// Where the table's capability lives, once `addCapability` put it there.
    private let capability = Mutex<(configuration: PCIConfiguration, offset: Int)?>(nil)

    init(vectorCount: Int, vm: KVMVirtualMachine, router: InterruptRouter,
         logger: Logger = Logger(label: "malvvm.msix")) throws(HypervisorError) {
        precondition((1...2048).contains(vectorCount))
        self.vectorCount = vectorCount
        self.router = router
        self.vm = vm
        self.logger = logger
        var gsis: [UInt32] = []
        var eventfds: [EventFD] = []
        do {
            for _ in 0..<vectorCount {
                gsis.append(try router.allocateGSI())
                eventfds.append(try EventFD())
            }
        } catch let error as SystemError {
            throw .system(error)
        } catch let error as HypervisorError {
            throw error
        } catch {
            throw .configuration("MSI-X setup failed: \(error)")
        }
        self.gsis = gsis
        self.eventfds = eventfds
        state = Mutex(State(entries: Array(repeating: Entry(), count: vectorCount),
                            pending: Array(repeating: false, count: vectorCount),
                            routed: Array(repeating: nil, count: vectorCount),
                            attached: Array(repeating: false, count: vectorCount)))
    }

    deinit {
        let attached = state.withLock { $0.attached }
        for (vector, (gsi, eventfd)) in zip(gsis, eventfds).enumerated() {
            if attached[vector] { try? vm.unregisterIRQFD(eventfd, gsi: gsi) }
            try? router.releaseGSI(gsi)
        }
    }

    /// Attaches the irqfd of every vector that can deliver now and detaches the others. A
    /// remote write that came while a vector was masked is in its eventfd's counter: it becomes
    /// the pending bit; one that came while MSI-X was disabled is dropped. Called under the lock,
    /// so the attachment always follows the guest's last write. Returns the vectors to deliver.
    private func syncIRQFDs(_ s: inout State) -> [Int] {
        var deliver: [Int] = []
        for vector in 0..<vectorCount {
            let wanted = s.deliverable(vector)
            guard wanted != s.attached[vector] else { continue }
            do throws(SystemError) {
                if wanted {
                    if eventfds[vector].drain() > 0 { s.pending[vector] = true }
                    try vm.registerIRQFD(eventfds[vector], gsi: gsis[vector])
                    if s.pending[vector] {
                        s.pending[vector] = false
                        deliver.append(vector)
                    }
                } else {
                    try vm.unregisterIRQFD(eventfds[vector], gsi: gsis[vector])
                }
                s.attached[vector] = wanted
            } catch {
                logger.error("MSI-X irqfd update failed", metadata: ["vector": "\(vector)", "error": "\(error)"])
            }
        }
        return deliver
    }

    /// Remote writes to detached vectors' eventfds: pending bits while MSI-X is enabled (the
    /// vector is masked), dropped while it is disabled.
    private func collectRemotePending(_ s: inout State) {
        for vector in 0..<vectorCount where !s.attached[vector] {
            if eventfds[vector].drain() > 0 && s.enabled { s.pending[vector] = true }
        }
    }

    public var tableSize: Int { vectorCount * Self.entrySize }
    public var pendingArraySize: Int { ((vectorCount + 63) / 64) * 8 }

    /// The capability body after ID and next pointer: message control, table and PBA locations.
    public static func capabilityBody(vectorCount: Int, tableBAR: Int, tableOffset: UInt32,
                                      pendingBAR: Int, pendingOffset: UInt32) -> (body: [UInt8], writable: [UInt8]) {
        var body: [UInt8] = []
        body.appendLittleEndian(UInt16(vectorCount - 1))
        body.appendLittleEndian(tableOffset | UInt32(tableBAR))
        body.appendLittleEndian(pendingOffset | UInt32(pendingBAR))
        // Only enable and function-mask are the guest's to write.
        return (body, [0x00, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    /// Puts this table's MSI-X capability into `configuration` (the table and PBA at the BAR
    /// offsets given) and returns its offset. From then on `configurationWritten` follows the
    /// guest's writes to it, so the device owning the table only forwards writes, as with MSI.
    @discardableResult
    public func addCapability(to configuration: PCIConfiguration, tableBAR: Int, tableOffset: UInt32,
                              pendingBAR: Int, pendingOffset: UInt32) -> Int {
        let (body, writable) = Self.capabilityBody(vectorCount: vectorCount, tableBAR: tableBAR, tableOffset: tableOffset,
                                                   pendingBAR: pendingBAR, pendingOffset: pendingOffset)
        let offset = configuration.addCapability(id: Self.capabilityID, body: body, writableMask: writable)
        capability.withLock { $0 = (configuration, offset) }
        return offset
    }

    /// Follows a guest configuration write: one that touched the capability's message control
    /// word enables, disables or function-masks the table.
    public func configurationWritten(offset written: Int, size: Int) {
        guard let (configuration, offset) = capability.withLock({ $0 }) else { return }
        let control = offset + 2
        guard written <= control + 1 && written + size > control else { return }
        let bytes = configuration.bytes(at: control, count: 2)
        setControl(UInt16(bytes[0]) | UInt16(bytes[1]) << 8)
    }

    /// Follows the guest's writes to the capability's message control word.
    public func setControl(_ control: UInt16) {
        let release = state.withLock { s -> [Int] in
            collectRemotePending(&s)
            s.enabled = control & Self.controlEnable != 0
            s.functionMasked = control & Self.controlFunctionMask != 0
            return syncIRQFDs(&s) + deliverablePending(&s)
        }
        release.forEach { eventfds[$0].signal() }
    }

    public var isEnabled: Bool { state.withLock { $0.enabled } }

    /// Raises `vector`: delivered now through its irqfd, or left pending while masked.
    /// Out-of-range vectors (the guest's 0xffff "no vector" among them) are ignored.
    public func signal(vector: Int) {
        guard vector >= 0 && vector < vectorCount else { return }
        let deliver = state.withLock { s -> Bool in
            guard s.enabled else { return false }
            if s.functionMasked || s.entries[vector].masked {
                s.pending[vector] = true
                return false
            }
            return true
        }
        if deliver { eventfds[vector].signal() }
    }

    /// The irqfd behind `vector`, for a device served in another process to signal directly.
    public func eventFD(vector: Int) -> EventFD? {
        vector >= 0 && vector < vectorCount ? eventfds[vector] : nil
    }

    // MARK: Guest access to the table and the PBA (BAR-relative offsets given by the device)

    public func readTable(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        let words = state.withLock { s -> [UInt32]? in
            let index = Int(offset) / Self.entrySize
            guard index < vectorCount else { return nil }
            let e = s.entries[index]
            return [e.addressLow, e.addressHigh, e.data, e.control]
        }
        Self.copyOut(words, byteOffset: Int(offset) % Self.entrySize, into: data)
    }

    public func writeTable(offset: UInt64, data: UnsafeRawBufferPointer) {
        let index = Int(offset) / Self.entrySize
        guard index < vectorCount, data.count == 4 || data.count == 8, Int(offset) % data.count == 0 else { return }
        var words: [(Int, UInt32)] = []
        for part in 0..<(data.count / 4) {
            let value = UInt32(truncatingIfNeeded: data[(part * 4)..<(part * 4 + 4)].littleEndianValue)
            words.append(((Int(offset) % Self.entrySize) / 4 + part, value))
        }
        let (route, deliver) = state.withLock { s -> ((UInt64, UInt32)?, Bool) in
            collectRemotePending(&s)
            for (word, value) in words {
                switch word {
                case 0: s.entries[index].addressLow = value & ~0x3
                case 1: s.entries[index].addressHigh = value
                case 2: s.entries[index].data = value
                default: s.entries[index].control = value & Self.entryMasked
                }
            }
            let entry = s.entries[index]
            let message = Message(address: entry.address, data: entry.data)
            var route: (UInt64, UInt32)?
            if s.routed[index] != message {
                s.routed[index] = message
                route = (entry.address, entry.data)
            }
            var deliver = s.enabled && !s.functionMasked && !entry.masked && s.pending[index]
            if deliver { s.pending[index] = false }
            deliver = !syncIRQFDs(&s).isEmpty || deliver
            return (route, deliver)
        }
        if let (address, data) = route {
            do { try router.setMSI(gsi: gsis[index], address: address, data: data) } catch {
                logger.error("MSI route update failed", metadata: ["vector": "\(index)", "error": "\(error)"])
            }
        }
        if deliver { eventfds[index].signal() }
    }

    public func readPendingBits(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        let bits = state.withLock { s in
            collectRemotePending(&s)
            return s.pending
        }
        for i in data.indices {
            var byte: UInt8 = 0
            for bit in 0..<8 {
                let vector = (Int(offset) + i) * 8 + bit
                if vector < bits.count && bits[vector] { byte |= 1 << bit }
            }
            data[i] = byte
        }
    }

    /// Vectors whose pending bit can be delivered now (clearing it).
    private func deliverablePending(_ s: inout State) -> [Int] {
        guard s.enabled && !s.functionMasked else { return [] }
        var ready: [Int] = []
        for vector in 0..<vectorCount where s.pending[vector] && !s.entries[vector].masked {
            s.pending[vector] = false
            ready.append(vector)
        }
        return ready
    }

    static func copyOut(_ words: [UInt32]?, byteOffset: Int, into data: UnsafeMutableRawBufferPointer) {
        for i in data.indices {
            let position = byteOffset + i
            guard let words, position / 4 < words.count else { data[i] = 0xff; continue }
            data[i] = UInt8(truncatingIfNeeded: words[position / 4] >> (8 * UInt32(position % 4)))
        }
    }
}
