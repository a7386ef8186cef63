import Synchronization

/// What a PCI function's BAR is: its size (a power of two) and how it decodes.
public struct PCIBarDefinition: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case memory32, memory64, io }

    public let index: Int
    public let size: UInt64
    public let kind: Kind
    public let prefetchable: Bool

    public init(index: Int, size: UInt64, kind: Kind, prefetchable: Bool = false) {
        precondition(size >= 16 && size & (size - 1) == 0, "BAR size must be a power of two ≥ 16")
        self.index = index
        self.size = size
        self.kind = kind
        self.prefetchable = prefetchable
    }

    /// The low flag bits a BAR register reports (PCI 3.0 §6.2.5.1).
    var flags: UInt32 {
        switch kind {
        case .io: return 0x1
        case .memory32: return prefetchable ? 0x8 : 0
        case .memory64: return 0x4 | (prefetchable ? 0x8 : 0)
        }
    }
}

/// The PCI identity of a function, as its configuration header shows it.
public struct PCIIdentity: Sendable, Equatable {
    public var vendorID: UInt16
    public var deviceID: UInt16
    public var classCode: UInt8
    public var subclass: UInt8
    public var programmingInterface: UInt8 = 0
    public var revision: UInt8 = 0
    public var subsystemVendorID: UInt16 = 0
    public var subsystemID: UInt16 = 0

    public init(vendorID: UInt16, deviceID: UInt16, classCode: UInt8, subclass: UInt8, programmingInterface: UInt8 = 0,
                revision: UInt8 = 0, subsystemVendorID: UInt16 = 0, subsystemID: UInt16 = 0) {
        self.vendorID = vendorID
        self.deviceID = deviceID
        self.classCode = classCode
        self.subclass = subclass
        self.programmingInterface = programmingInterface
        self.revision = revision
        self.subsystemVendorID = subsystemVendorID
        self.subsystemID = subsystemID
    }
}

/// A PCI configuration space (4 KiB, PCIe extended) with per-bit write masks, BAR registers
/// with sizing semantics, and a capability list; a type-0 (endpoint) or type-1 (bridge) header.
///
/// Only bits the mask allows change on a guest write, so read-only fields (IDs, capability
/// links, table sizes) cannot be forged by the guest. Status bits are write-1-to-clear where
/// `clearable` says so: the guest acknowledges an event without racing the device setting another.
public final class PCIConfiguration: Sendable {
    public enum HeaderType: UInt8, Sendable {
        case endpoint = 0
        case bridge = 1
    }

    public static let size = 4096
    static let commandOffset = 0x04
    static let barOffset = 0x10
    static let capabilityPointerOffset = 0x34
    static let firstCapabilityOffset = 0x40
    public static let commandIOSpace: UInt16 = 0x1
    public static let commandMemorySpace: UInt16 = 0x2
    public static let commandBusMaster: UInt16 = 0x4
    static let statusCapabilitiesList: UInt16 = 0x10

    struct State {
        var bytes = [UInt8](repeating: 0, count: PCIConfiguration.size)
        var writable = [UInt8](repeating: 0, count: PCIConfiguration.size)
        var clearable = [UInt8](repeating: 0, count: PCIConfiguration.size)
        var barAddresses: [UInt64] = Array(repeating: 0, count: 6)
        var nextCapability = PCIConfiguration.firstCapabilityOffset
        var lastCapability: Int?
    }

    public let bars: [PCIBarDefinition]
    public let headerType: HeaderType
    /// The BAR registers: six in an endpoint header, two in a bridge's (bus numbers follow).
    private let barRange: Range<Int>
    private let state: Mutex<State>

    public init(identity: PCIIdentity, bars: [PCIBarDefinition], headerType: HeaderType = .endpoint) {
        precondition(bars.allSatisfy { $0.index < (headerType == .endpoint ? 6 : 2) }, "BAR index beyond the header")
        self.bars = bars
        self.headerType = headerType
        barRange = Self.barOffset..<(Self.barOffset + (headerType == .endpoint ? 24 : 8))
        var s = State()
        func put16(_ offset: Int, _ value: UInt16) {
            s.bytes[offset] = UInt8(value & 0xff)
            s.bytes[offset + 1] = UInt8(value >> 8)
        }
        put16(0x00, identity.vendorID)
        put16(0x02, identity.deviceID)
        s.bytes[0x08] = identity.revision
        s.bytes[0x09] = identity.programmingInterface
        s.bytes[0x0a] = identity.subclass
        s.bytes[0x0b] = identity.classCode
        s.bytes[0x0e] = headerType.rawValue
        if headerType == .endpoint {
            // In a bridge header these bytes are the prefetchable window's upper base.
            put16(0x2c, identity.subsystemVendorID)
            put16(0x2e, identity.subsystemID)
        }
        // Command: I/O, memory, bus master, parity, SERR, INTx disable are the guest's to set.
        s.writable[0x04] = 0x47
        s.writable[0x05] = 0x05
        s.writable[0x0c] = 0xff  // cache line size
        s.writable[0x0d] = 0xff  // latency timer
        s.writable[0x3c] = 0xff  // interrupt line: scratch for the guest
        s.bytes[0x3d] = 0  // no INTx pin: these devices interrupt by MSI-X only
        self.state = Mutex(s)
    }

