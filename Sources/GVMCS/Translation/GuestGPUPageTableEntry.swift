/// One entry of the guest's own GPU page tables (guest GPU virtual → guest-physical), the
/// format the guest driver writes: bit 0 present, bit 1 writable, bit 63 no-execute (no
/// command fetch), 51:12 the guest-physical address of the next table or page. Other bits are
/// ignored, as x86 ignores its available bits. Four levels, 48-bit guest GPU addresses.
public struct GuestGPUPageTableEntry: Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(address: UInt64, writable: Bool, executable: Bool) {
        rawValue = (address & GEPTEntry.addressMask) | 1 | (writable ? 2 : 0)
            | (executable ? 0 : 1 << 63)
    }

    public var isPresent: Bool { rawValue & 1 != 0 }
    public var isWritable: Bool { rawValue & 2 != 0 }
    public var isExecutable: Bool { rawValue & (1 << 63) == 0 }
    public var address: UInt64 { rawValue & GEPTEntry.addressMask }
}
