import Foundation
import Glibc
import Hypervisor
@testable import MLaaS
import Testing

/// Loading, listing, attaching, asking and unloading the real service modules of this build
/// (libpreprocess.so, libprefetch.so) and refusing the fixtures that are not services.
@Suite struct ServiceRegistryTests {
    let registry = ServiceRegistry(directory: ModuleDirectory(Modules.shared))

    @Test func loadListUnload() throws {
        let preprocess = try registry.load(Modules.preprocess)
        #expect(preprocess.name == "preprocess" && preprocess.kind == .osForML && preprocess.version == "0.2.0")
        #expect(preprocess.path == Modules.shared + "/" + Modules.preprocess)
        #expect(preprocess.description?.contains("augments it on its vGPU") == true, "the description says what it does")
        let prefetch = try registry.load(service: "prefetch")
        #expect(prefetch.name == "prefetch" && prefetch.kind == .mlForOS && prefetch.vms.isEmpty)
        #expect(registry.list().map(\.name) == ["preprocess", "prefetch"])
        try registry.unload("preprocess")
        #expect(registry.list().map(\.name) == ["prefetch"])
        registry.unloadAll()
        #expect(registry.list().isEmpty)
    }

    @Test func aSecondServiceOfTheSameNameIsRefused() throws {
        try registry.load(service: "preprocess")
        defer { registry.unloadAll() }
        let error = mlaasError { () throws(MLaaSError) in try registry.load(Modules.shared + "/" + Modules.preprocess) }
        #expect(error == .duplicateName(name: "preprocess", loadedFrom: Modules.shared + "/" + Modules.preprocess))
        #expect(registry.list().count == 1)
    }

