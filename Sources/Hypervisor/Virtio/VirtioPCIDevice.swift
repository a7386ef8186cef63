import Glibc
import Logging
import Synchronization

/// The virtio PCI transport, modern only (virtio 1.2 §4.1): one 64-bit memory BAR holding the
/// common, ISR, device and notify structures and the MSI-X table, with queue doorbells on
/// ioeventfds served by a device thread and completions raised through MSI-X irqfds.
public final class VirtioPCIDevice: PCIDevice, @unchecked Sendable {
    // BAR 0 layout.
    static let bar = 0
    static let commonOffset: UInt64 = 0x0000, commonSize: UInt64 = 0x40
    static let isrOffset: UInt64 = 0x1000
    static let deviceOffset: UInt64 = 0x2000, deviceSize: UInt64 = 0x1000
    static let notifyOffset: UInt64 = 0x3000
    /// Each queue has its own doorbell address, so each gets its own ioeventfd.
    static let notifyMultiplier: UInt32 = 4
    static let msixTableOffset: UInt64 = 0x4000
    static let msixPendingOffset: UInt64 = 0x6000
    static let barSize: UInt64 = 0x8000
    static let noVector: UInt16 = 0xffff

    // Virtio PCI capability types.
    static let capCommon: UInt8 = 1, capNotify: UInt8 = 2, capISR: UInt8 = 3, capDevice: UInt8 = 4, capPCI: UInt8 = 5
    static let vendorCapability: UInt8 = 0x09

    struct QueueState {
        var maximumSize: UInt16
        var size: UInt16
        var enabled = false
        var vector = VirtioPCIDevice.noVector
        var descriptorTable: UInt64 = 0
        var availableRing: UInt64 = 0
        var usedRing: UInt64 = 0

        init(maximumSize: UInt16) {
            self.maximumSize = maximumSize
            self.size = maximumSize
        }
    }

    struct State {
        var deviceFeatureSelect: UInt32 = 0
        var driverFeatureSelect: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var status: UInt8 = 0
        var configGeneration: UInt8 = 0
        var queueSelect: UInt16 = 0
        var configVector = VirtioPCIDevice.noVector
        var isr: UInt8 = 0
        var queues: [QueueState]
        var worker: (any VirtioQueueService)?
        var notifyBase: UInt64?
        /// Unplugged: the guest can no longer reach it, and nothing starts it again.
        var detached = false
    }

    public let configuration: PCIConfiguration
    public let device: any VirtioDeviceBackend
    public let name: String
    let msix: MSIXTable
    private let memory: GuestMemory
    private let vm: KVMVirtualMachine
    private let doorbells: [EventFD]
    private let state: Mutex<State>
    private let pciCapabilityOffset: Int
    private let logger: Logger

    public var offeredFeatures: UInt64 { device.offeredFeatures | VirtioFeature.version1 }

