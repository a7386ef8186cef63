import VGPUCore

/// The VM control API's resources (docs/api/malvvm.yaml is their contract). Field names go on
/// the wire in snake_case.

public enum VMRunState: String, Codable, Sendable {
    case running, paused
}

public struct VMInfo: Codable, Sendable, Equatable {
    public var name: String
    public var pid: Int32
    public var state: VMRunState
    public var memoryBytes: UInt64
    public var vcpus: Int
    /// The CPU template shaping the guest's CPUID: `host`, a built-in name or the template file.
    public var cpuTemplate: String
    public var kernel: String
    public var commandLine: String
    public var apiSocket: String
    public var uptimeSeconds: Double
    public var vgpus: Int

    public init(name: String, pid: Int32, state: VMRunState, memoryBytes: UInt64, vcpus: Int, cpuTemplate: String = "host",
                kernel: String, commandLine: String, apiSocket: String, uptimeSeconds: Double, vgpus: Int) {
        self.name = name
        self.pid = pid
        self.state = state
        self.memoryBytes = memoryBytes
        self.vcpus = vcpus
        self.cpuTemplate = cpuTemplate
        self.kernel = kernel
        self.commandLine = commandLine
        self.apiSocket = apiSocket
        self.uptimeSeconds = uptimeSeconds
        self.vgpus = vgpus
    }
}

/// A vGPU profile as the API shows it.
public struct VGPUProfileInfo: Codable, Sendable, Equatable {
    public var name: String
    public var memoryBytes: UInt64
    public var weight: Double
    public var contexts: Int

    public init(_ profile: VGPUProfile) {
        name = profile.name
        memoryBytes = UInt64(profile.memoryBytes)
        weight = profile.weight
        contexts = profile.maxContexts
    }
}

public struct VGPUInfo: Codable, Sendable, Equatable {
    /// Stable for the VM's lifetime: "vgpu0", "vgpu1", ... (never reused after a detach).
    public var id: String
    /// "para" (virtio-gpu) or "full" (G-VMCS).
    public var kind: String
    public var profile: VGPUProfileInfo
    /// PCI location the guest sees, e.g. "00:03.0".
    public var pciAddress: String
    /// Whether it was attached to the running VM (hot-plugged) rather than at boot.
    public var hotplugged: Bool
    public var statistics: VGPUStatistics?

    public init(id: String, kind: String, profile: VGPUProfileInfo, pciAddress: String, hotplugged: Bool,
                statistics: VGPUStatistics?) {
        self.id = id
        self.kind = kind
        self.profile = profile
        self.pciAddress = pciAddress
        self.hotplugged = hotplugged
        self.statistics = statistics
    }
}

/// Every 4xx/5xx carries this body.
public struct APIErrorBody: Codable, Sendable, Equatable {
    public var error: String
    public init(error: String) { self.error = error }
}