    @Test func unknownServicesAreErrors() {
        #expect(mlaasError { () throws(MLaaSError) in try registry.unload("nosuch") } == .unknownService("nosuch"))
        #expect(mlaasError { () throws(MLaaSError) in try registry.attach(service: "nosuch", vm: VMDescription(name: "vm")) }
            == .unknownService("nosuch"))
        #expect(mlaasError { () throws(MLaaSError) in try registry.load(service: "nosuch") }
            == .noSuchModule(Modules.shared + "/libnosuch.so"))
        #expect(mlaasError { () throws(MLaaSError) in try registry.load(service: "Not A Name") } == .invalidName("Not A Name"))
    }

    @Test func aLibraryWithoutTheEntrySymbolIsNotAService() {
        let error = mlaasError { () throws(MLaaSError) in try registry.load(Modules.notAService) }
        #expect(error == .notAService(path: Modules.shared + "/" + Modules.notAService))
        #expect(error?.description.contains("does not export malv_mlaas_service_v1") == true)
        #expect(registry.list().isEmpty)
    }

    @Test func aModuleForAnotherABIVersionIsRefused() {
        let error = mlaasError { () throws(MLaaSError) in try registry.load(Modules.futureABI) }
        #expect(error == .wrongABIVersion(path: Modules.shared + "/" + Modules.futureABI, module: 3, host: 2))
        #expect(error?.description.contains("built for MLaaS ABI 3; this malvvm speaks ABI 2 (a newer module)") == true, "\(error!)")
    }

    @Test func pathsOutsideTheModuleDirectoryAreRefused() throws {
        let outside = mlaasError { () throws(MLaaSError) in try registry.load(Modules.products + "/" + Modules.preprocess) }
        guard case .notInModuleDirectory? = outside else { Issue.record("\(String(describing: outside))"); return }
        let relative = mlaasError { () throws(MLaaSError) in try registry.load("../" + Modules.preprocess) }
        guard case .notInModuleDirectory? = relative else { Issue.record("\(String(describing: relative))"); return }
        let missing = mlaasError { () throws(MLaaSError) in try registry.load("libmissing.so") }
        #expect(missing == .noSuchModule(Modules.shared + "/libmissing.so"))
    }

    @Test func aSymlinkEscapingTheDirectoryIsRefusedAndOneInsideIsFollowed() throws {
        let directory = try Modules.directory(with: [Modules.notAService])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createSymbolicLink(atPath: directory + "/libescape.so", withDestinationPath: Modules.products + "/" + Modules.preprocess)
        try FileManager.default.createSymbolicLink(atPath: directory + "/libinside.so", withDestinationPath: Modules.notAService)
        let registry = ServiceRegistry(directory: ModuleDirectory(directory))
        let escape = mlaasError { () throws(MLaaSError) in try registry.load("libescape.so") }
        #expect(escape?.description.contains("resolves (through a symlink) to '\(Modules.products)/\(Modules.preprocess)', outside") == true,
                "\(String(describing: escape))")
        // Followed to the real file inside, which then fails for what it is.
        let inside = mlaasError { () throws(MLaaSError) in try registry.load(directory + "/libinside.so") }
        #expect(inside == .notAService(path: directory + "/" + Modules.notAService))
    }

    @Test(arguments: [(0o777 as mode_t, "writable by every user"), (0o775, "writable by its group")])
    func aModuleOthersCanWriteIsRefused(mode: mode_t, reason: String) throws {
        let directory = try Modules.directory(with: [Modules.preprocess])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        chmod(directory + "/" + Modules.preprocess, mode)
        let registry = ServiceRegistry(directory: ModuleDirectory(directory))
        let error = mlaasError { () throws(MLaaSError) in try registry.load(service: "preprocess") }
        guard case let .insecureModule(path, why)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(path == directory + "/" + Modules.preprocess && why.contains(reason), "\(why)")
        #expect(error!.description.hasPrefix("refusing '"))
    }

    @Test(.enabled(if: geteuid() == 0, "only root can give a file to another user"))
    func aModuleOwnedBySomeoneElseIsRefused() throws {
        let directory = try Modules.directory(with: [Modules.preprocess])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(chown(directory + "/" + Modules.preprocess, 65534, 65534) == 0)
        let error = mlaasError { () throws(MLaaSError) in try ServiceRegistry(directory: ModuleDirectory(directory)).load(Modules.preprocess) }
        #expect(error?.description.contains("owned by uid 65534, neither the operator") == true, "\(String(describing: error))")
    }

    @Test func aDirectoryOthersCanWriteOrThatIsMissingIsRefused() throws {
        let directory = try Modules.directory(with: [Modules.preprocess])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        chmod(directory, 0o777)
        let open = mlaasError { () throws(MLaaSError) in try ServiceRegistry(directory: ModuleDirectory(directory)).load(Modules.preprocess) }
        #expect(open?.description.contains("refusing module directory '\(directory)': it is writable by every user") == true,
                "\(String(describing: open))")
        let missing = mlaasError { () throws(MLaaSError) in _ = try ModuleDirectory("/nonexistent/mlaas").validate() }
        #expect(missing == .moduleDirectory("module directory '/nonexistent/mlaas': No such file or directory"))
    }

    @Test func aRebuiltModuleIsRefusedWhileTheOldImageIsMapped() throws {
        let directory = try Modules.directory(with: [Modules.prefetch])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let registry = ServiceRegistry(directory: ModuleDirectory(directory))
        try registry.load(service: "prefetch")
        try registry.unload("prefetch")
        // "Rebuild": another file at the same path (a new inode, another size).
        try FileManager.default.removeItem(atPath: directory + "/" + Modules.prefetch)
        try FileManager.default.copyItem(atPath: Modules.products + "/" + Modules.preprocess, toPath: directory + "/" + Modules.prefetch)
        chmod(directory + "/" + Modules.prefetch, 0o755)
        let error = mlaasError { () throws(MLaaSError) in try registry.load(Modules.prefetch) }
        #expect(error == .staleImage(path: directory + "/" + Modules.prefetch))
    }
}

