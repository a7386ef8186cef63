import CMLaaS
import Foundation
import Glibc
import Hypervisor
@testable import MLaaS
import Testing

/// The real libprefetch.so against real virtio-blk devices (no guest): selecting it hooks the
/// VM's disk, parameters are checked, and unloading it in use leaves the disk unhooked.
/// (Its predictions are measured end to end in MalvvmCLITests.PrefetchGuestTests.)
@Suite(.serialized) struct PrefetchServiceTests {
    let registry = ServiceRegistry(directory: ModuleDirectory(Modules.shared))

    func attached(disks: Int = 1) throws -> (ServiceBinding, [VirtioBlock], [String]) {
        try registry.load(service: "prefetch")
        let paths = try (0 ..< disks).map { _ in try Modules.dataset(records: 128, bytesPerImage: 127) }
        let devices = try paths.map { try VirtioBlock(path: $0, readOnly: true) }
        let binding = try registry.attach(service: "prefetch",
                                          vm: try VMDescription.grantingWholeDisks(name: "pf", paths: paths, devices: devices))
        return (binding, devices, paths)
    }

    /// Whether some hook holds the disk (a new one is refused).
    func isHooked(_ device: VirtioBlock) -> Bool {
        guard let probe = try? device.watchReads(cacheBytes: 1 << 20, observer: { _, _ in }) else { return true }
        device.unwatchReads(probe)
        return false
    }

    @Test func selectingItHooksTheFirstDiskAndParametersMoveIt() throws {
        let (binding, devices, paths) = try attached(disks: 2)
        defer { registry.unloadAll(); paths.forEach { unlink($0) } }
        #expect(isHooked(devices[0]) && !isHooked(devices[1]))
        try binding.configure("disk=1,policy=sequential,window=4")
        #expect(!isHooked(devices[0]) && isHooked(devices[1]))
        try binding.disable()
        #expect(!isHooked(devices[0]) && !isHooked(devices[1]))
        try binding.configure("")
        #expect(isHooked(devices[0]))
    }

    @Test(arguments: [
        ("order=0", "order must be 1...4, not 0"),
        ("order=5", "order must be 1...4, not 5"),
        ("window=1025", "window must be 1...1024, not 1025"),
        ("block=1000", "block must be a multiple of 512 from 512 to 1048576, not 1000"),
        ("table=0", "table must be 1...1048576, not 0"),
        ("policy=random", "policy must be markov or sequential, not 'random'"),
        ("disk=1", "disk 1 is not granted to this service (the VM has 1 disk)"),
        ("order=x", "order must be an integer, not 'x'"),
        ("order=2,order=3", "order is given twice"),
        ("order", "'order' is not key=value"),
        ("lookahead=3", "unknown key 'lookahead' (known: disk, policy, order, window, block, table)"),
    ])
    func badParametersAreOneLineAndChangeNothing(_ parameters: String, _ message: String) throws {
        let (binding, devices, paths) = try attached()
        defer { registry.unloadAll(); paths.forEach { unlink($0) } }
        guard case let .refused(service, reason)? = mlaasError({ () throws(MLaaSError) in try binding.configure(parameters) }) else { return }
        #expect(service == "prefetch" && reason == message)
        #expect(isHooked(devices[0]))
    }

    @Test func unloadingInUseUnhooksTheDisk() throws {
        let (_, devices, paths) = try attached()
        defer { paths.forEach { unlink($0) } }
        #expect(isHooked(devices[0]))
        try registry.unload("prefetch")
        #expect(!isHooked(devices[0]))
        #expect(registry.list().isEmpty)
    }

    @Test func aVMWithoutDevicesAttachesAndCannotBeConfigured() throws {
        try registry.load(service: "prefetch")
        let path = try Modules.dataset(records: 8, bytesPerImage: 63)
        defer { registry.unloadAll(); unlink(path) }
        let binding = try registry.attach(service: "prefetch", vm: try VMDescription.grantingWholeDisks(name: "nodev", paths: [path]))
        guard case let .refused(_, reason)? = mlaasError({ () throws(MLaaSError) in try binding.configure("order=1") }) else { return }
        #expect(reason == "cannot watch disk 0: \(String(cString: malv_mlaas_status_string(MALV_MLAAS_E_UNSUPPORTED)))")
    }
}
