/// How a VM ended.
public enum MachineExit: Sendable, Equatable {
    /// The guest wrote `code` to the debug-exit port.
    case guestExit(code: UInt32)
    /// The guest asked to power off or reset through KVM (a system event).
    case guestShutdown
    /// The host asked the VM to stop (SIGINT, SIGTERM).
    case stopped(signal: Int32)
    /// The control API asked the VM to shut down.
    case shutdownRequested
    /// The guest cannot go on: triple fault, emulation failure, failed entry. `details` holds the registers.
    case fault(reason: String, details: String)
}

/// Exits taken by the vCPUs, by kind: the cost model of every device rests on these.
public struct ExitStatistics: Sendable, Equatable {
    public var portIO: UInt64 = 0
    public var mmio: UInt64 = 0
    public var interrupted: UInt64 = 0
    public var other: UInt64 = 0
    public var total: UInt64 { portIO + mmio + interrupted + other }

    /// Adds another vCPU's counts.
    public mutating func add(_ other: ExitStatistics) {
        portIO += other.portIO
        mmio += other.mmio
        interrupted += other.interrupted
        self.other += other.other
    }
}