/// Attaching VMs, asking services, detaching and unloading under them.
@Suite struct ServiceAttachmentTests {
    let registry = ServiceRegistry(directory: ModuleDirectory(Modules.shared))

    /// 10 records of 4x4x1 pixels + a label: 170 bytes.
    static let pipeline = "disk=0,records=10,image=4x4x1,resize=8x8,crop=6x6,padding=1,flip=on,mean=0.5,std=0.25,seed=7,batch=5"

    func vm(_ name: String) throws -> (VMDescription, String) {
        let disk = try Modules.dataset(records: 10, bytesPerImage: 16)
        return (try VMDescription.grantingWholeDisks(name: name, paths: [disk]), disk)
    }

    @Test func aVMIsAttachedConfiguredAndDetached() throws {
        try registry.load(service: "preprocess")
        defer { registry.unloadAll() }
        let (description, disk) = try vm("train1")
        defer { unlink(disk) }
        let binding = try registry.attach(service: "preprocess", vm: description)
        #expect(registry.list().first?.vms == ["train1"])
        #expect(mlaasError { () throws(MLaaSError) in try registry.attach(service: "preprocess", vm: description) }
            == .alreadyAttached(service: "preprocess", vm: "train1"))
        try binding.configure(Self.pipeline)
        try binding.configure("disk=0,records=10,image=4x4x1,batch=10")
        try registry.detach(service: "preprocess", vm: "train1")
        #expect(registry.list().first?.vms == [])
        #expect(mlaasError { () throws(MLaaSError) in try binding.configure(Self.pipeline) }
            == .notAttached(service: "preprocess", vm: "train1"))
        #expect(mlaasError { () throws(MLaaSError) in try registry.detach(service: "preprocess", vm: "train1") }
            == .notAttached(service: "preprocess", vm: "train1"))
        // Again, after a detach.
        try registry.attach(service: "preprocess", vm: description).configure(Self.pipeline)
    }

    @Test(arguments: [
        ("disk=0,records=10,image=4x4x1,batch=11", "batch 11 is larger than the 10 records"),
        ("disk=0,records=11,image=4x4x1,batch=5", "11 records of 17 bytes from offset 0 end beyond disk 0 (170 bytes)"),
        ("disk=0,records=1,offset=154,image=4x4x1,batch=1", "end beyond disk 0"),
        ("disk=1,records=10,image=4x4x1,batch=5", "disk 1 is not granted to this service (the VM has 1 disk)"),
        ("disk=0,records=10,image=4x4x1,batch=5,colour=red", "unknown key 'colour'"),
        ("disk=0,records=10,image=4x4,batch=5", "image must be HxWxC"),
        ("disk=0,records=10,image=4x4x1,batch=5,crop=9x9,padding=0", "crop 9x9 is larger than the padded 4x4 image"),
        ("disk=0,records=10,image=4x4x1,batch=5,padding=2", "padding needs a crop"),
        ("disk=0,records=10,image=4x4x3,batch=5,mean=1/2", "mean needs 1 or 3 values, not 2"),
        ("disk=0,records=10,image=4x4x1,batch=5,std=0", "std must be 1-4 finite numbers"),
        ("disk=0,records=10,image=4x4x1", "'batch' is missing"),
        ("disk=0,disk=0,records=10,image=4x4x1,batch=5", "'disk' is given twice"),
        ("", "is not key=value"),
    ])
    func aMalformedPipelineIsRefusedWithItsReason(pipeline: String, reason: String) throws {
        let registry = ServiceRegistry(directory: ModuleDirectory(Modules.shared))
        try registry.load(service: "preprocess")
        defer { registry.unloadAll() }
        let (description, disk) = try vm("bad")
        defer { unlink(disk) }
        let binding = try registry.attach(service: "preprocess", vm: description)
        let error = mlaasError { () throws(MLaaSError) in try binding.configure(pipeline) }
        guard case let .refused(service, message)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(service == "preprocess" && message.hasPrefix("bad pipeline: ") && message.contains(reason), "\(message)")
        // The VM stays attached and usable.
        try binding.configure(Self.pipeline)
    }

    @Test func prefetchValidatesItsParametersToo() throws {
        try registry.load(service: "prefetch")
        defer { registry.unloadAll() }
        // A disk of whole sectors with its virtio-blk behind the grant: prefetch watches it
        // (PrefetchServiceTests).
        let disk = try Modules.dataset(records: 128, bytesPerImage: 127)
        defer { unlink(disk) }
        let description = try VMDescription.grantingWholeDisks(name: "reader", paths: [disk],
                                                               devices: [try VirtioBlock(path: disk, readOnly: true)])
        let binding = try registry.attach(service: "prefetch", vm: description)
        try binding.configure("order=2,window=16")
        try binding.configure("")
        let error = mlaasError { () throws(MLaaSError) in try binding.configure("order=9") }
        #expect(error == .refused(service: "prefetch", reason: "order must be 1...4, not 9"))
    }

    @Test func unloadingDetachesEveryVMAndTheirNextRequestIsAnError() throws {
        try registry.load(service: "preprocess")
        let (first, disk1) = try vm("a")
        let (second, disk2) = try vm("b")
        defer { unlink(disk1); unlink(disk2) }
        let bindings = [try registry.attach(service: "preprocess", vm: first), try registry.attach(service: "preprocess", vm: second)]
        #expect(registry.list().first?.vms == ["a", "b"])
        try registry.unload("preprocess")
        #expect(registry.list().isEmpty)
        for binding in bindings {
            #expect(mlaasError { () throws(MLaaSError) in try binding.configure(Self.pipeline) }
                == .serviceUnloaded(service: "preprocess", vm: binding.vm))
        }
        // Loaded again: a fresh service the VMs can attach to.
        try registry.load(service: "preprocess")
        defer { registry.unloadAll() }
        #expect(registry.list().first?.vms == [])
        try registry.attach(service: "preprocess", vm: first).configure(Self.pipeline)
    }

    /// Requests from several threads while the service is unloaded under them: each one either
    /// completes or gets `.serviceUnloaded`; nothing crashes, nothing hangs.
    @Test func unloadingUnderConcurrentRequestsIsClean() throws {
        try registry.load(service: "preprocess")
        defer { registry.unloadAll() }
        var disks: [String] = []
        defer { disks.forEach { unlink($0) } }
        var bindings: [ServiceBinding] = []
        for index in 0 ..< 4 {
            let (description, disk) = try vm("c\(index)")
            disks.append(disk)
            bindings.append(try registry.attach(service: "preprocess", vm: description))
        }
        let outcomes = Outcomes()
        let group = DispatchGroup()
        for binding in bindings {
            DispatchQueue.global().async(group: group) {
                for _ in 0 ..< 200 {
                    do throws(MLaaSError) { try binding.configure(Self.pipeline); outcomes.add(ok: true) } catch {
                        if error == .serviceUnloaded(service: "preprocess", vm: binding.vm) { outcomes.add(ok: false) } else {
                            outcomes.add(unexpected: error)
                        }
                    }
                }
            }
        }
        Thread.sleep(forTimeInterval: 0.01)
        try registry.unload("preprocess")
        #expect(group.wait(timeout: .now() + 30) == .success)
        #expect(outcomes.unexpected.isEmpty, "\(outcomes.unexpected)")
        #expect(outcomes.succeeded + outcomes.refused == 800)
    }

    final class Outcomes: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var succeeded = 0, refused = 0
        private(set) var unexpected: [MLaaSError] = []
        func add(ok: Bool) { lock.withLock { if ok { succeeded += 1 } else { refused += 1 } } }
        func add(unexpected error: MLaaSError) { lock.withLock { unexpected.append(error) } }
    }
}