    // MARK: Guest access

    /// A guest read of `size` (1, 2 or 4) bytes at `offset`; out-of-range or misaligned reads float high.
    public func read(offset: Int, size: Int) -> UInt32 {
        guard Self.isValidAccess(offset: offset, size: size) else { return UInt32.max >> (32 - 8 * max(1, min(size, 4))) }
        return state.withLock { s in
            var value: UInt32 = 0
            for i in 0..<size { value |= UInt32(readByte(&s, offset + i)) << (8 * i) }
            return value
        }
    }

    /// A guest write; returns whether the BAR addresses or the command register changed.
    @discardableResult
    public func write(offset: Int, size: Int, value: UInt32) -> Bool {
        guard Self.isValidAccess(offset: offset, size: size) else { return false }
        return state.withLock { s in
            if barRange.contains(offset) {
                return writeBAR(&s, offset: offset, size: size, value: value)
            }
            var changed = false
            for i in 0..<size {
                let index = offset + i
                let byte = UInt8(truncatingIfNeeded: value >> (8 * i))
                let mask = s.writable[index]
                let new = ((s.bytes[index] & ~mask) | (byte & mask)) & ~(byte & s.clearable[index])
                if new != s.bytes[index] && (index == 0x04 || index == 0x05) { changed = true }
                s.bytes[index] = new
            }
            return changed
        }
    }

    static func isValidAccess(offset: Int, size: Int) -> Bool {
        (size == 1 || size == 2 || size == 4) && offset >= 0 && offset + size <= Self.size && offset % size == 0
    }

    private func readByte(_ s: inout State, _ offset: Int) -> UInt8 {
        guard barRange.contains(offset) else { return s.bytes[offset] }
        let register = (offset - Self.barOffset) / 4
        let word = barRegister(s, register)
        return UInt8(truncatingIfNeeded: word >> (8 * UInt32((offset - Self.barOffset) % 4)))
    }

    /// The 32-bit value of BAR register `register` (0-5), the upper half of a 64-bit BAR included.
    private func barRegister(_ s: State, _ register: Int) -> UInt32 {
        if let bar = bars.first(where: { $0.index == register }) {
            return UInt32(truncatingIfNeeded: s.barAddresses[register]) | bar.flags
        }
        if let bar = bars.first(where: { $0.index == register - 1 && $0.kind == .memory64 }) {
            return UInt32(truncatingIfNeeded: s.barAddresses[bar.index] >> 32)
        }
        return 0
    }

    private func writeBAR(_ s: inout State, offset: Int, size: Int, value: UInt32) -> Bool {
        let register = (offset - Self.barOffset) / 4
        // Merge a partial write into the current register value.
        var word = barRegister(s, register)
        let shift = UInt32((offset - Self.barOffset) % 4) * 8
        let mask: UInt32 = size == 4 ? .max : ((1 << (UInt32(size) * 8)) - 1) << shift
        word = (word & ~mask) | ((value << shift) & mask)
        if let bar = bars.first(where: { $0.index == register }) {
            // Address bits below the BAR's size read back as zero: that is how sizing works.
            let flagBits: UInt64 = bar.kind == .io ? 0x3 : 0xf
            let low = UInt64(word) & ~(bar.size - 1) & ~flagBits & 0xffff_ffff
            let old = s.barAddresses[register]
            s.barAddresses[register] = (bar.kind == .memory64 ? old & 0xffff_ffff_0000_0000 : 0) | low
            return old != s.barAddresses[register]
        }
        if let bar = bars.first(where: { $0.index == register - 1 && $0.kind == .memory64 }) {
            let old = s.barAddresses[bar.index]
            s.barAddresses[bar.index] = ((UInt64(word) << 32) & ~(bar.size - 1)) | (old & 0xffff_ffff)
            return old != s.barAddresses[bar.index]
        }
        return false
    }

