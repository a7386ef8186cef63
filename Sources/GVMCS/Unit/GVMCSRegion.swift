/// What the unit keeps for one G-VMCS region (a 4 KiB-aligned host address): the structure's
/// data, its launch state and the unit-private state VMX also keeps out of software's reach.
struct GVMCSRegion {
    enum LaunchState: Sendable { case clear, launched }

    var vmcs = GVMControlStructure()
    var launchState = LaunchState.clear
    /// Trapped register accesses waiting to be reported, oldest first.
    var pendingExits: [GVMExit] = []
    /// When the last preemption-timer exit happened, for `cumulativePreemptionTime`.
    var preemptedAt: UInt64?
}
