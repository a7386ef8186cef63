import FullVGPU
import GPUDaemon
import GPUHost
import Hypervisor
import VGPUCore
import VirtioGPU

/// A `--vgpu` argument: the kind of vGPU, its profile, and where its device runs.
///
/// `profile=4g,weight=2` is a para-vGPU in the VM's process on the embedded scheduler;
/// `gpud=/run/malvvm/gpud.sock,profile=4g` (or a bare `gpud` for the default socket) makes the
/// VM a client of the GPU daemon there. `kind=full` is a full-vGPU (docs/fullvgpu.md), which
/// also takes the G-VMCS control keys (`doorbell-exiting=on`, ...). The other keys are
/// `VGPUProfile`'s.
///
/// A daemon's vGPU names one of the daemon's profiles and nothing more: its memory, weight and
/// contexts are what the daemon's operator set for that name, never what the VM asks.
public struct VGPUSpecification: Sendable, Equatable {
    public enum Placement: Sendable, Equatable {
        /// On the VM's own scheduler, with the profile the VM's command line gives.
        case embedded(VGPUProfile)
        /// On the GPU daemon at `socket`, with its profile named `profile`.
        case daemon(socket: String, profile: String)
    }

    public enum Kind: Sendable, Equatable {
        case para
        case full(FullVGPUControls)

        public var name: String {
            switch self {
            case .para: "para"
            case .full: "full"
            }
        }
    }

    public var kind: Kind
    public var placement: Placement

    public init(kind: Kind = .para, placement: Placement) {
        self.kind = kind
        self.placement = placement
    }

    public init(parsing text: String, defaultDaemonSocket: String) throws(VGPUProfile.ParseError) {
        var daemonSocket: String?
        var kindName: String?
        var controls = FullVGPUControls()
        var controlKeys: [String] = []
        var rest: [Substring] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1)
            let key = parts.first.map { $0.lowercased() } ?? ""
            let value = parts.count == 2 ? String(parts[1]) : ""
            switch key {
            case "gpud":
                guard daemonSocket == nil else { throw .duplicateKey("gpud") }
                let path = parts.count == 2 ? value : defaultDaemonSocket
                guard !path.isEmpty else { throw .badValue(key: "gpud", value: path) }
                daemonSocket = path
            case "kind":
                guard kindName == nil else { throw .duplicateKey("kind") }
                guard ["para", "full"].contains(value.lowercased()) else { throw .badValue(key: "kind", value: value) }
                kindName = value.lowercased()
            case _ where FullVGPUControls.keys.contains(key):
                guard !controlKeys.contains(key) else { throw .duplicateKey(key) }
                guard controls.set(key, value) else { throw .badValue(key: key, value: value) }
                controlKeys.append(key)
            default:
                rest.append(item)
            }
        }
        if kindName == "full" {
            guard daemonSocket == nil else { throw .conflict("a kind=full vGPU runs in the VM's process: gpud= is for para-vGPUs") }
            kind = .full(controls)
        } else {
            if let key = controlKeys.first { throw .conflict("'\(key)' is a full-vGPU control: add kind=full") }
            kind = .para
        }
        if let daemonSocket {
            placement = .daemon(socket: daemonSocket, profile: try Self.daemonProfileName(rest))
        } else {
            placement = .embedded(try VGPUProfile(parsing: rest.joined(separator: ",")))
        }
    }

    /// The one profile name a daemon vGPU may carry ("2g.2gb" or "profile=2g.2gb"; 1g.1gb when none).
    static func daemonProfileName(_ items: [Substring]) throws(VGPUProfile.ParseError) -> String {
        var name: String?
        for item in items {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            let (key, value) = parts.count == 2 ? (parts[0].lowercased(), parts[1]) : ("profile", parts[0])
            guard key == "profile" else {
                throw .conflict("'\(key)' of a gpud vGPU is the daemon operator's to set: name a profile the daemon offers (malvvm gpud --profile NAME:...)")
            }
            guard name == nil else { throw .duplicateKey("profile") }
            guard VGPUProfile.isPlainName(value) else { throw .badValue(key: "profile", value: value) }
            name = value.lowercased()
        }
        return name ?? VGPUProfile.defaultName
    }

    /// The profile: the command line's for an embedded vGPU, the name asked of the daemon for
    /// a daemon's (what it granted is the device's `profile`).
    public var profileName: String {
        switch placement {
        case let .embedded(profile): profile.name
        case let .daemon(_, name): name
        }
    }
}

extension VGPUSpecification {
    /// Creates the vGPU and adds it to `machine` (`Machine.addPCIDevice`'s placement: built in
    /// before boot, hot-plugged into a running VM, unless `placement` says): a para-vGPU behind
    /// the virtio-pci transport, a full-vGPU as its own PCI function.
    /// `services` are the VM's MLaaS services (`--mlaas`), which a GPU daemon's vGPU names to
    /// the daemon (it applies those it has loaded, such as learned-slice, to the VM's clients).
    public func add(to machine: Machine, vm: String, name: String, placement: PCIPlacement? = nil, services: [String] = [],
                    embedded: () throws -> GPUScheduler) throws -> any VGPU {
        switch kind {
        case .para:
            let device = try makeDevice(vm: vm, name: name, memory: machine.memory, services: services, embedded: embedded)
            do { try machine.addVirtioDevice(device, name: name, placement: placement) } catch {
                device.stop()
                throw error
            }
            return device
        case let .full(controls):
            let scheduler = try embedded()
            let profile = try embeddedProfile()
            return try machine.addPCIDevice(name: name, placement: placement) { host throws(HypervisorError) in
                try FullVGPUDevice(host: host, scheduler: scheduler, profile: profile, controls: controls, name: name, vmName: vm)
            }.device
        }
    }

    /// The para-vGPU's device for VM `vm`: a `VirtioGPU` on the scheduler `embedded` opens (called
    /// only for an embedded vGPU), or the GPU daemon's (`RemoteVGPU`, connected here).
    public func makeDevice(vm: String, name: String, memory: GuestMemory, services: [String] = [],
                           embedded: () throws -> GPUScheduler) throws -> any VGPUBackend {
        switch placement {
        case let .embedded(profile):
            return VirtioGPU(scheduler: try embedded(), profile: profile, memory: memory, name: name,
                             owner: ClientOwner(vm: vm, vgpu: name))
        case let .daemon(socket, profileName):
            return try RemoteVGPU(daemonSocket: socket, vm: vm, name: name, profileName: profileName, memory: memory,
                                  services: services)
        }
    }

    private func embeddedProfile() throws(VGPUProfile.ParseError) -> VGPUProfile {
        guard case let .embedded(profile) = placement else {
            throw .conflict("a kind=full vGPU runs in the VM's process: gpud= is for para-vGPUs")
        }
        return profile
    }
}
