/// Exit qualification of a G-EPT violation, bit for bit as VMX's EPT-violation qualification
/// (SDM table 28-7) where the meanings carry over:
///
/// | bit | meaning                                                                    |
/// |-----|----------------------------------------------------------------------------|
/// | 0   | the access was a data read                                                 |
/// | 1   | the access was a data write                                                |
/// | 2   | the access was a command fetch (the GPU's instruction fetch)              |
/// | 3-5 | the G-EPT allowed read / write / execute (AND over the levels walked)      |
/// | 7   | the guest GPU address field is valid                                       |
/// | 8   | 1: access to the translated address; 0: a read of a guest page-table entry |
public struct GEPTViolationQualification: Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(access: GEPTPermissions, allowed: GEPTPermissions,
                guestGPUAddressValid: Bool, translatedAccess: Bool) {
        rawValue = UInt64(access.rawValue) | UInt64(allowed.rawValue) << 3
            | (guestGPUAddressValid ? 1 << 7 : 0) | (translatedAccess ? 1 << 8 : 0)
    }

    public var access: GEPTPermissions { GEPTPermissions(rawValue: UInt8(rawValue & 7)) }
    public var allowed: GEPTPermissions { GEPTPermissions(rawValue: UInt8((rawValue >> 3) & 7)) }
    public var guestGPUAddressValid: Bool { rawValue & (1 << 7) != 0 }
    public var translatedAccess: Bool { rawValue & (1 << 8) != 0 }
}
