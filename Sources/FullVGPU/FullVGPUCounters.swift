import GVMCS

/// What a full-vGPU's hypervisor side has seen: the costs the G-VMCS controls move.
public struct FullVGPUCounters: Hashable, Sendable, Codable {
    /// Guest accesses to the register BAR that reached the VMM: each one a KVM MMIO exit to
    /// userspace. Doorbells on the ioeventfd are not among them.
    public var registerExits: UInt64 = 0
    /// Doorbells KVM signalled on the ioeventfd (no userspace exit).
    public var doorbellKicks: UInt64 = 0
    /// Register accesses the model trapped (exits 1 and 2), and those it completed itself.
    public var trappedAccesses: UInt64 = 0
    public var directAccesses: UInt64 = 0
    /// `gvmlaunch`/`gvmresume` executed, and the exits they returned, by reason name.
    public var entries: UInt64 = 0
    public var exits: [String: UInt64] = [:]
    /// Completions signalled to the guest: by the unit (posted) or by the hypervisor.
    public var postedNotifications: UInt64 = 0
    public var hypervisorCompletions: UInt64 = 0
    /// Times the vGPU stopped on a fault.
    public var faults: UInt64 = 0

    public init() {}

    /// The key an exit reason is counted under (JSON-friendly, stable).
    static func key(_ reason: GVMExitReason) -> String {
        switch reason {
        case .doorbell: "doorbell"
        case .mmioAccess: "mmio_access"
        case .geptViolation: "gept_violation"
        case .geptMisconfiguration: "gept_misconfiguration"
        case .preemptionTimerExpired: "preemption_timer"
        case .completion: "completion"
        case .invalidCommand: "invalid_command"
        case .guestPageFault: "guest_page_fault"
        case .idle: "idle"
        case .entryFailure: "entry_failure"
        }
    }

    public var totalExits: UInt64 { exits.values.reduce(0, +) }
}
