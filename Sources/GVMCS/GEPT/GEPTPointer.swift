/// The G-EPT pointer (field 0x2004), laid out as VMX's EPTP:
///
/// | bits  | contents                                                     |
/// |-------|--------------------------------------------------------------|
/// | 2:0   | memory type of the paging structures (0 UC, 6 WB)            |
/// | 5:3   | page-walk length minus 1; must be 3 (four levels)            |
/// | 11:6  | reserved, 0 (VMX puts A/D and supervisor-shadow bits here)   |
/// | 51:12 | host address of the 4 KiB-aligned top-level table            |
/// | 63:52 | reserved, 0                                                  |
public struct GEPTPointer: Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(root: UInt64, memoryType: UInt8 = 6, walkLength: Int = 4) {
        rawValue = root | UInt64(walkLength - 1) << 3 | UInt64(memoryType & 7)
    }

    public var memoryType: UInt8 { UInt8(rawValue & 7) }
    public var walkLength: Int { Int((rawValue >> 3) & 7) + 1 }
    public var root: UInt64 { rawValue & GEPTEntry.addressMask }
    public var reservedBitsClear: Bool { rawValue & 0xFFF0_0000_0000_0FC0 == 0 }
}
