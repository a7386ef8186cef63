import Dispatch
import Foundation

import GPUHost
import Hypervisor
import MLaaS
import Synchronization
import VGPUAssembly
import VGPUCore

/// The control API's view of one `malvvm run`: the machine, its vGPUs and the scheduler they
/// share. Thread-safe: API requests arrive on the server's threads while the vCPU runs.
public final class MachineController: VMControl, @unchecked Sendable {
    private struct AttachedVGPU {
        let id: String
        let device: any VGPU
        let hotplugged: Bool
    }

    private struct VGPUs {
        var attached: [AttachedVGPU] = []
        /// Ids of vGPUs detached, for a clear answer to a second detach.
        var detached: Set<String> = []
        /// Ids of attaches under way.
        var pending: Set<String> = []
        var scheduler: GPUScheduler?
        /// Whether we opened the GPU (the boot vGPUs' scheduler is the caller's to stop).
        var ownsScheduler = false

        /// Ids are never reused once a vGPU had one: the lowest vgpuN no attached, detached
        /// or pending vGPU holds (so a failed attach does not use one up).
        mutating func reserveID() -> String {
            var index = 0
            while true {
                let id = "vgpu\(index)"
                if !detached.contains(id), !pending.contains(id), !attached.contains(where: { $0.id == id }) {
                    pending.insert(id)
                    return id
                }
                index += 1
            }
        }
    }

    public let name: String
    public let apiSocket: String
    /// The VM's MLaaS services: loaded in this process, each attached to this VM.
    public let services: MLaaSController
    public var mlaas: any MLaaSControl { services }
    /// How long a detach waits for the guest to let go (Linux's pciehp takes ~5 s).
    public var detachTimeout: Duration = .seconds(15)
    private let machine: Machine
    private let makeScheduler: @Sendable () throws -> GPUScheduler
    private let started = Date()
    private let state = Mutex(VGPUs())

    /// `scheduler` is the one the boot vGPUs share, if any; `makeScheduler` opens the GPU the
    /// first time a vGPU is attached to a VM that booted without one. `services` defaults to a
    /// registry on the module directory beside the malvvm binary, attaching this VM.
    public init(name: String, apiSocket: String, machine: Machine, scheduler: GPUScheduler?,
                makeScheduler: @escaping @Sendable () throws -> GPUScheduler, services: MLaaSController? = nil) {
        self.name = name
        self.apiSocket = apiSocket
        self.machine = machine
        self.makeScheduler = makeScheduler
        self.services = services ?? MLaaSController(
            registry: ServiceRegistry(directory: .besideExecutable),
            vm: .init(name: name, diskPaths: machine.configuration.disks.map(\.path), disks: machine.disks))
        state.withLock { $0.scheduler = scheduler }
    }

    /// Records a vGPU attached before boot.
    public func adopt(_ device: any VGPU) {
        device.bindMLaaS(services)
        state.withLock {
            $0.attached.append(AttachedVGPU(id: device.name, device: device, hotplugged: false))
        }
    }

    /// Stops the GPU scheduler this controller opened for hot-plugged vGPUs, if any (after
    /// the VM has ended).
    public func shutDownGPU() {
        state.withLock { $0.ownsScheduler ? $0.scheduler : nil }?.stop()
    }

    public func metrics() -> VMMetrics {
        let (scheduler, devices) = state.withLock { ($0.scheduler, $0.attached.map(\.device)) }
        return VMMetrics(name: name, uptimeSeconds: Date().timeIntervalSince(started), machine: machine, scheduler: scheduler,
                         vgpus: devices)
    }

    public func info() -> VMInfo {
        let configuration = machine.configuration
        return VMInfo(name: name, pid: getpid(), state: machine.isPaused ? .paused : .running,
                      memoryBytes: configuration.memorySize, vcpus: configuration.vcpuCount,
                      cpuTemplate: configuration.cpuTemplate.name, kernel: configuration.kernelPath,
                      commandLine: configuration.commandLine, apiSocket: apiSocket,
                      uptimeSeconds: Date().timeIntervalSince(started), vgpus: state.withLock { $0.attached.count })
    }

    public func pause() throws(APIError) {
        do { try machine.pause() } catch { throw .conflict(error.description) }
    }

    public func resume() throws(APIError) {
        do { try machine.resume() } catch { throw .conflict(error.description) }
    }

