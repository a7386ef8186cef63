import Foundation
import GPUDaemon
import GPUHost
import MLaaS
import VGPUCore

/// The GPU daemon's API resources (docs/api/gpud.yaml), snake_case on the wire.
public struct GPUDaemonStatus: Codable, Sendable, Equatable {
    public var pid: Int32
    public var gpu: String
    public var policy: String
    public var timeSliceMilliseconds: Double
    /// Where VMs connect their vGPUs (`--vgpu gpud=PATH`'s vgpu-user socket).
    public var vgpuSocket: String
    public var uptimeSeconds: Double
    /// The measuring window (since start or the last `PUT /metrics/reset`).
    public var windowSeconds: Double
    /// GPU time charged / wall time in the window.
    public var utilisation: Double
    public var jainIndex: Double
    public var maxShareError: Double
    public var queueingP99Milliseconds: Double
    /// Fractions of the window the scheduler's dispatching and retiring threads were busy.
    public var dispatchBusy: Double?
    public var retireBusy: Double?
    /// The GPU's own utilisation now (NVML), where the NVIDIA driver is.
    public var nvml: NVML.Reading?
    public var vgpus: [GPUDaemonVGPU]
    public var clients: [GPUDaemonClient]
    /// vGPUs whose VMs went away, latest last.
    public var departures: [GPUDaemonDeparture]
}

/// A vGPU whose VM hung up or died.
public struct GPUDaemonDeparture: Codable, Sendable, Equatable {
    public var vm: String
    public var vgpu: String
    public var secondsAgo: Double
    /// End of the connection → its scheduler clients removed, GPU work retired, memory zeroed.
    public var releaseMilliseconds: Double
    /// End of the connection → its scheduler clients' share given to the others (queued work
    /// cancelled, entitlements recomputed).
    public var redistributionMilliseconds: Double?
    /// End of the connection → the first GPU turn another vGPU got after it (from the
    /// scheduler's slice log); nil when no other vGPU has run since.
    public var handoverMilliseconds: Double?
}

/// One connected vGPU (one VM's device).
public struct GPUDaemonVGPU: Codable, Sendable, Equatable {
    public var id: UInt64
    public var vm: String
    public var vgpu: String
    public var profile: VGPUProfileInfo
    public var active: Bool
    public var connectedSeconds: Double
    public var submissions: UInt64
    /// GPU time charged since the vGPU connected.
    public var gpuMilliseconds: Double
    /// Its contexts' part of the GPU time charged in the window.
    public var measuredShare: Double
    /// What a perfect scheduler would have given its contexts in the window.
    public var targetShare: Double
}

/// One scheduler client: a compute context of some vGPU.
public struct GPUDaemonClient: Codable, Sendable, Equatable {
    public var id: UInt32
    public var name: String
    public var weight: Double
    public var entitledShare: Double
    public var measuredShare: Double
    public var targetShare: Double
    public var gpuMilliseconds: Double
    public var batches: UInt64
    public var queuedBatches: Int
    public var queueingP99Milliseconds: Double
    public var memoryInUseBytes: Int
}

/// What the daemon's API serves, over a running `VGPUServer`.
public struct GPUDaemonController: Sendable {
    public let daemon: VGPUServer
    /// The daemon's MLaaS services (docs/mlaas.md).
    public let mlaas: MLaaSController

    /// Opened once: NVML's own initialisation is not cheap, and a status is asked for often.
    private let nvml: NVML?

    public init(daemon: VGPUServer, mlaas: MLaaSController = MLaaSController(registry: ServiceRegistry(directory: .besideExecutable))) {
        self.daemon = daemon
        self.mlaas = mlaas
        if case let .success(nvml) = NVML.open() { self.nvml = nvml } else { nvml = nil }
    }

