@testable import VGPUCore
import Foundation
import Glibc
import CKVM
@testable import GPUDaemon
import GPUHost
import Hypervisor
import Testing
import VirtioGPU

/// The daemon against a VM that sends it anything: every malformed request gets a `failed`
/// reply or the connection closed, never a crash, and the daemon keeps serving the next VM.
@Suite(.serialized) final class VGPUUserProtocolTests {
    let scheduler: GPUScheduler
    let daemon: VGPUServer
    let socket: String
    let memory: GuestMemory

    init() throws {
        socket = NSTemporaryDirectory() + "gpud-test-\(getpid())-\(UInt32.random(in: 0 ... .max)).sock"
        scheduler = try GPUScheduler(backend: CPUBackend())
        // Room for one 16 MiB VM's regions and a little more: the limit a peer's sparse memfds meet.
        daemon = try VGPUServer(scheduler: scheduler, socketPath: socket, guestMemoryLimit: 32 << 20)
        memory = try GuestMemory(layout: [(start: GuestAddress(0), size: 16 << 20)])
    }

    deinit {
        daemon.stop()
        scheduler.stop()
    }

    var regions: [VGPUUser.MemoryRegion] {
        memory.regions.map { VGPUUser.MemoryRegion(start: $0.start.raw, size: $0.size, fileOffset: $0.fileOffset) }
    }

    func hello(vm: String = "vm1", profile: String = "1g", regions: [VGPUUser.MemoryRegion]? = nil,
               version: Int = VGPUUser.version) -> VGPUUser.Request {
        .hello(VGPUUser.Hello(version: version, vm: vm, vgpu: "vgpu0", profile: profile, regions: regions ?? self.regions))
    }

    /// Sends `request` with `fds` (which stay ours: we close them after) and returns the reply.
    func exchange(_ channel: MessageChannel, _ request: VGPUUser.Request, fds: [Int32] = []) throws -> VGPUUser.Reply? {
        try channel.send(request, fds: fds)
        guard let (reply, received) = try channel.receive(VGPUUser.Reply.self) else { return nil }
        received.forEach { close($0) }
        return reply
    }

    func failure(_ reply: VGPUUser.Reply?) -> String? {
        if case let .failed(message)? = reply { return message }
        return nil
    }

    func connected() throws -> MessageChannel {
        let channel = try MessageChannel.connect(to: socket)
        let reply = try exchange(channel, hello(), fds: [memory.fileDescriptor])
        guard case .device? = reply else { throw ChannelError("hello refused: \(String(describing: reply))") }
        return channel
    }

    @Test func aGoodHelloDescribesTheVirtioGPUDevice() throws {
        let channel = try MessageChannel.connect(to: socket)
        let reply = try exchange(channel, hello(), fds: [memory.fileDescriptor])
        guard case let .device(device)? = reply else { Issue.record("\(String(describing: reply))"); return }
        #expect(device.deviceType == 16 && device.queueSizes == [256, 256] && device.configuration.count == 16)
        #expect(device.configuration[12] == 1, "num_capsets")
        #expect(daemon.vgpus.map(\.deviceName) == ["vm1/vgpu0"])
    }

    @Test func badHellosAreRefusedAndTheDaemonServesOn() throws {
        let unsealed = memfd(sealed: false)
        defer { close(unsealed) }
        let cases: [(VGPUUser.Request, [Int32], String)] = [
            (hello(), [], "exactly one descriptor"),
            (hello(), [memory.fileDescriptor, memory.fileDescriptor], "exactly one descriptor"),
            (hello(version: 99), [memory.fileDescriptor], "version 99"),
            (hello(vm: "../etc"), [memory.fileDescriptor], "bad VM or vGPU name"),
            (hello(profile: "huge"), [memory.fileDescriptor], "profile 'huge' is not offered by this GPU daemon"),
            (hello(), [unsealed], "not a memfd sealed"),
            (hello(regions: [VGPUUser.MemoryRegion(start: 0, size: 32 << 20, fileOffset: 0)]), [memory.fileDescriptor], "does not fit"),
            (hello(regions: [VGPUUser.MemoryRegion(start: 0, size: 4096, fileOffset: UInt64.max - 4095)]), [memory.fileDescriptor], "does not fit"),
            (hello(regions: []), [memory.fileDescriptor], "no RAM"),
            (.activate(VGPUUser.Activation(features: 0, queues: [], interrupts: [])), [], "before hello"),
            (.reset, [], "before hello"),
            (.statistics, [], "before hello"),
        ]
        for (request, fds, expected) in cases {
            let channel = try MessageChannel.connect(to: socket)
            let message = failure(try exchange(channel, request, fds: fds))
            #expect(message?.contains(expected) == true, "\(request): \(String(describing: message))")
        }
        _ = try connected()
    }

