import Logging
import Synchronization

/// Bus 0 of the VM's PCI hierarchy: configuration access by ports 0xcf8/0xcfc (conf1) and by
/// the ECAM window, BAR placement in the 32- and 64-bit MMIO windows, and the mapping of each
/// BAR onto the MMIO bus wherever the guest moves it.
public final class PCIRootComplex: Sendable {
    public static let configAddressPort: UInt64 = 0xcf8
    public static let configDataPort: UInt64 = 0xcfc
    public static let slotCount = 32

    struct Slot: Sendable {
        let device: any PCIDevice
        let name: String
        var mapped: [Int: UInt64] = [:]
    }

    struct State: Sendable {
        var slots: [Int: Slot] = [:]
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

    /// Plugs `device` into `slot`, assigning its BARs (64-bit ones above RAM, others below 4 GiB)
    /// and enabling memory decoding, as firmware leaves devices for the guest.
    public func plug(_ device: any PCIDevice, slot: Int, name: String) throws(HypervisorError) {
        guard (0..<Self.slotCount).contains(slot) else { throw .configuration("PCI slot \(slot) does not exist") }
        try state.withLock { s throws(HypervisorError) in
            guard s.slots[slot] == nil else { throw .configuration("PCI slot \(slot) is taken") }
            for bar in device.configuration.bars {
                let address = bar.kind == .memory64 ? s.window64.allocate(size: bar.size) : s.window32.allocate(size: bar.size)
                guard let address else { throw .configuration("no room for \(name)'s BAR \(bar.index) of \(bar.size) bytes") }
                device.configuration.assign(bar: bar.index, address: address)
            }
            s.slots[slot] = Slot(device: device, name: name)
        }
        if !device.configuration.bars.isEmpty {
            device.configuration.setCommand(PCIConfiguration.commandMemorySpace | PCIConfiguration.commandBusMaster)
        }
        refreshMappings(slot: slot)
    }

    /// Removes the device in `slot` and its BAR mappings.
    public func unplug(slot: Int) {
        let removed: Slot? = state.withLock { $0.slots.removeValue(forKey: slot) }
        guard let removed else { return }
        for (index, _) in removed.mapped {
            mmioBus.remove(name: Self.barName(removed.name, index))
            removed.device.barMapped(index, at: nil)
        }
    }

    /// The bus:device.function the guest sees the named device at ("00:03.0"), or nil.
    public func location(of name: String) -> String? {
        let slot = state.withLock { s in s.slots.first { $0.value.name == name }?.key }
        guard let slot else { return nil }
        let hex = String(slot, radix: 16)
        return "00:\(hex.count < 2 ? "0" + hex : hex).0"
    }

    static func barName(_ device: String, _ index: Int) -> String { "\(device)-bar\(index)" }

    // MARK: Configuration cycles

    func configRead(slot: Int, function: Int, offset: Int, size: Int) -> UInt32 {
        let allOnes = size == 4 ? UInt32.max : (1 << (UInt32(size) * 8)) - 1
        guard function == 0, let device = state.withLock({ $0.slots[slot]?.device }) else { return allOnes }
        return device.configurationRead(offset: offset, size: size) ?? device.configuration.read(offset: offset, size: size)
    }

    func configWrite(slot: Int, function: Int, offset: Int, size: Int, value: UInt32) {
        guard function == 0, let device = state.withLock({ $0.slots[slot]?.device }) else { return }
        if device.configuration.write(offset: offset, size: size, value: value) {
            refreshMappings(slot: slot)
        }
        device.configurationWritten(offset: offset, size: size)
    }

    /// Brings the MMIO bus in line with where the device's BARs decode now.
    private func refreshMappings(slot: Int) {
        guard let current = state.withLock({ $0.slots[slot] }) else { return }
        let device = current.device
        var mapped = current.mapped
        for bar in device.configuration.bars where bar.kind != .io {
            let wanted = device.configuration.decodedAddress(ofBAR: bar.index)
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
        state.withLock { $0.slots[slot]?.mapped = mapped }
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
                value = root.configRead(slot: target.slot, function: target.function, offset: target.register, size: data.count)
            }
            data.storeLittleEndian(UInt64(value))
        }

        func write(offset: UInt64, data: UnsafeRawBufferPointer) {
            let value = UInt32(truncatingIfNeeded: data.littleEndianValue)
            if offset == 0 && data.count == 4 {
                root.state.withLock { $0.configAddress = value & 0x80ff_fffc }
            } else if offset >= 4, let target = target(byteOffset: Int(offset - 4), size: data.count) {
                root.configWrite(slot: target.slot, function: target.function, offset: target.register, size: data.count, value: value)
            }
        }

        private func target(byteOffset: Int, size: Int) -> (slot: Int, function: Int, register: Int)? {
            let address = root.state.withLock { $0.configAddress }
            guard address & 0x8000_0000 != 0, (address >> 16) & 0xff == 0 else { return nil }
            return (Int((address >> 11) & 0x1f), Int((address >> 8) & 0x7), Int(address & 0xfc) + byteOffset)
        }
    }

    /// ECAM: bus << 20 | device << 15 | function << 12 | register; only bus 0 is populated.
    final class ECAMWindow: BusDevice {
        let root: PCIRootComplex
        init(root: PCIRootComplex) { self.root = root }

        func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
            var value = UInt32.max
            if offset >> 20 == 0, PCIConfiguration.isValidAccess(offset: Int(offset & 0xfff), size: data.count) {
                value = root.configRead(slot: Int(offset >> 15 & 0x1f), function: Int(offset >> 12 & 0x7),
                                        offset: Int(offset & 0xfff), size: data.count)
            }
            for i in data.indices { data[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(min(i, 3)))) }
        }

        func write(offset: UInt64, data: UnsafeRawBufferPointer) {
            guard offset >> 20 == 0, PCIConfiguration.isValidAccess(offset: Int(offset & 0xfff), size: data.count) else { return }
            let value = UInt32(truncatingIfNeeded: data.littleEndianValue)
            root.configWrite(slot: Int(offset >> 15 & 0x1f), function: Int(offset >> 12 & 0x7),
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
