import Foundation
import GPUHost
import Hypervisor
import Synchronization
import VirtioGPU

/// The control API's view of one `malvvm run`: the machine, its vGPUs and the scheduler they
/// share. Thread-safe: API requests arrive on the server's threads while the vCPU runs.
public final class MachineController: VMControl, @unchecked Sendable {
    private struct AttachedVGPU {
        let id: String
        let device: VirtioGPU
        let hotplugged: Bool
    }

    public let name: String
    public let apiSocket: String
    private let machine: Machine
    private let started = Date()
    private let attached = Mutex<[AttachedVGPU]>([])

    public init(name: String, apiSocket: String, machine: Machine) {
        self.name = name
        self.apiSocket = apiSocket
        self.machine = machine
    }

    /// Records a vGPU attached before boot.
    public func adopt(_ device: VirtioGPU) {
        attached.withLock { $0.append(AttachedVGPU(id: device.name, device: device, hotplugged: false)) }
    }

    public func info() -> VMInfo {
        let configuration = machine.configuration
        return VMInfo(name: name, pid: getpid(), state: machine.isPaused ? .paused : .running,
                      memoryBytes: configuration.memorySize, vcpus: 1, kernel: configuration.kernelPath,
                      commandLine: configuration.commandLine, apiSocket: apiSocket,
                      uptimeSeconds: Date().timeIntervalSince(started), vgpus: attached.withLock { $0.count })
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
        attached.withLock { $0 }.map(describe)
    }

    public func vgpu(id: String) throws(APIError) -> VGPUInfo {
        guard let vgpu = attached.withLock({ $0.first { $0.id == id } }) else { throw .notFound("no vGPU '\(id)' on VM '\(name)'") }
        return describe(vgpu)
    }

    public func attachVGPU(_ request: AttachVGPURequest) async throws(APIError) -> VGPUInfo {
        do { _ = try VGPUProfile(parsing: request.profile) } catch { throw .badRequest("\(error)") }
        guard request.kind == nil || request.kind == "para" else {
            throw .badRequest("unknown vGPU kind '\(request.kind!)' (known: para)")
        }
        throw .unavailable("attaching a vGPU to a running VM needs PCIe hot-plug, which this build does not have yet")
    }

    public func detachVGPU(id: String) async throws(APIError) {
        guard attached.withLock({ $0.contains { $0.id == id } }) else { throw .notFound("no vGPU '\(id)' on VM '\(name)'") }
        throw .unavailable("detaching a vGPU from a running VM needs PCIe hot-plug, which this build does not have yet")
    }

    private func describe(_ vgpu: AttachedVGPU) -> VGPUInfo {
        VGPUInfo(id: vgpu.id, kind: "para", profile: VGPUProfileInfo(vgpu.device.profile),
                 pciAddress: machine.pci.location(of: vgpu.id) ?? "-", hotplugged: vgpu.hotplugged,
                 statistics: vgpu.device.statistics)
    }
}
