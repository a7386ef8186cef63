/// Bits of the 32-bit GPU-execution controls field (0x4000): what the virtual GPU may do on its
/// own and what exits to the hypervisor. Which bits a unit supports is in
/// `GVMCapabilities.executionControls`; any other bit is reserved and fails entry.
public struct GVMExecutionControls: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// A guest write to the doorbell register exits (reason `.doorbell`) instead of advancing the
    /// ring tail in hardware. Off is the fast path: the device backs it with an ioeventfd.
    public static let doorbellExiting = GVMExecutionControls(rawValue: 1 << 0)
    /// Register accesses other than the doorbell exit only when their bit is set in the MMIO
    /// bitmap; with this control clear every such access exits.
    public static let useMMIOBitmap = GVMExecutionControls(rawValue: 1 << 1)
    /// Guest-physical addresses are translated by the G-EPT (`geptPointer`); clear, they are
    /// used as host addresses unchanged.
    public static let nestedPaging = GVMExecutionControls(rawValue: 1 << 2)
    /// The preemption timer (`preemptionTimerValue`) bounds each entry: the scheduler's slice.
    public static let activatePreemptionTimer = GVMExecutionControls(rawValue: 1 << 3)
    /// Completions are posted to the descriptor and signalled on the notification vector
    /// without an exit (the device backs the signal with an irqfd).
    public static let postedCompletions = GVMExecutionControls(rawValue: 1 << 4)
}

/// Bits of the 32-bit exit controls field (0x4002).
public struct GVMExitControls: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// On exit, write the ticks left of the slice back to `preemptionTimerValue`; clear, the
    /// field keeps its value and every entry starts a full slice (VMX bit 22's analogue).
    public static let savePreemptionTimer = GVMExitControls(rawValue: 1 << 0)
    /// On a completion exit the unit acknowledges the completion and records its vector in
    /// `exitCompletionInformation`; clear, the hypervisor reads the fence command itself
    /// (VMX "acknowledge interrupt on exit"). Required by posted completions, as VMX requires it
    /// for posted interrupts.
    public static let acknowledgeCompletionOnExit = GVMExitControls(rawValue: 1 << 1)
}

/// Bits of the 32-bit entry controls field (0x4004).
public struct GVMEntryControls: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Entry restores the guest context from `contextSaveAreaAddress` rather than starting the
    /// context fresh; the save area must then be valid (a guest-state check).
    public static let restoreGuestContext = GVMEntryControls(rawValue: 1 << 0)
}
