/// Basic exit reasons (bits 15:0 of the exit-reason field, 0x4402). Bit 31 of the field is set
/// for `.entryFailure`, as VMX sets it for "VM-entry failure due to invalid guest state".
/// The SDM's number for the nearest VMX exit is given for each, for readers who know VMX.
public enum GVMExitReason: UInt16, CaseIterable, Sendable, CustomStringConvertible {
    /// The guest wrote the doorbell register while `doorbellExiting` was set. Qualification:
    /// the value written (the new ring tail). VMX: MMIO via EPT violation / I/O instruction (30).
    case doorbell = 1
    /// A trapped register access. Qualification: `GVMMMIOQualification`; write data in
    /// `exitMMIOData`. VMX: I/O instruction (30).
    case mmioAccess = 2
    /// Qualification: `GEPTViolationQualification`; addresses in `guestPhysicalAddress` and
    /// `guestGPUAddress`. VMX: EPT violation (48).
    case geptViolation = 3
    /// A malformed G-EPT entry. Qualification 0; addresses as for a violation.
    /// VMX: EPT misconfiguration (49).
    case geptMisconfiguration = 4
    /// The slice is used up (checked at command boundaries). VMX: preemption timer expired (52).
    case preemptionTimerExpired = 5
    /// A fence completed with posted completions off. Qualification: the fence value.
    /// VMX: external interrupt (1).
    case completion = 6
    /// The command could not be run. Qualification: `GVMInvalidCommandCause` in bits 7:0.
    /// VMX: none (the nearest is a #UD in the exception bitmap).
    case invalidCommand = 7
    /// The guest's own GPU page tables refused an access. Qualification: `GuestPageFaultCode`;
    /// address in `guestGPUAddress`. VMX: exception (0) with #PF in the exception bitmap.
    case guestPageFault = 8
    /// The ring is empty (head == tail): the GPU front end would idle. VMX: HLT (12).
    case idle = 9
    /// Entry failed on guest state (with bit 31 set in the field). Qualification: the
    /// `GVMEntryCheck` number. VMX: VM-entry failure due to invalid guest state (33).
    case entryFailure = 33

    public static let entryFailureBit: UInt32 = 1 << 31

    public var description: String {
        switch self {
        case .doorbell: "doorbell"
        case .mmioAccess: "MMIO register access"
        case .geptViolation: "G-EPT violation"
        case .geptMisconfiguration: "G-EPT misconfiguration"
        case .preemptionTimerExpired: "preemption timer expired"
        case .completion: "completion"
        case .invalidCommand: "invalid command"
        case .guestPageFault: "guest GPU page fault"
        case .idle: "idle"
        case .entryFailure: "entry failure (invalid guest state)"
        }
    }
}
