/// A vGPU of any kind as the VMM and its API see it: a name, a kind, the profile it was
/// granted, statistics, and the end of its life.
///
/// Every kind (the para-vGPU in this process or in the GPU daemon, the full-vGPU on the G-VMCS
/// model) implements the whole lifecycle itself, so the command line and the API controller
/// never need to know which kind they hold.
public protocol VGPU: AnyObject, Sendable {
    var name: String { get }
    /// "para" (virtio-gpu) or "full" (the G-VMCS full-vGPU).
    var kind: String { get }
    /// What the vGPU is allowed (a daemon's vGPU: what the daemon granted).
    var profile: VGPUProfile { get }
    /// Counters since the vGPU was created.
    var statistics: VGPUStatistics { get }
    /// Counters of the kind's own mechanism for `--metrics` (the full-vGPU's exits, doorbells
    /// and G-VMCS entries); nil for a kind that has none beyond `statistics`.
    var mechanismCounters: (any Encodable & Sendable)? { get }
    /// Ends the vGPU for good: its device threads stopped, queued GPU work cancelled, its GPU
    /// memory zeroed and freed and its scheduler clients removed (a daemon's vGPU: the
    /// connection closed, and the daemon does all that). Called when the VM ends or after the
    /// vGPU left the VM; calling it again does nothing.
    func stop()
    /// Gives the guest the VM's MLaaS services through this vGPU (nil: none). A kind that
    /// carries no MLaaS requests ignores it (the default).
    func bindMLaaS(_ port: (any MLaaSGuestPort)?)
}

extension VGPU {
    public var mechanismCounters: (any Encodable & Sendable)? { nil }
    public func bindMLaaS(_ port: (any MLaaSGuestPort)?) {}
}
