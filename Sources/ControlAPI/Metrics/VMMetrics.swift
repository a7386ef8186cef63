import Foundation
import GPUHost
import Hypervisor
import VGPUCore

/// A VM's counters at one moment: what `GET /v1/metrics` serves while it runs (Prometheus
/// text, `VMMetrics.prometheusText`) and what `malvvm run --metrics` writes when it ends.
/// Cumulative since the VM started, so a scraper's rates and the end-of-run file agree.
public struct VMMetrics: Sendable {
    /// The GPU scheduler the VM's embedded vGPUs share (none with only gpud vGPUs).
    public struct Scheduler: Encodable, Sendable, Equatable {
        public let policy: String
        public let windowNanoseconds: UInt64
        public let busyNanoseconds: UInt64
        public let utilisation: Double

        public init(policy: String, windowNanoseconds: UInt64, busyNanoseconds: UInt64, utilisation: Double) {
            self.policy = policy
            self.windowNanoseconds = windowNanoseconds
            self.busyNanoseconds = busyNanoseconds
            self.utilisation = utilisation
        }
    }

    /// One vGPU's submission costs, and its kind's own mechanism counters (the full-vGPU's
    /// userspace exits, doorbells, G-VMCS exits) where it has them.
    public struct VGPU: Sendable {
        public let name: String
        public let kind: String
        public let statistics: VGPUStatistics
        public let mechanism: (any Encodable & Sendable)?

        public init(name: String, kind: String, statistics: VGPUStatistics, mechanism: (any Encodable & Sendable)? = nil) {
            self.name = name
            self.kind = kind
            self.statistics = statistics
            self.mechanism = mechanism
        }
    }

    public let name: String
    public let uptimeSeconds: Double
    public let paused: Bool
    public let vcpus: Int
    /// KVM's own binary statistics for the VM and the sum over its vCPUs (exits by kind,
    /// halts, injections); empty where the kernel has none.
    public let kvm: [String: UInt64]
    /// Exits that reached malvvm, by kind, and guest accesses nothing was mapped at.
    public let vmm: [String: UInt64]
    public let scheduler: Scheduler?
    public let vgpus: [VGPU]

    public init(name: String, uptimeSeconds: Double, paused: Bool, vcpus: Int, kvm: [String: UInt64], vmm: [String: UInt64],
                scheduler: Scheduler?, vgpus: [VGPU]) {
        self.name = name
        self.uptimeSeconds = uptimeSeconds
        self.paused = paused
        self.vcpus = vcpus
        self.kvm = kvm
        self.vmm = vmm
        self.scheduler = scheduler
        self.vgpus = vgpus
    }

    /// Reads `machine`'s counters, the scheduler's window and each vGPU's statistics now.
    public init(name: String, uptimeSeconds: Double, machine: Machine, scheduler: GPUScheduler?, vgpus: [any VGPUCore.VGPU]) {
        self.name = name
        self.uptimeSeconds = uptimeSeconds
        paused = machine.isPaused
        vcpus = machine.configuration.vcpuCount
        kvm = machine.kvmStatistics()
        let exits = machine.statistics
        vmm = ["port_io_exits": exits.portIO, "mmio_exits": exits.mmio, "interrupted": exits.interrupted,
               "other_exits": exits.other, "unmapped_port_accesses": machine.portBus.unmappedAccesses,
               "unmapped_mmio_accesses": machine.mmioBus.unmappedAccesses]
        self.scheduler = scheduler.map { scheduler in
            let metrics = scheduler.metrics()
            return Scheduler(policy: metrics.policy.name, windowNanoseconds: metrics.windowNanoseconds,
                             busyNanoseconds: metrics.busyNanoseconds, utilisation: metrics.utilisation)
        }
        self.vgpus = vgpus.map { VGPU(name: $0.name, kind: $0.kind, statistics: $0.statistics, mechanism: $0.mechanismCounters) }
    }
}
