/// Why the virtual GPU left guest mode, with the data the hypervisor needs to handle it: the
/// decoded form of the exit-information fields, as rust-vmm's `VcpuExit` is of `kvm_run`.
public enum GVMExit: Hashable, Sendable {
    case doorbell(tail: UInt32)
    /// `data` is the value of a write, `nil` for a read (the device completes the read).
    case mmioAccess(GVMMMIOQualification, data: UInt64?)
    case geptViolation(GEPTViolationQualification, guestPhysical: UInt64, guestGPUAddress: UInt64)
    case geptMisconfiguration(guestPhysical: UInt64, guestGPUAddress: UInt64)
    case preemptionTimerExpired
    /// `vector` is present when `acknowledgeCompletionOnExit` recorded it.
    case completion(fence: UInt64, vector: UInt8?)
    case invalidCommand(GVMInvalidCommandCause)
    case guestPageFault(GuestPageFaultCode, guestGPUAddress: UInt64)
    case idle
    case entryFailure(GVMEntryCheck)

    public var reason: GVMExitReason {
        switch self {
        case .doorbell: .doorbell
        case .mmioAccess: .mmioAccess
        case .geptViolation: .geptViolation
        case .geptMisconfiguration: .geptMisconfiguration
        case .preemptionTimerExpired: .preemptionTimerExpired
        case .completion: .completion
        case .invalidCommand: .invalidCommand
        case .guestPageFault: .guestPageFault
        case .idle: .idle
        case .entryFailure: .entryFailure
        }
    }
}

/// What `gvmlaunch`/`gvmresume` return: the exit, plus the fields every exit sets. The same
/// values are in the G-VMCS's exit-information fields for `gvmread`.
public struct GVMExitRecord: Hashable, Sendable {
    public let exit: GVMExit
    /// The exit-reason field as written (bit 31 set for an entry failure).
    public let rawReason: UInt32
    public let qualification: UInt64
    /// Ring slot of the command involved (the faulting one, or the fence); for exits not tied
    /// to a command, the head at exit.
    public let commandIndex: UInt32
    public let commandOffset: UInt32
    /// Nanoseconds from entry to exit (0 for an entry failure: the guest never ran).
    public let timeRun: UInt64
}
