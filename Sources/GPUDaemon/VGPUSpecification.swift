import GPUHost
import Hypervisor
import VirtioGPU

/// A `--vgpu` argument: the profile, and where the vGPU's device runs.
///
/// `profile=4g,weight=2` runs it in the VM's process on the embedded scheduler;
/// `gpud=/run/malvvm/gpud.sock,profile=4g` (or a bare `gpud` for the default socket) makes the
/// VM a client of the GPU daemon there. The other keys are `VGPUProfile`'s.
public struct VGPUSpecification: Sendable, Equatable {
    public enum Placement: Sendable, Equatable {
        case embedded
        case daemon(socket: String)
    }

    public var profile: VGPUProfile
    public var placement: Placement

    public init(profile: VGPUProfile, placement: Placement = .embedded) {
        self.profile = profile
        self.placement = placement
    }

    public init(parsing text: String, defaultDaemonSocket: String) throws(VGPUProfile.ParseError) {
        var placement = Placement.embedded
        var rest: [Substring] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.first?.lowercased() == "gpud" else { rest.append(item); continue }
            guard placement == .embedded else { throw .duplicateKey("gpud") }
            let path = parts.count == 2 ? String(parts[1]) : defaultDaemonSocket
            guard !path.isEmpty else { throw .badValue(key: "gpud", value: path) }
            placement = .daemon(socket: path)
        }
        profile = try VGPUProfile(parsing: rest.joined(separator: ","))
        self.placement = placement
    }
}

extension VGPUSpecification {
    /// The vGPU's device for VM `vm`: a `VirtioGPU` on the scheduler `embedded` opens (called
    /// only for an embedded vGPU), or the GPU daemon's (`RemoteVGPU`, connected here).
    public func makeDevice(vm: String, name: String, memory: GuestMemory,
                           embedded: () throws -> GPUScheduler) throws -> any VGPUBackend {
        switch placement {
        case .embedded:
            return VirtioGPU(scheduler: try embedded(), profile: profile, memory: memory, name: name)
        case let .daemon(socket):
            return try RemoteVGPU(daemonSocket: socket, vm: vm, name: name, profile: profile, memory: memory)
        }
    }
}