    @Test func badActivationsAreRefused() throws {
        let channel = try connected()
        let pipeFDs = pipe()
        defer { pipeFDs.forEach { close($0) } }
        let doorbells = try (0..<2).map { _ in try EventFD() }
        let ring = VGPUUser.Queue(size: 256, descriptorTable: 0x10000, availableRing: 0x20000, usedRing: 0x30000)
        func activation(_ queues: [VGPUUser.Queue?], interrupts: [Bool] = [false, false], features: UInt64 = 1 << 32) -> VGPUUser.Request {
            .activate(VGPUUser.Activation(features: features, queues: queues, interrupts: interrupts))
        }
        let doorbellFDs = doorbells.map(\.fileDescriptor)
        let cases: [(VGPUUser.Request, [Int32], String)] = [
            (activation([ring]), doorbellFDs, "2 queues"),
            (activation([ring, nil]), [doorbellFDs[0]], "2 queues"),
            (activation([ring, nil], interrupts: [true, false]), doorbellFDs, "2 queues"),
            (activation([VGPUUser.Queue(size: 512, descriptorTable: 0, availableRing: 0, usedRing: 0), nil]), doorbellFDs, "larger than 256"),
            (activation([ring, nil], features: 1 << 60), doorbellFDs, "features beyond"),
            (activation([ring, nil]), [pipeFDs[0], pipeFDs[1]], "must be eventfds"),
            (activation([VGPUUser.Queue(size: 256, descriptorTable: 0xfff_0000, availableRing: 0, usedRing: 0), nil]), doorbellFDs,
             "outside guest memory"),
            (activation([VGPUUser.Queue(size: 3, descriptorTable: 0, availableRing: 0, usedRing: 0), nil]), doorbellFDs, "queue size 3"),
            (.writeConfiguration(offset: 14, bytes: [1, 2, 3, 4]), [], "outside the device's configuration"),
            (.writeConfiguration(offset: -4, bytes: [1]), [], "outside the device's configuration"),
            // Once trapped gpud on an overflow in its own bounds check.
            (.writeConfiguration(offset: Int.max - 2, bytes: [1, 2, 3, 4]), [], "outside the device's configuration"),
            (.writeConfiguration(offset: Int.max, bytes: [1]), [], "outside the device's configuration"),
        ]
        for (request, fds, expected) in cases {
            let message = failure(try exchange(channel, request, fds: fds))
            #expect(message?.contains(expected) == true, "\(request): \(String(describing: message))")
        }
        // The connection still serves: a good activation, then a reset.
        guard case .done? = try exchange(channel, activation([ring, nil]), fds: doorbellFDs) else {
            Issue.record("a good activation was refused")
            return
        }
        #expect(daemon.vgpus.first?.active == true)
        guard case .done? = try exchange(channel, .reset) else { Issue.record("reset refused"); return }
        #expect(daemon.vgpus.first?.active == false)
    }

    /// The profile is the daemon's: the VM names it and is told what it got.
    @Test func theDaemonGrantsItsOwnProfile() throws {
        let channel = try MessageChannel.connect(to: socket)
        let reply = try exchange(channel, hello(profile: "2g"), fds: [memory.fileDescriptor])
        guard case let .device(device)? = reply else { Issue.record("\(String(describing: reply))"); return }
        // "2g", the former name, is the operator's 2g.2gb.
        #expect(device.profile == VGPUProfile.named["2g.2gb"] && device.profile.name == "2g.2gb")
        #expect(daemon.vgpus.first?.profile == VGPUProfile.named["2g.2gb"])
    }

