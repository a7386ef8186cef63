import Logging
import Synchronization

/// The VM's PCI hierarchy: bus 0 with its devices and PCIe root ports, and behind each root
/// port one hot-plug slot on the secondary bus the guest gives it. Configuration access by ports
/// 0xcf8/0xcfc (conf1) and by the ECAM window, BAR placement in the 32- and 64-bit MMIO windows,
/// and the mapping of each BAR onto the MMIO bus wherever the guest moves it (for a card behind a
/// port, only while the port's command register and windows forward its range).
public final class PCIRootComplex: Sendable {
    public static let configAddressPort: UInt64 = 0xcf8
    public static let configDataPort: UInt64 = 0xcfc
    public static let slotCount = 32

    /// Where a function sits: a device number on bus 0, or the slot behind the root port at
    /// that device number (always device 0 of the port's secondary bus).
    enum Location: Hashable, Sendable {
        case bus0(Int)
        case behindPort(Int)
    }

    struct Slot: Sendable {
        let device: any PCIDevice
        let name: String
        var mapped: [Int: UInt64] = [:]
    }

    struct State: Sendable {
        var slots: [Location: Slot] = [:]
        var ports: [Int: PCIeRootPort] = [:]
        var configAddress: UInt32 = 0
        var window32: PCIAddressAllocator
        var window64: PCIAddressAllocator
    }

    private let mmioBus: IOBus
    private let state: Mutex<State>
    private let logger: Logger

    public init(mmioBus: IOBus, logger: Logger = Logger(label: "malvvm.pci")) {
        self.mmioBus = mmioBus
        self.logger = logger
        state = Mutex(State(
            window32: PCIAddressAllocator(start: X86BootLayout.pciWindow32Start, size: X86BootLayout.pciWindow32Size),
            window64: PCIAddressAllocator(start: X86BootLayout.pciWindow64Start, size: X86BootLayout.pciWindow64Size)))
        try? plug(PCIHostBridge(), slot: 0, name: "host-bridge")
    }

    /// The bus devices for the conf1 ports and the ECAM window, for the VM to put on its buses.
    public var configPorts: any BusDevice { ConfigPorts(root: self) }
    public var ecam: any BusDevice { ECAMWindow(root: self) }

    /// Plugs `device` into `slot` of bus 0, assigning its BARs (64-bit ones above RAM, others
    /// below 4 GiB) and enabling memory decoding, as firmware leaves devices for the guest.
    public func plug(_ device: any PCIDevice, slot: Int, name: String) throws(HypervisorError) {
        try plug(device, slot: slot, name: name, port: nil)
    }

    /// Plugs a root port into `slot` of bus 0 and opens its windows over a reservation for what
    /// will be hot-plugged behind it.
    public func plug(rootPort port: PCIeRootPort, slot: Int, name: String) throws(HypervisorError) {
        try plug(port, slot: slot, name: name, port: port)
    }

    private func plug(_ device: any PCIDevice, slot: Int, name: String, port: PCIeRootPort?) throws(HypervisorError) {
        guard (0..<Self.slotCount).contains(slot) else { throw .configuration("PCI slot \(slot) does not exist") }
        try state.withLock { s throws(HypervisorError) in
            guard s.slots[.bus0(slot)] == nil else { throw .configuration("PCI slot \(slot) is taken") }
            for bar in device.configuration.bars {
                let address = bar.kind == .memory64 ? s.window64.allocate(size: bar.size) : s.window32.allocate(size: bar.size)
                guard let address else { throw .configuration("no room for \(name)'s BAR \(bar.index) of \(bar.size) bytes") }
                device.configuration.assign(bar: bar.index, address: address)
            }
            if let port {
                let memory = s.window32.allocate(size: PCIeRootPort.memoryWindowSize)
                let prefetchable = s.window64.allocate(size: PCIeRootPort.prefetchableWindowSize)
                guard let memory, let prefetchable else { throw .configuration("no room for \(name)'s bridge windows") }
                port.programWindows(memory: memory..<(memory + PCIeRootPort.memoryWindowSize),
                                    prefetchable: prefetchable..<(prefetchable + PCIeRootPort.prefetchableWindowSize))
                s.ports[slot] = port
            }
            s.slots[.bus0(slot)] = Slot(device: device, name: name)
        }
        if !device.configuration.bars.isEmpty || port != nil {
            device.configuration.setCommand(PCIConfiguration.commandMemorySpace | PCIConfiguration.commandBusMaster)
        }
        refreshMappings(.bus0(slot))
    }

    /// Removes the device in `slot` of bus 0 and its BAR mappings.
    public func unplug(slot: Int) {
        let removed: Slot? = state.withLock { s in
            s.ports[slot] = nil
            return s.slots.removeValue(forKey: .bus0(slot))
        }
        if let removed { unmap(removed) }
    }

    /// The lowest free device number on bus 0, if any.
    public func firstFreeSlot() -> Int? {
        state.withLock { s in (1..<Self.slotCount).first { s.slots[.bus0($0)] == nil } }
    }

