/// The 32-bit encoding that names a G-VMCS component in `gvmread`/`gvmwrite`.
///
/// The layout is the one Intel SDM vol. 3D Appendix B (and §25.11.2) gives VMCS encodings, bit
/// for bit, so that anyone who knows VMX can read a G-VMCS encoding at a glance:
///
/// | bits  | contents                                                              |
/// |-------|-----------------------------------------------------------------------|
/// | 0     | access type: 0 = full, 1 = high (high is legal only for 64-bit fields) |
/// | 9:1   | index within its (width, type) group                                   |
/// | 11:10 | type: 0 control, 1 read-only data (exit information), 2 guest, 3 host  |
/// | 12    | reserved, 0                                                            |
/// | 14:13 | width: 0 16-bit, 1 64-bit, 2 32-bit, 3 natural-width (64 bits here)    |
/// | 31:15 | reserved, 0                                                            |
public struct GVMCSFieldEncoding: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public enum AccessType: UInt32, Sendable { case full = 0, high = 1 }

    public enum FieldType: UInt32, Sendable, CaseIterable {
        case control = 0
        /// Exit information: written by the unit on exits and failed instructions; a
        /// `gvmwrite` to it fails with `.writeToReadOnlyComponent`.
        case readOnlyData = 1
        case guestState = 2
        case hostState = 3
    }

    public enum Width: UInt32, Sendable, CaseIterable {
        case bits16 = 0
        case bits64 = 1
        case bits32 = 2
        /// Natural width is the unit's address size; this model is a 64-bit unit.
        case natural = 3

        /// Bits the field holds; `gvmwrite` truncates to it as VMWRITE does.
        public var mask: UInt64 {
            switch self {
            case .bits16: 0xFFFF
            case .bits32: 0xFFFF_FFFF
            case .bits64, .natural: .max
            }
        }
    }

    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Builds the encoding of a component from its parts (full access).
    public init(width: Width, type: FieldType, index: UInt32, access: AccessType = .full) {
        precondition(index < 512, "a G-VMCS field index has 9 bits")
        rawValue = width.rawValue << 13 | type.rawValue << 10 | index << 1 | access.rawValue
    }

    public var access: AccessType { rawValue & 1 == 0 ? .full : .high }
    public var index: UInt32 { (rawValue >> 1) & 0x1FF }
    public var type: FieldType { FieldType(rawValue: (rawValue >> 10) & 3)! }
    public var width: Width { Width(rawValue: (rawValue >> 13) & 3)! }

    /// Bits 12 and 31:15 are reserved; an encoding that sets them names no component.
    public var reservedBitsClear: Bool { rawValue & 0xFFFF_9000 == 0 }

    /// The same component with full access (bit 0 cleared).
    public var fullAccess: GVMCSFieldEncoding { GVMCSFieldEncoding(rawValue: rawValue & ~1) }

    public var description: String {
        let hex = String(rawValue, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: max(0, 8 - hex.count)) + hex
    }
}
