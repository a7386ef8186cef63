/// One 64-bit G-EPT entry, at any of the four levels, laid out as a VMX EPT entry:
/// bit 0 read, 1 write, 2 execute (fetching commands); 5:3 memory type (leaves only);
/// 51:12 the host address of the next table or of the 4 KiB page; 11:6 and 63:52 reserved.
///
/// An entry with none of R/W/X is not present. Write without read is a misconfiguration, as in
/// VMX, and so is a set reserved bit or a leaf memory type the unit does not know: the walk
/// then reports a G-EPT misconfiguration rather than a violation, because the hypervisor, not
/// the guest, is at fault.
public struct GEPTEntry: Hashable, Sendable {
    public static let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000
    static let reservedMask: UInt64 = 0xFFF0_0000_0000_0FC0

    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(address: UInt64, permissions: GEPTPermissions, memoryType: UInt8 = 0) {
        precondition(address & ~Self.addressMask == 0, "G-EPT targets are 4 KiB-aligned")
        rawValue = address | UInt64(memoryType & 7) << 3 | UInt64(permissions.rawValue)
    }

    public var permissions: GEPTPermissions { GEPTPermissions(rawValue: UInt8(rawValue & 7)) }
    public var isPresent: Bool { !permissions.isEmpty }
    public var address: UInt64 { rawValue & Self.addressMask }
    public var memoryType: UInt8 { UInt8((rawValue >> 3) & 7) }

    /// Misconfigured: reserved bits set, or write/execute-only combinations VMX also rejects.
    func isMisconfigured(leaf: Bool, memoryTypes: Set<UInt8>) -> Bool {
        if rawValue & Self.reservedMask != 0 { return true }
        if permissions.contains(.write) && !permissions.contains(.read) { return true }
        if leaf { return !memoryTypes.contains(memoryType) }
        // Non-leaf entries carry no memory type; bits 5:3 must be zero there.
        return memoryType != 0
    }
}

/// Access rights in a G-EPT entry, and the kinds of access the GPU makes.
public struct GEPTPermissions: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let read = GEPTPermissions(rawValue: 1 << 0)
    public static let write = GEPTPermissions(rawValue: 1 << 1)
    /// Command fetch from the ring, the GPU's instruction fetch.
    public static let execute = GEPTPermissions(rawValue: 1 << 2)
    public static let all: GEPTPermissions = [.read, .write, .execute]
}