    /// The root ports by their device number on bus 0.
    public var rootPorts: [(slot: Int, port: PCIeRootPort)] {
        state.withLock { s in s.ports.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
    }

    /// The card behind the root port at `portSlot`, if there is one.
    public func card(behindPort portSlot: Int) -> (device: any PCIDevice, name: String)? {
        state.withLock { s in s.slots[.behindPort(portSlot)].map { ($0.device, $0.name) } }
    }

    // MARK: Hot-plug

    /// Puts `device` into the slot of the root port at bus-0 device `portSlot` and tells the
    /// guest (presence and link up). Its BARs get addresses inside the port's windows as they are
    /// now, but decoding stays off: a freshly powered card waits for its driver to enable it.
    public func insert(_ device: any PCIDevice, behindPort portSlot: Int, name: String) throws(HypervisorError) {
        let port: PCIeRootPort = try state.withLock { s throws(HypervisorError) in
            guard let port = s.ports[portSlot] else { throw .configuration("no PCIe root port at 00:\(portSlot)") }
            guard s.slots[.behindPort(portSlot)] == nil else { throw .hotplug(.slotOccupied(HotplugSlotID(port.physicalSlot))) }
            s.slots[.behindPort(portSlot)] = Slot(device: device, name: name)
            return port
        }
        var memory = port.memoryWindow.map { PCIAddressAllocator(start: $0.lowerBound, size: UInt64($0.count)) }
        var prefetchable = port.prefetchableWindow.map { PCIAddressAllocator(start: $0.lowerBound, size: UInt64($0.count)) }
        for bar in device.configuration.bars where bar.kind != .io {
            // Non-prefetchable BARs must sit in the 32-bit memory window, even 64-bit ones.
            let wantsPrefetchable = bar.prefetchable && bar.kind == .memory64
            let address = wantsPrefetchable ? (prefetchable?.allocate(size: bar.size) ?? memory?.allocate(size: bar.size))
                : memory?.allocate(size: bar.size)
            device.configuration.assign(bar: bar.index, address: address ?? 0)
        }
        device.configuration.setCommand(0)
        port.cardInserted()
    }

    /// Takes the card out of the slot behind the port at `portSlot`: its BARs leave the MMIO bus
    /// and the guest is told (presence and link down). Returns the card, nil if there was none.
    @discardableResult
    public func remove(behindPort portSlot: Int) -> (any PCIDevice)? {
        let (removed, port) = state.withLock { s in (s.slots.removeValue(forKey: .behindPort(portSlot)), s.ports[portSlot]) }
        guard let removed else { return nil }
        unmap(removed)
        port?.cardRemoved()
        return removed.device
    }

    private func unmap(_ slot: Slot) {
        for (index, _) in slot.mapped {
            mmioBus.remove(name: Self.barName(slot.name, index))
            slot.device.barMapped(index, at: nil)
        }
    }

    /// The bus:device.function the guest sees the named device at ("00:03.0"; behind a root
    /// port, the bus the guest gave the port), or nil.
    public func location(of name: String) -> String? {
        func hex(_ value: Int) -> String {
            let digits = String(value, radix: 16)
            return digits.count < 2 ? "0" + digits : digits
        }
        return state.withLock { s -> String? in
            guard let location = s.slots.first(where: { $0.value.name == name })?.key else { return nil }
            switch location {
            case let .bus0(slot): return "00:\(hex(slot)).0"
            case let .behindPort(slot): return "\(hex(s.ports[slot]?.secondaryBus ?? 0)):00.0"
            }
        }
    }

    static func barName(_ device: String, _ index: Int) -> String { "\(device)-bar\(index)" }

    // MARK: Configuration cycles

    /// The function a configuration cycle to `bus`/`device`/`function` reaches: bus-0 devices,
    /// and device 0 of a root port's secondary bus (PCIe: the only device below a port).
    private func resolve(bus: Int, device: Int, function: Int) -> (Location, any PCIDevice)? {
        guard function == 0 else { return nil }
        return state.withLock { s -> (Location, any PCIDevice)? in
            if bus == 0 { return s.slots[.bus0(device)].map { (.bus0(device), $0.device) } }
            guard device == 0 else { return nil }
            for slot in s.ports.keys.sorted() where s.ports[slot]?.secondaryBus == bus {
                return s.slots[.behindPort(slot)].map { (.behindPort(slot), $0.device) }
            }
            return nil
        }
    }

    func configRead(bus: Int = 0, slot: Int, function: Int, offset: Int, size: Int) -> UInt32 {
        let allOnes = size == 4 ? UInt32.max : (1 << (UInt32(size) * 8)) - 1
        guard let (_, device) = resolve(bus: bus, device: slot, function: function) else { return allOnes }
        return device.configurationRead(offset: offset, size: size) ?? device.configuration.read(offset: offset, size: size)
    }

    func configWrite(bus: Int = 0, slot: Int, function: Int, offset: Int, size: Int, value: UInt32) {
        guard let (location, device) = resolve(bus: bus, device: slot, function: function) else { return }
        let changed = device.configuration.write(offset: offset, size: size, value: value)
        if changed { refreshMappings(location) }
        device.configurationWritten(offset: offset, size: size)
        if device is PCIeRootPort, case let .bus0(portSlot) = location {
            // The port's command register or windows may now forward more or less of its card's BARs.
            refreshMappings(.behindPort(portSlot))
        }
    }

    /// Brings the MMIO bus in line with where the device's BARs decode now.
    private func refreshMappings(_ location: Location) {
        guard let (current, port) = state.withLock({ s -> (Slot, PCIeRootPort?)? in
            guard let slot = s.slots[location] else { return nil }
            if case let .behindPort(portSlot) = location { return (slot, s.ports[portSlot]) }
            return (slot, nil)
        }) else { return }
        let device = current.device
        var mapped = current.mapped
        for bar in device.configuration.bars where bar.kind != .io {
            var wanted = device.configuration.decodedAddress(ofBAR: bar.index)
            if let address = wanted, let port, !port.forwards(address, size: bar.size) { wanted = nil }
            guard wanted != mapped[bar.index] else { continue }
            let name = Self.barName(current.name, bar.index)
            mmioBus.remove(name: name)
            mapped[bar.index] = nil
            if let address = wanted {
                do {
                    try mmioBus.insert(BARRegion(device: device, index: bar.index), name: name, base: address, size: bar.size)
                    mapped[bar.index] = address
                } catch {
                    // The guest put the BAR over something else: leave it undecoded, as a conflicting
                    // BAR would be, rather than shadowing another device.
                    logger.warning("BAR not mapped", metadata: ["device": "\(current.name)", "error": "\(error)"])
                }
            }
            device.barMapped(bar.index, at: mapped[bar.index])
        }
        state.withLock { s in
            // The card may have been removed meanwhile; its mappings went with it.
            if s.slots[location]?.device === device { s.slots[location]?.mapped = mapped }
        }
    }

    // MARK: Access paths

    /// Ports 0xcf8 (address: enable bit 31, bus 23:16, device 15:11, function 10:8, register 7:2)
    /// and 0xcfc-0xcff (data).
    final class ConfigPorts: BusDevice {
        let root: PCIRootComplex
        init(root: PCIRootComplex) { self.root = root }

        func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
            var value: UInt32 = .max
            if offset == 0 && data.count == 4 {
                value = root.state.withLock { $0.configAddress }
            } else if offset >= 4, let target = target(byteOffset: Int(offset - 4), size: data.count) {
                value = root.configRead(bus: target.bus, slot: target.slot, function: target.function, offset: target.register,
                                        size: data.count)
            }
            data.storeLittleEndian(UInt64(value))
        }

        func write(offset: UInt64, data: UnsafeRawBufferPointer) {
            let value = UInt32(truncatingIfNeeded: data.littleEndianValue)
            if offset == 0 && data.count == 4 {
                root.state.withLock { $0.configAddress = value & 0x80ff_fffc }
            } else if offset >= 4, let target = target(byteOffset: Int(offset - 4), size: data.count) {
                root.configWrite(bus: target.bus, slot: target.slot, function: target.function, offset: target.register,
                                 size: data.count, value: value)
            }
        }

        private func target(byteOffset: Int, size: Int) -> (bus: Int, slot: Int, function: Int, register: Int)? {
            let address = root.state.withLock { $0.configAddress }
            guard address & 0x8000_0000 != 0 else { return nil }
            return (Int((address >> 16) & 0xff), Int((address >> 11) & 0x1f), Int((address >> 8) & 0x7),
                    Int(address & 0xfc) + byteOffset)
        }
    }

