import GPUDaemon
import Logging
import MLaaS
import Synchronization

/// The GPU daemon's MLaaS services for the VMs it serves (GPUDaemon's `VGPUSessionServices`): a
/// VM that selected a service the daemon has loaded (`malvvm mlaas load --gpud`) is attached to
/// it while any of its vGPUs is connected. Only ML-for-OS services: they manage what the daemon
/// owns (learned-slice's model goes into its scheduler); a VM's OS-for-ML services work on its
/// disks and context buffers, which are its own process's.
///
/// A VM is known by the name its vGPUs' hellos give; a VM process can only attach itself to
/// services the operator loaded, and learned-slice changes only when its own batches run.
public final class DaemonVMServices: VGPUSessionServices, @unchecked Sendable {
    let registry: ServiceRegistry
    private let logger: Logger
    /// Per VM: its connected vGPUs and the services it is attached to. Held across attach and
    /// detach, so one VM's vGPUs connecting and leaving at once cannot attach it twice.
    private let vms = Mutex<[String: (vgpus: Int, services: [String])]>([:])

    public init(registry: ServiceRegistry, logger: Logger = Logger(label: "malvvm.gpud.mlaas")) {
        self.registry = registry
        self.logger = logger
    }

    public func vgpuConnected(vm: String, selected: [String]) -> [String] {
        let here = Set(registry.list().filter { $0.kind == .mlForOS }.map(\.name))
        return vms.withLock { vms in
            var entry = vms[vm] ?? (vgpus: 0, services: [])
            entry.vgpus += 1
            for name in selected where here.contains(name) && !entry.services.contains(name) {
                do {
                    _ = try registry.attach(service: name, vm: VMDescription(name: vm))
                    entry.services.append(name)
                } catch {
                    logger.warning("VM '\(vm)': MLaaS '\(name)' not applied: \(error)")
                }
            }
            vms[vm] = entry
            return entry.services
        }
    }

    public func vgpuDisconnected(vm: String) {
        vms.withLock { vms in
            guard var entry = vms[vm] else { return }
            entry.vgpus -= 1
            guard entry.vgpus <= 0 else {
                vms[vm] = entry
                return
            }
            vms[vm] = nil
            // A service unloaded meanwhile detached the VM already.
            for name in entry.services { try? registry.detach(service: name, vm: vm) }
        }
    }
}
