/// A guest CPU access to the virtual GPU's register BAR (64 KiB), as the device receives it
/// from KVM (an MMIO exit or an ioeventfd).
public struct GVMRegisterAccess: Hashable, Sendable {
    public static let barSize: UInt32 = 64 << 10

    public var offset: UInt32
    /// 1, 2, 4 or 8 bytes.
    public var size: Int
    public var isWrite: Bool
    /// The data of a write; ignored for a read.
    public var value: UInt64

    public init(offset: UInt32, size: Int, isWrite: Bool, value: UInt64 = 0) {
        self.offset = offset
        self.size = size
        self.isWrite = isWrite
        self.value = value
    }

    public static func read(_ offset: UInt32, size: Int = 4) -> Self {
        Self(offset: offset, size: size, isWrite: false)
    }

    public static func write(_ offset: UInt32, _ value: UInt64, size: Int = 4) -> Self {
        Self(offset: offset, size: size, isWrite: true, value: value)
    }
}

/// What became of a register access.
public enum GVMRegisterAccessOutcome: Hashable, Sendable {
    /// The virtual function handled it without the hypervisor (a read returns `readValue`).
    case completed(readValue: UInt64?)
    /// It exits: the next entry of that G-VMCS returns a doorbell or MMIO exit for it, and the
    /// hypervisor completes the access (for a read, the device answers KVM itself).
    case trapped
    /// Not a G-VMCS region the unit knows, not a size the bus allows, beyond the BAR, or too
    /// many trapped accesses outstanding: the device fails the access (reads as all ones).
    case rejected
}

/// The registers the virtual function implements itself. Any other offset is for the device
/// model: it traps (bitmap bit set, or no bitmap) or reads as zero and ignores writes.
public enum GVMRegister: UInt32, CaseIterable, Sendable {
    /// Write: the new ring tail. Exits when `doorbellExiting`, else updates the tail in place.
    case doorbell = 0x000
    /// Read: the ring head (next slot the GPU fetches).
    case ringHead = 0x004
    /// Read: the ring tail.
    case ringTail = 0x008
    /// Read: bit 0 set once the G-VMCS has been launched.
    case status = 0x00C
}