    init(device: any VirtioDeviceBackend, name: String, memory: GuestMemory, vm: KVMVirtualMachine,
         router: InterruptRouter, logger: Logger = Logger(label: "malvvm.virtio")) throws(HypervisorError) {
        self.device = device
        self.name = name
        self.memory = memory
        self.vm = vm
        self.logger = logger
        let queueCount = device.queueMaximumSizes.count
        msix = try MSIXTable(vectorCount: queueCount + 1, vm: vm, router: router)
        var doorbells: [EventFD] = []
        do {
            for _ in 0..<queueCount { doorbells.append(try EventFD()) }
        } catch { throw .system(error) }
        self.doorbells = doorbells
        state = Mutex(State(queues: device.queueMaximumSizes.map { QueueState(maximumSize: $0) }))

        let (classCode, subclass, interface) = device.pciClass
        configuration = PCIConfiguration(
            identity: PCIIdentity(vendorID: 0x1af4, deviceID: 0x1040 + device.deviceType, classCode: classCode,
                                  subclass: subclass, programmingInterface: interface,
                                  revision: 1,  // modern devices have revision ≥ 1 (virtio 1.2 §4.1.2.1)
                                  subsystemVendorID: 0x1af4, subsystemID: 0x1100),
            bars: [PCIBarDefinition(index: Self.bar, size: Self.barSize, kind: .memory64)])

        func virtioCap(_ type: UInt8, offset: UInt64, length: UInt64, extra: [UInt8] = []) -> [UInt8] {
            var body: [UInt8] = [UInt8(16 + extra.count), type, UInt8(Self.bar), 0, 0, 0]
            body.appendLittleEndian(UInt32(offset))
            body.appendLittleEndian(UInt32(length))
            return body + extra
        }
        var multiplier: [UInt8] = []
        multiplier.appendLittleEndian(Self.notifyMultiplier)
        configuration.addCapability(id: Self.vendorCapability, body: virtioCap(Self.capCommon, offset: Self.commonOffset, length: Self.commonSize))
        configuration.addCapability(id: Self.vendorCapability, body: virtioCap(Self.capNotify, offset: Self.notifyOffset,
                                                                               length: UInt64(queueCount) * UInt64(Self.notifyMultiplier),
                                                                               extra: multiplier))
        configuration.addCapability(id: Self.vendorCapability, body: virtioCap(Self.capISR, offset: Self.isrOffset, length: 1))
        configuration.addCapability(id: Self.vendorCapability, body: virtioCap(Self.capDevice, offset: Self.deviceOffset,
                                                                               length: UInt64(max(device.configurationSize, 1))))
        // VIRTIO_PCI_CAP_PCI_CFG: a window onto the BAR through configuration space; the spec
        // requires one. bar, offset and length and the data are the driver's to write.
        pciCapabilityOffset = configuration.addCapability(
            id: Self.vendorCapability, body: virtioCap(Self.capPCI, offset: 0, length: 0, extra: [0, 0, 0, 0]),
            writableMask: [0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        msix.addCapability(to: configuration, tableBAR: Self.bar, tableOffset: UInt32(Self.msixTableOffset),
                           pendingBAR: Self.bar, pendingOffset: UInt32(Self.msixPendingOffset))
    }

    deinit {
        stopWorker()
        moveDoorbells(to: nil)
    }

    // MARK: PCIDevice

    public func barMapped(_ index: Int, at address: UInt64?) {
        guard index == Self.bar else { return }
        moveDoorbells(to: address.map { $0 + Self.notifyOffset })
    }

    /// Re-registers every queue's ioeventfd at the notify region's new address.
    private func moveDoorbells(to base: UInt64?) {
        let old: UInt64? = state.withLock { s in
            defer { s.notifyBase = base }
            return s.notifyBase
        }
        for (queue, doorbell) in doorbells.enumerated() {
            let offset = UInt64(queue) * UInt64(Self.notifyMultiplier)
            if let old { try? vm.unregisterIOEventFD(doorbell, mmioAddress: old + offset, length: 2) }
            if let base {
                do { try vm.registerIOEventFD(doorbell, mmioAddress: base + offset, length: 2) } catch {
                    // Without it a doorbell still works, by a full exit through writeBAR.
                    logger.warning("ioeventfd not registered", metadata: ["device": "\(name)", "error": "\(error)"])
                }
            }
        }
    }

    public func configurationWritten(offset: Int, size: Int) {
        msix.configurationWritten(offset: offset, size: size)
        let data = pciCapabilityOffset + 16
        if offset == data {
            accessThroughPCICapability { bar, offset, buffer in writeBAR(bar, offset: offset, data: UnsafeRawBufferPointer(buffer)) }
        }
    }

    public func configurationRead(offset: Int, size: Int) -> UInt32? {
        guard offset == pciCapabilityOffset + 16 else { return nil }
        var value: UInt32 = 0
        accessThroughPCICapability { bar, offset, buffer in
            readBAR(bar, offset: offset, data: buffer)
            value = UInt32(truncatingIfNeeded: buffer.littleEndianValue)
        }
        return value
    }

    /// Runs `access` on the BAR window the PCI_CFG capability selects (1, 2 or 4 bytes).
    private func accessThroughPCICapability(_ access: (Int, UInt64, UnsafeMutableRawBufferPointer) -> Void) {
        let cap = configuration.bytes(at: pciCapabilityOffset, count: 20)
        let bar = Int(cap[4])
        let offset = UInt64(cap[8]) | UInt64(cap[9]) << 8 | UInt64(cap[10]) << 16 | UInt64(cap[11]) << 24
        let length = Int(cap[12])
        guard bar == Self.bar, [1, 2, 4].contains(length), offset + UInt64(length) <= Self.barSize else { return }
        var buffer = Array(cap[16..<(16 + length)])
        buffer.withUnsafeMutableBytes { access(bar, offset, $0) }
        configuration.setBytes(buffer, at: pciCapabilityOffset + 16)
    }

    public func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        switch offset {
        case Self.commonOffset..<(Self.commonOffset + Self.commonSize):
            data.storeLittleEndian(readCommon(offset: Int(offset - Self.commonOffset), size: data.count))
        case Self.isrOffset:
            // Reading the ISR acknowledges it (virtio 1.2 §4.1.4.5).
            let isr = state.withLock { s -> UInt8 in
                defer { s.isr = 0 }
                return s.isr
            }
            for i in data.indices { data[i] = i == 0 ? isr : 0 }
        case Self.deviceOffset..<(Self.deviceOffset + Self.deviceSize):
            let start = Int(offset - Self.deviceOffset)
            if start + data.count <= device.configurationSize {
                device.readConfiguration(offset: start, into: data)
            } else {
                for i in data.indices { data[i] = 0 }
            }
        case Self.msixTableOffset..<(Self.msixTableOffset + UInt64(msix.tableSize)):
            msix.readTable(offset: offset - Self.msixTableOffset, data: data)
        case Self.msixPendingOffset..<(Self.msixPendingOffset + UInt64(msix.pendingArraySize)):
            msix.readPendingBits(offset: offset - Self.msixPendingOffset, data: data)
        default:
            for i in data.indices { data[i] = 0 }
        }
    }

    public func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {
        let value = data.littleEndianValue
        switch offset {
        case Self.commonOffset..<(Self.commonOffset + Self.commonSize):
            writeCommon(offset: Int(offset - Self.commonOffset), size: data.count, value: value)
        case Self.deviceOffset..<(Self.deviceOffset + Self.deviceSize):
            let start = Int(offset - Self.deviceOffset)
            if start + data.count <= device.configurationSize { device.writeConfiguration(offset: start, data: data) }
        case Self.notifyOffset..<(Self.notifyOffset + UInt64(doorbells.count) * UInt64(Self.notifyMultiplier)):
            // A doorbell that missed its ioeventfd (another width, or none registered).
            doorbells[Int((offset - Self.notifyOffset) / UInt64(Self.notifyMultiplier))].signal()
        case Self.msixTableOffset..<(Self.msixTableOffset + UInt64(msix.tableSize)):
            msix.writeTable(offset: offset - Self.msixTableOffset, data: data)
        default:
            break  // the ISR and the PBA are read-only
        }
    }

    // MARK: Common configuration (virtio 1.2 §4.1.4.3)

    private func readCommon(offset: Int, size: Int) -> UInt64 {
        state.withLock { s in
            let q = s.queues.indices.contains(Int(s.queueSelect)) ? s.queues[Int(s.queueSelect)] : nil
            switch (offset, size) {
            case (0x00, 4): return UInt64(s.deviceFeatureSelect)
            case (0x04, 4):
                return s.deviceFeatureSelect < 2 ? (offeredFeatures >> (32 * UInt64(s.deviceFeatureSelect))) & 0xffff_ffff : 0
            case (0x08, 4): return UInt64(s.driverFeatureSelect)
            case (0x0c, 4):
                return s.driverFeatureSelect < 2 ? (s.driverFeatures >> (32 * UInt64(s.driverFeatureSelect))) & 0xffff_ffff : 0
            case (0x10, 2): return UInt64(s.configVector)
            case (0x12, 2): return UInt64(s.queues.count)
            case (0x14, 1): return UInt64(s.status)
            case (0x15, 1): return UInt64(s.configGeneration)
            case (0x16, 2): return UInt64(s.queueSelect)
            case (0x18, 2): return UInt64(q?.size ?? 0)
            case (0x1a, 2): return UInt64(q?.vector ?? Self.noVector)
            case (0x1c, 2): return q?.enabled == true ? 1 : 0
            case (0x1e, 2): return UInt64(s.queueSelect)  // queue_notify_off: queue i rings at i × multiplier
            case (0x20, 4), (0x20, 8): return (q?.descriptorTable ?? 0) & mask(size)
            case (0x24, 4): return (q?.descriptorTable ?? 0) >> 32
            case (0x28, 4), (0x28, 8): return (q?.availableRing ?? 0) & mask(size)
            case (0x2c, 4): return (q?.availableRing ?? 0) >> 32
            case (0x30, 4), (0x30, 8): return (q?.usedRing ?? 0) & mask(size)
            case (0x34, 4): return (q?.usedRing ?? 0) >> 32
            default: return 0
            }
        }
    }

    private func mask(_ size: Int) -> UInt64 { size == 8 ? .max : 0xffff_ffff }

    private func writeCommon(offset: Int, size: Int, value: UInt64) {
        var statusWrite: UInt8?
        state.withLock { s in
            let selected = Int(s.queueSelect)
            let hasQueue = s.queues.indices.contains(selected)
            // Queue registers are read-only once the queue is enabled (virtio 1.2 §4.1.4.3.2).
            let queueWritable = hasQueue && !s.queues[selected].enabled
            func setAddress(_ keyPath: WritableKeyPath<QueueState, UInt64>, high: Bool) {
                guard queueWritable else { return }
                let old = s.queues[selected][keyPath: keyPath]
                s.queues[selected][keyPath: keyPath] = size == 8 ? value
                    : high ? (old & 0xffff_ffff) | (value << 32) : (old & ~0xffff_ffff) | (value & 0xffff_ffff)
            }
            switch (offset, size) {
            case (0x00, 4): s.deviceFeatureSelect = UInt32(truncatingIfNeeded: value)
            case (0x08, 4): s.driverFeatureSelect = UInt32(truncatingIfNeeded: value)
            case (0x0c, 4):
                // Features are fixed once FEATURES_OK is set.
                guard s.status & VirtioStatus.featuresOK == 0, s.driverFeatureSelect < 2 else { break }
                let shift = 32 * UInt64(s.driverFeatureSelect)
                s.driverFeatures = (s.driverFeatures & ~(0xffff_ffff << shift)) | ((value & 0xffff_ffff) << shift)
            case (0x10, 2): s.configVector = UInt16(truncatingIfNeeded: value) < msix.vectorCount ? UInt16(value) : Self.noVector
            case (0x14, 1): statusWrite = UInt8(truncatingIfNeeded: value)
            case (0x16, 2): s.queueSelect = UInt16(truncatingIfNeeded: value)
            case (0x18, 2):
                // Larger than the maximum is refused; a non-power-of-two size fails at DRIVER_OK.
                if queueWritable, value > 0, value <= UInt64(s.queues[selected].maximumSize) {
                    s.queues[selected].size = UInt16(value)
                }
            case (0x1a, 2):
                // A vector the table does not have reads back as NO_VECTOR, which tells the driver.
                if hasQueue {
                    s.queues[selected].vector = UInt16(truncatingIfNeeded: value) < msix.vectorCount ? UInt16(value) : Self.noVector
                }
            case (0x1c, 2): if queueWritable && value == 1 { s.queues[selected].enabled = true }
            case (0x20, _): setAddress(\.descriptorTable, high: false)
            case (0x24, 4): setAddress(\.descriptorTable, high: true)
            case (0x28, _): setAddress(\.availableRing, high: false)
            case (0x2c, 4): setAddress(\.availableRing, high: true)
            case (0x30, _): setAddress(\.usedRing, high: false)
            case (0x34, 4): setAddress(\.usedRing, high: true)
            default: break
            }
        }
        if let statusWrite { writeStatus(statusWrite) }
    }

    private func writeStatus(_ value: UInt8) {
        if value == 0 {
            reset()
            return
        }
        enum Action { case none, activate }
        let action: Action = state.withLock { s in
            var new = value | (s.status & VirtioStatus.needsReset)
            if new & VirtioStatus.featuresOK != 0 && s.status & VirtioStatus.featuresOK == 0 {
                // Accept only a subset of what we offered, and only a modern (VERSION_1) driver.
                let acceptable = s.driverFeatures & ~offeredFeatures == 0 && s.driverFeatures & VirtioFeature.version1 != 0
                if !acceptable { new &= ~VirtioStatus.featuresOK }
            }
            let activate = new & VirtioStatus.driverOK != 0 && s.status & VirtioStatus.driverOK == 0
                && new & VirtioStatus.featuresOK != 0
            s.status = new
            return activate ? .activate : .none
        }
        if case .activate = action { activate() }
    }

    /// DRIVER_OK: hands the device its queues, doorbells and interrupts (`activate`), which
    /// start a device thread here or a server elsewhere.
    private func activate() {
        // A DRIVER_OK that raced the unplug (the vCPU was inside the BAR as it left the bus).
        guard !state.withLock({ $0.detached }) else { return }
        let (features, queues) = state.withLock { ($0.driverFeatures, $0.queues) }
        let configurations = queues.map { queue -> VirtqueueConfiguration? in
            guard queue.enabled else { return nil }
            return VirtqueueConfiguration(
                size: queue.size, descriptorTable: GuestAddress(queue.descriptorTable),
                availableRing: GuestAddress(queue.availableRing), usedRing: GuestAddress(queue.usedRing),
                eventIndex: features & VirtioFeature.eventIndex != 0,
                indirectDescriptors: features & VirtioFeature.indirectDescriptors != 0)
        }
        let activation = VirtioActivation(
            name: name, features: features, queues: configurations, memory: memory, doorbells: doorbells,
            interruptFDs: queues.map { $0.enabled ? msix.eventFD(vector: Int($0.vector)) : nil },
            interrupt: { [weak self] queue in self?.interrupt(queue: queue) },
            needsReset: { [weak self] reason in self?.deviceNeedsReset(because: reason) })
        do throws(VirtioActivationError) {
            let service = try device.activate(activation)
            let late = state.withLock { s -> Bool in
                if !s.detached { s.worker = service }
                return s.detached
            }
            if late { service?.stop() }
        } catch {
            logger.error("device activation failed", metadata: ["device": "\(name)", "error": "\(error)"])
            deviceNeedsReset(because: error)
        }
    }

    private func interrupt(queue: Int) {
        let vector = state.withLock { s -> UInt16 in
            s.isr |= 0x1
            return s.queues[queue].vector
        }
        msix.signal(vector: Int(vector))
    }

    /// The device hit a driver error it cannot serve past: tell the driver (virtio 1.2 §2.1.2).
    func deviceNeedsReset(because error: some CustomStringConvertible) {
        logger.warning("device needs reset", metadata: ["device": "\(name)", "error": "\(error)"])
        let vector = state.withLock { s -> UInt16 in
            s.status |= VirtioStatus.needsReset
            s.isr |= 0x2
            s.configGeneration &+= 1
            return s.configVector
        }
        msix.signal(vector: Int(vector))
    }

    private func stopWorker() {
        let worker = state.withLock { s -> (any VirtioQueueService)? in
            defer { s.worker = nil }
            return s.worker
        }
        worker?.stop()
    }

    private func reset() {
        stopWorker()
        device.reset()
        state.withLock { s in
            let maximumSizes = s.queues.map(\.maximumSize)
            let notifyBase = s.notifyBase
            s = State(queues: maximumSizes.map { QueueState(maximumSize: $0) })
            s.notifyBase = notifyBase
        }
        for doorbell in doorbells { doorbell.drain() }
    }

    /// The device left the VM (hot-unplug): stops its thread, has the backend drop everything
    /// from its activation (for the para-vGPU: queued GPU work cancelled, buffers and scheduler
    /// clients freed) and takes its doorbells off KVM. Its interrupts go when the last reference does.
    public func stop() {
        state.withLock { $0.detached = true }
        stopWorker()
        device.reset()
        moveDoorbells(to: nil)
        for doorbell in doorbells { doorbell.drain() }
    }

    public var isDetached: Bool { state.withLock { $0.detached } }

    /// Observation for tests and statistics.
    public var status: UInt8 { state.withLock { $0.status } }
}