    // MARK: VMM side

    public var command: UInt16 {
        state.withLock { UInt16($0.bytes[0x04]) | UInt16($0.bytes[0x05]) << 8 }
    }

    /// The address BAR `index` decodes at, or nil when memory decoding is off or it is unassigned.
    public func decodedAddress(ofBAR index: Int) -> UInt64? {
        guard let bar = bars.first(where: { $0.index == index }) else { return nil }
        let enable = bar.kind == .io ? Self.commandIOSpace : Self.commandMemorySpace
        return state.withLock { s in
            let command = UInt16(s.bytes[0x04]) | UInt16(s.bytes[0x05]) << 8
            let address = s.barAddresses[index]
            return command & enable != 0 && address != 0 ? address : nil
        }
    }

    /// Assigns a BAR's address, as firmware does before the guest runs.
    public func assign(bar index: Int, address: UInt64) {
        state.withLock { $0.barAddresses[index] = address }
    }

    public func setCommand(_ value: UInt16) {
        state.withLock { s in
            s.bytes[0x04] = UInt8(value & 0xff)
            s.bytes[0x05] = UInt8(value >> 8)
        }
    }

    /// Appends a capability (its ID first, then `body`, the bytes after the next pointer) to the
    /// list; `writableMask` covers the body bytes the guest may change. Returns its offset.
    @discardableResult
    public func addCapability(id: UInt8, body: [UInt8], writableMask: [UInt8] = []) -> Int {
        state.withLock { s in
            let offset = s.nextCapability
            let length = 2 + body.count
            precondition(offset + length <= 0x100, "capabilities overflow the standard configuration space")
            s.bytes[offset] = id
            s.bytes[offset + 1] = 0
            for (i, byte) in body.enumerated() { s.bytes[offset + 2 + i] = byte }
            for (i, mask) in writableMask.enumerated() where i < body.count { s.writable[offset + 2 + i] = mask }
            if let last = s.lastCapability {
                s.bytes[last + 1] = UInt8(offset)
            } else {
                s.bytes[Self.capabilityPointerOffset] = UInt8(offset)
                s.bytes[0x06] |= UInt8(Self.statusCapabilitiesList)
            }
            s.lastCapability = offset
            s.nextCapability = (offset + length + 3) & ~3
            return offset
        }
    }

    /// Sets which bits of `[offset, offset + writable.count)` the guest may write, and which of
    /// them are write-1-to-clear status bits instead (`clearable`, same length or empty).
    public func setWriteMasks(at offset: Int, writable: [UInt8], clearable: [UInt8] = []) {
        precondition(offset >= 0 && offset + max(writable.count, clearable.count) <= Self.size)
        state.withLock { s in
            for (i, mask) in writable.enumerated() { s.writable[offset + i] = mask }
            for (i, mask) in clearable.enumerated() { s.clearable[offset + i] = mask }
        }
    }

    /// The little-endian 16-bit register at `offset`, device side.
    public func value16(at offset: Int) -> UInt16 {
        state.withLock { UInt16($0.bytes[offset]) | UInt16($0.bytes[offset + 1]) << 8 }
    }

    public func value32(at offset: Int) -> UInt32 {
        state.withLock { s in (0..<4).reduce(0) { $0 | UInt32(s.bytes[offset + $1]) << (8 * UInt32($1)) } }
    }

    /// Changes the 16-bit register at `offset` in one step against concurrent guest writes;
    /// returns the old and the new value.
    @discardableResult
    public func update16(at offset: Int, _ change: (UInt16) -> UInt16) -> (old: UInt16, new: UInt16) {
        state.withLock { s in
            let old = UInt16(s.bytes[offset]) | UInt16(s.bytes[offset + 1]) << 8
            let new = change(old)
            s.bytes[offset] = UInt8(new & 0xff)
            s.bytes[offset + 1] = UInt8(new >> 8)
            return (old, new)
        }
    }

    /// Device-side read and write of raw bytes (capability fields the device itself maintains).
    public func bytes(at offset: Int, count: Int) -> [UInt8] {
        state.withLock { Array($0.bytes[offset..<(offset + count)]) }
    }

    public func setBytes(_ bytes: [UInt8], at offset: Int) {
        state.withLock { s in
            for (i, byte) in bytes.enumerated() { s.bytes[offset + i] = byte }
        }
    }
}
