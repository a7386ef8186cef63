/// Numbers the unit writes to the instruction-error field (0x4400) when an instruction fails
/// with VMfailValid. Numbers are VMX's (SDM vol. 3C §31.4, "VM instruction error numbers")
/// wherever the G-VMCS has the same failure, so the two tables read side by side; numbers VMX
/// uses for things the unit does not have (VMXON, VMCALL, MOV SS, ...) are left unused, and
/// the one G-VMCS addition takes a number VMX has never assigned.
public enum GVMInstructionError: UInt32, Error, CaseIterable, Sendable, CustomStringConvertible {
    case gvmclearInvalidAddress = 2
    case gvmlaunchNonClear = 4
    case gvmresumeNonLaunched = 5
    case entryInvalidControlFields = 7
    case entryInvalidHostStateFields = 8
    case gvmptrldInvalidAddress = 9
    case gvmptrldIncorrectRevision = 11
    case unsupportedComponent = 12
    case writeToReadOnlyComponent = 13
    /// G-VMCS addition. VMX reports bad guest state only as an entry-failure exit (reason 33);
    /// the unit does that too and also records this number, so a hypervisor that reads only
    /// the error field after a failed entry still sees why.
    case entryInvalidGuestStateFields = 64

    public var description: String {
        switch self {
        case .gvmclearInvalidAddress: "gvmclear with invalid address"
        case .gvmlaunchNonClear: "gvmlaunch with non-clear G-VMCS"
        case .gvmresumeNonLaunched: "gvmresume with non-launched G-VMCS"
        case .entryInvalidControlFields: "entry with invalid control field(s)"
        case .entryInvalidHostStateFields: "entry with invalid host-state field(s)"
        case .gvmptrldInvalidAddress: "gvmptrld with invalid address"
        case .gvmptrldIncorrectRevision: "gvmptrld with incorrect G-VMCS revision identifier"
        case .unsupportedComponent: "gvmread/gvmwrite from/to unsupported G-VMCS component"
        case .writeToReadOnlyComponent: "gvmwrite to read-only G-VMCS component"
        case .entryInvalidGuestStateFields: "entry with invalid guest-state field(s)"
        }
    }
}

/// How a G-VMCS instruction fails, in the SDM's two conventions.
public enum GVMInstructionFailure: Error, Hashable, Sendable {
    /// VMfailInvalid (CF=1): there is no current G-VMCS, so there is nowhere to put a number.
    case failInvalid
    /// VMfailValid (ZF=1): the number is also in the current G-VMCS's instruction-error field.
    /// `check` names the failed entry check for errors 7 and 8 (hardware reports only the
    /// number; the model says more because it costs nothing and saves a debugging session).
    case failValid(GVMInstructionError, check: GVMEntryCheck? = nil)
}