    /// ECAM: bus << 20 | device << 15 | function << 12 | register.
    final class ECAMWindow: BusDevice {
        let root: PCIRootComplex
        init(root: PCIRootComplex) { self.root = root }

        func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
            var value = UInt32.max
            if PCIConfiguration.isValidAccess(offset: Int(offset & 0xfff), size: data.count) {
                value = root.configRead(bus: Int(offset >> 20 & 0xff), slot: Int(offset >> 15 & 0x1f), function: Int(offset >> 12 & 0x7),
                                        offset: Int(offset & 0xfff), size: data.count)
            }
            for i in data.indices { data[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(min(i, 3)))) }
        }

        func write(offset: UInt64, data: UnsafeRawBufferPointer) {
            guard PCIConfiguration.isValidAccess(offset: Int(offset & 0xfff), size: data.count) else { return }
            let value = UInt32(truncatingIfNeeded: data.littleEndianValue)
            root.configWrite(bus: Int(offset >> 20 & 0xff), slot: Int(offset >> 15 & 0x1f), function: Int(offset >> 12 & 0x7),
                             offset: Int(offset & 0xfff), size: data.count, value: value)
        }
    }

    /// One BAR on the MMIO bus, forwarding to its device with BAR-relative offsets.
    final class BARRegion: BusDevice {
        let device: any PCIDevice
        let index: Int
        init(device: any PCIDevice, index: Int) {
            self.device = device
            self.index = index
        }

        func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) { device.readBAR(index, offset: offset, data: data) }
        func write(offset: UInt64, data: UnsafeRawBufferPointer) { device.writeBAR(index, offset: offset, data: data) }
    }
}