    public func status() -> GPUDaemonStatus {
        let metrics = daemon.scheduler.metrics()
        let sessions = daemon.vgpus
        func milliseconds(_ ns: UInt64) -> Double { Double(ns) / 1e6 }
        let clients = metrics.clients.map { client in
            GPUDaemonClient(id: client.id.rawValue, name: client.name, weight: client.weight, entitledShare: client.entitledShare,
                            measuredShare: client.measuredShare, targetShare: client.targetShare,
                            gpuMilliseconds: milliseconds(client.chargedNanoseconds), batches: client.batches,
                            queuedBatches: client.queuedBatches, queueingP99Milliseconds: milliseconds(client.queueing.p99Nanoseconds),
                            memoryInUseBytes: client.memoryInUseBytes)
        }
        let vgpus = sessions.map { session in
            let own = metrics.clients.filter { $0.owner?.belongs(toVM: session.vm, vgpu: session.vgpu) == true }
            return GPUDaemonVGPU(id: session.id, vm: session.vm, vgpu: session.vgpu, profile: VGPUProfileInfo(session.profile),
                                 active: session.active, connectedSeconds: Date().timeIntervalSince(session.connected),
                                 submissions: session.statistics.submissions,
                                 gpuMilliseconds: milliseconds(session.statistics.gpuNanoseconds),
                                 measuredShare: own.reduce(0) { $0 + $1.measuredShare },
                                 targetShare: own.reduce(0) { $0 + $1.targetShare })
        }
        let departures = daemon.departures.map { departure in
            let handover = metrics.sliceLog.first { slice in
                slice.startNanoseconds >= departure.disconnectedNanoseconds
                    && !(metrics.clients.first { $0.id == slice.client }?.owner?.belongs(toVM: departure.vm, vgpu: departure.vgpu) ?? true)
            }
            let revoked = metrics.removals.filter { $0.owner?.belongs(toVM: departure.vm, vgpu: departure.vgpu) == true
                && $0.revokedNanoseconds >= departure.disconnectedNanoseconds }.map(\.revokedNanoseconds).max()
            return GPUDaemonDeparture(vm: departure.vm, vgpu: departure.vgpu, secondsAgo: Date().timeIntervalSince(departure.at),
                                      releaseMilliseconds: milliseconds(departure.releaseNanoseconds),
                                      redistributionMilliseconds: revoked.map { milliseconds($0 - departure.disconnectedNanoseconds) },
                                      handoverMilliseconds: handover.map { milliseconds($0.startNanoseconds - departure.disconnectedNanoseconds) })
        }
        return GPUDaemonStatus(pid: getpid(), gpu: daemon.scheduler.backend.device.name, policy: metrics.policy.name,
                               timeSliceMilliseconds: milliseconds(metrics.timeSliceNanoseconds), vgpuSocket: daemon.socketPath,
                               uptimeSeconds: Date().timeIntervalSince(daemon.started),
                               windowSeconds: Double(metrics.windowNanoseconds) / 1e9, utilisation: metrics.utilisation,
                               jainIndex: metrics.jainIndex, maxShareError: metrics.maxAbsoluteShareError,
                               queueingP99Milliseconds: milliseconds(metrics.queueing.p99Nanoseconds),
                               dispatchBusy: Double(metrics.dispatchNanoseconds) / Double(max(metrics.windowNanoseconds, 1)),
                               retireBusy: Double(metrics.retireNanoseconds) / Double(max(metrics.windowNanoseconds, 1)),
                               nvml: nvml?.read().first, vgpus: vgpus, clients: clients, departures: departures)
    }

    public func resetMetrics() { daemon.scheduler.resetMetrics() }
}

/// Where the GPU daemon's API (docs/api/gpud.yaml) is served.
public enum GPUDaemonAPI {
    /// The daemon's API socket when its vgpu-user socket is `vgpuSocket`: the same path
    /// with `.api` added, so users name one path for both.
    public static func apiSocket(forVGPUSocket vgpuSocket: String) -> String { vgpuSocket + ".api" }

    /// `gpud.sock` in the default socket directory.
    public static var defaultSocket: String { SocketPath.defaultDirectory + "/gpud.sock" }
}
