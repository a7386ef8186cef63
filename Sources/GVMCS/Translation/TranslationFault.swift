/// Why a guest GPU address could not be turned into a host address. Each maps to one exit.
public enum TranslationFault: Error, Hashable, Sendable {
    /// The guest's own page tables refused the access: the guest's error (guest page fault).
    case guestPageFault(guestGPUAddress: UInt64, code: GuestPageFaultCode)
    /// The G-EPT refused a guest-physical access: the hypervisor decides (map, or kill).
    case geptViolation(guestPhysical: UInt64, guestGPUAddress: UInt64,
                       qualification: GEPTViolationQualification)
    case geptMisconfiguration(guestPhysical: UInt64, guestGPUAddress: UInt64)
    /// With nested paging off, the guest-physical address is not in host memory.
    case unbackedAddress(UInt64)
}
