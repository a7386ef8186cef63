/// Exit qualification of a guest GPU page fault, shaped like the x86 #PF error code:
/// bit 0 set when the page was present (a protection fault), bit 1 for a write, bit 4 for a
/// command fetch. The faulting address is in the guest GPU address field.
public struct GuestPageFaultCode: Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(present: Bool, access: GEPTPermissions) {
        rawValue = (present ? 1 : 0) | (access.contains(.write) ? 2 : 0)
            | (access.contains(.execute) ? 1 << 4 : 0)
    }

    public var present: Bool { rawValue & 1 != 0 }
    public var write: Bool { rawValue & 2 != 0 }
    public var fetch: Bool { rawValue & (1 << 4) != 0 }
}
