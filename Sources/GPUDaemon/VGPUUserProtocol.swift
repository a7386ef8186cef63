import Hypervisor
import VGPUCore

/// The vgpu-user protocol between a VM and the GPU daemon (docs/gpud.md): the vhost-user model
/// for our para-vGPU. The VM keeps the virtio-pci transport (configuration space, feature
/// negotiation, MSI-X); the daemon runs the virtio-gpu device itself, on the VM's guest memory
/// (a sealed memfd), doorbells (KVM ioeventfds) and completion interrupts (KVM irqfds), all
/// passed with SCM_RIGHTS, so tensor data and submissions never pass through a socket or the
/// VM's process.
///
/// One connection is one vGPU. Every request gets exactly one reply, in order; the daemon may
/// also send `needsReset` at any time.
enum VGPUUser {
    /// 2: a VM names its profile and the daemon says what it grants (version 1 sent the
    /// whole profile, so a VM chose its own share).
    static let version = 2

    struct MemoryRegion: Codable, Sendable {
        var start: UInt64
        var size: UInt64
        var fileOffset: UInt64
    }

    struct Hello: Codable, Sendable {
        var version: Int
        var vm: String
        var vgpu: String
        /// The name of one of the daemon's profiles (`malvvm gpud --profile`).
        var profile: String
        var regions: [MemoryRegion]
        /// The MLaaS services the VM selected (`malvvm run --mlaas`): the daemon applies those it
        /// has loaded that act on what it owns (learned-slice on its scheduler). Optional, so a
        /// VM that predates it still says hello at version 2.
        var mlaas: [String]?
        // Descriptors: the guest-memory memfd.
    }

    struct Queue: Codable, Sendable {
        var size: UInt16
        var descriptorTable: UInt64
        var availableRing: UInt64
        var usedRing: UInt64
    }

    struct Activation: Codable, Sendable {
        var features: UInt64
        /// One per device queue; nil where the driver left the queue disabled.
        var queues: [Queue?]
        /// Which queues have an interrupt descriptor.
        var interrupts: [Bool]
        // Descriptors: one doorbell per queue, then one irqfd per `true` in `interrupts`.
    }

    enum Request: Codable, Sendable {
        case hello(Hello)
        case activate(Activation)
        case reset
        case writeConfiguration(offset: Int, bytes: [UInt8])
        case statistics
    }

    struct Device: Codable, Sendable {
        var deviceType: UInt16
        var features: UInt64
        var queueSizes: [UInt16]
        var configuration: [UInt8]
        var pciClass: [UInt8]
        /// What the daemon grants this vGPU: its operator's profile of the name asked for.
        var profile: VGPUProfile
        /// Of the hello's `mlaas`, the services that serve the VM in the daemon (nil from a
        /// daemon that predates them: none).
        var mlaas: [String]?
    }

    enum Reply: Codable, Sendable {
        case device(Device)
        case done
        case statistics(VGPUStatistics)
        case failed(String)
        /// Unsolicited: the device met a driver error it cannot serve past.
        case needsReset(String)
    }
}

extension VGPUUser.Queue {
    init(_ configuration: VirtqueueConfiguration) {
        self.init(size: configuration.size, descriptorTable: configuration.descriptorTable.raw,
                  availableRing: configuration.availableRing.raw, usedRing: configuration.usedRing.raw)
    }

    func configuration(features: UInt64) -> VirtqueueConfiguration {
        VirtqueueConfiguration(size: size, descriptorTable: GuestAddress(descriptorTable),
                               availableRing: GuestAddress(availableRing), usedRing: GuestAddress(usedRing),
                               eventIndex: features & VirtioFeature.eventIndex != 0,
                               indirectDescriptors: features & VirtioFeature.indirectDescriptors != 0)
    }
}