    /// A hugetlbfs memfd passes a seal check but raises SIGBUS on a fault when its pool is
    /// empty: it once crashed gpud at the first kick. Refused at hello.
    @Test func hugePageGuestMemoryIsRefused() throws {
        let hugeTLB: UInt32 = 0x0004  // MFD_HUGETLB
        let fd = ckvm_memfd_create("huge", CKVM_MFD_CLOEXEC | CKVM_MFD_ALLOW_SEALING | hugeTLB)
        guard fd >= 0 else {
            // No hugetlbfs in this kernel: nothing to refuse, and the ordinary case is tested above.
            print("hugetlb memfd unavailable here (errno \(-fd))")
            return
        }
        defer { close(fd) }
        _ = ftruncate(fd, 2 << 20)
        _ = ckvm_memfd_seal_size(fd)
        let channel = try MessageChannel.connect(to: socket)
        let region = VGPUUser.MemoryRegion(start: 0, size: 2 << 20, fileOffset: 0)
        let message = failure(try exchange(channel, hello(regions: [region]), fds: [fd]))
        #expect(message?.contains("not an ordinary memfd") == true, "\(String(describing: message))")
        _ = try connected()
    }

    /// Sparse memfds of tens of TiB once used up the daemon's address space (it mapped each
    /// whole): only the regions are mapped now, and they are bounded per VM.
    @Test func sparseHugeMemfdsCostOnlyTheirRegions() throws {
        var sparse: [Int32] = []
        defer { sparse.forEach { close($0) } }
        var channels: [MessageChannel] = []
        for _ in 0 ..< 6 {
            let fd = memfd(sealed: false)
            _ = ftruncate(fd, 40 << 40)  // 40 TiB, no page of it allocated
            _ = ckvm_memfd_seal_size(fd)
            sparse.append(fd)
            let channel = try MessageChannel.connect(to: socket)
            let region = VGPUUser.MemoryRegion(start: 0, size: 16 << 20, fileOffset: 20 << 40)
            let reply = try exchange(channel, hello(vm: "sparse\(sparse.count)", regions: [region]), fds: [fd])
            guard case .device? = reply else { Issue.record("sparse hello: \(String(describing: reply))"); return }
            channels.append(channel)
        }
        let tooMuch = VGPUUser.MemoryRegion(start: 0, size: 1 << 40, fileOffset: 0)
        let refusal = failure(try exchange(try MessageChannel.connect(to: socket), hello(regions: [tooMuch]), fds: [sparse[0]]))
        #expect(refusal?.contains("cover more than") == true, "\(String(describing: refusal))")
        // An ordinary VM is still served beside them.
        _ = try connected()
    }

    @Test func garbageClosesTheConnectionOnly() throws {
        let channel = try MessageChannel.connect(to: socket)
        let junk = Array("{\"no such\": 1}".utf8)
        _ = junk.withUnsafeBytes { write(channel.fileDescriptor, $0.baseAddress, $0.count) }
        #expect(try channel.receive(VGPUUser.Reply.self) == nil, "the daemon hangs up on a message it cannot read")
        _ = try connected()
    }

    @Test func aVMThatGoesAwayGivesEverythingBack() throws {
        var channel: MessageChannel? = try connected()
        #expect(daemon.vgpus.count == 1)
        channel?.shutDown()
        channel = nil
        let deadline = Date().addingTimeInterval(5)
        while !daemon.vgpus.isEmpty && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(daemon.vgpus.isEmpty)
        #expect(scheduler.clientIDs.isEmpty)
    }

    private func memfd(sealed: Bool) -> Int32 {
        let fd = ckvm_memfd_create("test", CKVM_MFD_CLOEXEC | CKVM_MFD_ALLOW_SEALING)
        _ = ftruncate(fd, 16 << 20)
        if sealed { _ = ckvm_memfd_seal_size(fd) }
        return fd
    }

    private func pipe() -> [Int32] {
        var fds: [Int32] = [0, 0]
        _ = Glibc.pipe(&fds)
        return fds
    }
}