    public func shutdown() throws(APIError) {
        machine.requestStop(.shutdownRequested)
    }

    public func vgpus() -> [VGPUInfo] {
        state.withLock { $0.attached }.map(describe)
    }

    public func vgpu(id: String) throws(APIError) -> VGPUInfo {
        describe(try find(id))
    }

    public func attachVGPU(_ request: AttachVGPURequest) async throws(APIError) -> VGPUInfo {
        let spec = try request.specification()
        // The next id no vGPU of this VM has had; a failed attach gives its id back.
        let id = state.withLock { vgpus in vgpus.reserveID() }
        var attached = false
        defer { if !attached { _ = state.withLock { $0.pending.remove(id) } } }
        // Connecting to a daemon and waiting for the guest block: off the server's cooperative
        // threads (two here), so a daemon that never answers cannot stall the rest of the API.
        // RemoteVGPU bounds its own wait for the daemon's hello.
        let machine = machine, vmName = name
        let outcome: Result<any VGPU, any Error> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { try spec.add(to: machine, vm: vmName, name: id, placement: .hotplugSlot, services: self.services.permitted) { try self.embeddedScheduler() } })
            }
        }
        let device: any VGPU
        do { device = try outcome.get() } catch {
            switch error {
            case let error as APIError: throw error
            case HypervisorError.hotplug(.noFreeSlot): throw .conflict("\(error)")
            case let error as HypervisorError: throw .failed(error.description)
            default: throw .unavailable("\(error)")
            }
        }
        device.bindMLaaS(services)
        let vgpu = AttachedVGPU(id: id, device: device, hotplugged: true)
        state.withLock {
            $0.pending.remove(id)
            $0.attached.append(vgpu)
        }
        attached = true
        return describe(vgpu)
    }

    /// The scheduler embedded vGPUs share: the boot vGPUs', or one opened on first use.
    private func embeddedScheduler() throws(APIError) -> GPUScheduler {
        let makeScheduler = makeScheduler
        return try state.withLock { vgpus throws(APIError) -> GPUScheduler in
            if let scheduler = vgpus.scheduler { return scheduler }
            do { vgpus.scheduler = try makeScheduler() } catch { throw .failed("cannot open the GPU: \(error)") }
            vgpus.ownsScheduler = true
            return vgpus.scheduler!
        }
    }

    public func detachVGPU(id: String) async throws(APIError) {
        let vgpu = try find(id)
        guard vgpu.hotplugged else {
            throw .conflict("\(id) was attached at boot, on bus 0 without a hot-plug slot: only hot-plugged vGPUs can be detached")
        }
        // Waiting for the guest may take seconds: not on the server's (cooperative) threads.
        let machine = machine, timeout = detachTimeout
        let outcome: Result<Void, HypervisorError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                do throws(HypervisorError) {
                    try machine.hotUnplug(named: id, timeout: timeout)
                    continuation.resume(returning: .success(()))
                } catch { continuation.resume(returning: .failure(error)) }
            }
        }
        switch outcome {
        case .success:
            vgpu.device.stop()
            state.withLock { vgpus in
                vgpus.attached.removeAll { $0.id == id }
                vgpus.detached.insert(id)
            }
        case let .failure(.hotplug(error)):
            throw .conflict(error.description)
        case let .failure(error):
            throw .failed(error.description)
        }
    }

    private func find(_ id: String) throws(APIError) -> AttachedVGPU {
        let (vgpu, detached) = state.withLock { vgpus in (vgpus.attached.first { $0.id == id }, vgpus.detached.contains(id)) }
        guard let vgpu else {
            throw .notFound(detached ? "vGPU '\(id)' was already detached from VM '\(name)'" : "no vGPU '\(id)' on VM '\(name)'")
        }
        return vgpu
    }

    private func describe(_ vgpu: AttachedVGPU) -> VGPUInfo {
        let address = vgpu.hotplugged ? machine.hotpluggedDevices.first { $0.name == vgpu.id }?.address
            : machine.pci.location(of: vgpu.id)
        return VGPUInfo(id: vgpu.id, kind: vgpu.device.kind, profile: VGPUProfileInfo(vgpu.device.profile),
                        pciAddress: address ?? "-", hotplugged: vgpu.hotplugged, statistics: vgpu.device.statistics)
    }
}
