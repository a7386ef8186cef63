/// Exit qualification of a trapped register access, shaped like VMX's I/O-instruction
/// qualification: bits 2:0 size − 1 (0, 1, 3, 7 for 1, 2, 4, 8 bytes), bit 3 direction
/// (1 = read, as VMX's 1 = IN), bits 63:32 the register offset in the vGPU's register BAR.
public struct GVMMMIOQualification: Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(offset: UInt32, size: Int, isWrite: Bool) {
        rawValue = UInt64(offset) << 32 | (isWrite ? 0 : 1 << 3) | UInt64((size - 1) & 7)
    }

    public var offset: UInt32 { UInt32(truncatingIfNeeded: rawValue >> 32) }
    public var size: Int { Int(rawValue & 7) + 1 }
    public var isWrite: Bool { rawValue & (1 << 3) == 0 }
}
