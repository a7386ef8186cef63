@testable import VGPUCore
import VirtioTestSupport
import GPUHost
@testable import Hypervisor
import Testing
@testable import VirtioGPU

/// Each control command's happy path and its direct refusals, on hand-built chains.
@Suite struct VirtioGPUCommandTests {
    @Test func offersBlobAndContextInitButNotVirgl() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let features = driver.device.offeredFeatures
        #expect(features & VirtioGPUProtocol.Feature.virgl == 0)
        #expect(features & VirtioGPUProtocol.Feature.resourceBlob != 0)
        #expect(features & VirtioGPUProtocol.Feature.contextInit != 0)
        #expect(features & VirtioFeature.version1 != 0)
        #expect(driver.device.deviceType == 16)
        #expect(driver.device.queueMaximumSizes.count == 2)

        var config = [UInt8](repeating: 0xff, count: 16)
        config.withUnsafeMutableBytes { driver.device.readConfiguration(offset: 0, into: $0) }
        #expect(config == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])  // no scanouts, one capset
        var word = [UInt8](repeating: 0, count: 4)
        word.withUnsafeMutableBytes { driver.device.readConfiguration(offset: 12, into: $0) }
        #expect(word == [1, 0, 0, 0])
    }

    @Test func reportsNoEnabledScanout() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let (header, bytes) = try driver.response(try driver.send(GPUDriver.simple(.getDisplayInfo), responseRoom: 512))
        #expect(header.type == Response.okDisplayInfo.rawValue)
        #expect(bytes.count == 24 + 16 * 24)
        #expect(bytes[24...].allSatisfy { $0 == 0 })
    }

    @Test func interruptsOnceForABatchAnsweredAtOnce() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let heads = try (0 ..< 3).map { _ in
            try driver.send(GPUDriver.simple(.getCapsetInfo, [0, 0]), process: false)
        }
        try driver.device.process(queue: 0, context: driver.context)
        for head in heads { #expect(try driver.response(head).header.type == Response.okCapsetInfo.rawValue) }
        #expect(driver.interrupts.value.load(ordering: .relaxed) == 1)
        // A driver that set NO_INTERRUPT gets none.
        try driver.ring.setNoInterrupt(true)
        _ = try driver.response(try driver.send(GPUDriver.simple(.getCapsetInfo, [0, 0])))
        #expect(driver.interrupts.value.load(ordering: .relaxed) == 1)
    }

    @Test func advertisesTheComputeCapset() throws {
        let driver = try GPUDriver(profile: VGPUProfile(memoryBytes: 256 << 20, maxContexts: 4))
        defer { driver.shutdown() }
        let (info, infoBytes) = try driver.response(try driver.send(GPUDriver.simple(.getCapsetInfo, [0, 0])))
        #expect(info.type == Response.okCapsetInfo.rawValue)
        var r = WireReader(infoBytes, at: 24)
        #expect(try r.u32() == VirtioGPU.computeCapsetID)
        #expect(try r.u32() == 2)  // max version: 2 adds the MLaaS requests
        let size = try r.u32()
        #expect(size == 40)

        let (capset, capsetBytes) = try driver.response(try driver.send(
            GPUDriver.simple(.getCapset, [VirtioGPU.computeCapsetID, 1])))
        #expect(capset.type == Response.okCapset.rawValue)
        #expect(capsetBytes.count == 24 + Int(size))
        var c = WireReader(capsetBytes, at: 24)
        #expect(try c.u32() == 1)  // capset version
        #expect(try c.u32() == UInt32(ComputeStream.version))
        #expect(try c.u32() == 0xffffe)  // opcodes 1...19
        #expect(try c.u32() == UInt32(ComputeStream.maxCommands))
        #expect(try c.u32() == UInt32(ComputeStream.maxStreamBytes))
        #expect(try c.u32() == 4)
        #expect(try c.u64() == 256 << 20)
        #expect(try c.u32() == 0)  // CPU backend
        #expect(try c.u32() == 0)  // reserved in version 1

        #expect(try driver.call(GPUDriver.simple(.getCapsetInfo, [1, 0])) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.simple(.getCapset, [4, 1])) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.simple(.getCapset, [VirtioGPU.computeCapsetID, 3]))
            == Response.errorInvalidParameter.rawValue)
    }

    @Test func createsAndDestroysComputeContextsOnly() throws {
        let driver = try GPUDriver(profile: VGPUProfile(memoryBytes: 1 << 20, maxContexts: 2))
        defer { driver.shutdown() }
        #expect(try driver.call(GPUDriver.createContext(1)) == Response.okNoData.rawValue)
        #expect(driver.scheduler.clientIDs.count == 1)
        #expect(driver.scheduler.metrics().clients.map(\.owner) == [ClientOwner(vgpu: "vgpu-test", context: 1)])
        #expect(try driver.call(GPUDriver.createContext(1)) == Response.errorInvalidContextID.rawValue)
        #expect(try driver.call(GPUDriver.createContext(0)) == Response.errorInvalidContextID.rawValue)
        // Venus, virgl (0) and reserved bits above the capset are refused.
        #expect(try driver.call(GPUDriver.createContext(2, capset: 4)) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.createContext(2, capset: 0)) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.createContext(2, capset: 0x100 | VirtioGPU.computeCapsetID))
            == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.createContext(2)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createContext(3)) == Response.errorOutOfMemory.rawValue)  // profile: 2
        #expect(try driver.call(GPUDriver.simple(.contextDestroy, context: 1)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.simple(.contextDestroy, context: 1)) == Response.errorInvalidContextID.rawValue)
        #expect(driver.scheduler.clientIDs.count == 1)
        #expect(try driver.call(GPUDriver.createContext(3)) == Response.okNoData.rawValue)
    }

    @Test func createsBlobsAttachesDetachesAndUnrefs() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let page = GPUDriver.dataBase
        #expect(try driver.call(GPUDriver.createContext(1)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(10, context: 1, memory: .guest, size: 4096, entries: [(page, 4096)]))
            == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(11, context: 1, memory: .host3D, size: 8192)) == Response.okNoData.rawValue)
        // A GUEST blob without entries gets them by ATTACH_BACKING; a second backing is refused.
        #expect(try driver.call(GPUDriver.createBlob(12, context: 0, memory: .guest, size: 4096))
            == Response.errorInvalidParameter.rawValue)  // entries must cover it at create...
        #expect(try driver.call(GPUDriver.createBlob(12, context: 1, memory: .host3D, size: 4096)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.attachBacking(12, entries: [(page + 4096, 4096)])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.attachBacking(12, entries: [(page + 4096, 4096)])) == Response.errorUnspecified.rawValue)
        #expect(try driver.call(GPUDriver.simple(.resourceDetachBacking, [12, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.simple(.resourceDetachBacking, [12, 0])) == Response.errorUnspecified.rawValue)

        #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: 1, [10, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: 1, [99, 0]))
            == Response.errorInvalidResourceID.rawValue)
        #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: 7, [10, 0]))
            == Response.errorInvalidContextID.rawValue)
        #expect(try driver.call(GPUDriver.simple(.contextDetachResource, context: 1, [10, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.simple(.contextDetachResource, context: 1, [10, 0]))
            == Response.errorInvalidResourceID.rawValue)

        // Ids: 0 and taken ones are refused; HOST3D needs a context, GUEST may go without.
        #expect(try driver.call(GPUDriver.createBlob(0, context: 1, memory: .host3D, size: 64)) == Response.errorInvalidResourceID.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(11, context: 1, memory: .host3D, size: 64)) == Response.errorInvalidResourceID.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(13, context: 0, memory: .host3D, size: 64)) == Response.errorInvalidContextID.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(13, context: 5, memory: .host3D, size: 64)) == Response.errorInvalidContextID.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(13, context: 0, memory: .guest, size: 64, entries: [(page, 64)]))
            == Response.okNoData.rawValue)
        // Kinds and flags not offered: HOST3D_GUEST, MAPPABLE, a blob id, size 0.
        #expect(try driver.call(GPUDriver.createBlob(14, context: 1, memory: .host3DGuest, size: 64)) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(14, context: 1, memory: .host3D, size: 64,
                                                     flags: VirtioGPUProtocol.BlobFlag.mappable)) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(14, context: 1, memory: .host3D, size: 64, blobID: 5)) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(14, context: 1, memory: .host3D, size: 0)) == Response.errorInvalidParameter.rawValue)

        #expect(driver.scheduler.memoryInUse(by: driver.scheduler.clientIDs[0]) == 4096 + 8192 + 4096)
        for id: UInt32 in [10, 11, 12, 13] {
            #expect(try driver.call(GPUDriver.simple(.resourceUnref, [id, 0])) == Response.okNoData.rawValue)
        }
        #expect(try driver.call(GPUDriver.simple(.resourceUnref, [10, 0])) == Response.errorInvalidResourceID.rawValue)
        #expect(driver.scheduler.memoryInUse(by: driver.scheduler.clientIDs[0]) == 0)
    }

    @Test func enforcesTheProfileMemoryAcrossContexts() throws {
        let driver = try GPUDriver(profile: VGPUProfile(memoryBytes: 64 << 10))
        defer { driver.shutdown() }
        #expect(try driver.call(GPUDriver.createContext(1)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createContext(2)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(1, context: 1, memory: .host3D, size: 128 << 10))
            == Response.errorInvalidParameter.rawValue)  // larger than the whole profile
        #expect(try driver.call(GPUDriver.createBlob(1, context: 1, memory: .host3D, size: 40 << 10)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(2, context: 2, memory: .host3D, size: 40 << 10)) == Response.errorOutOfMemory.rawValue)
        #expect(try driver.call(GPUDriver.simple(.resourceUnref, [1, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(2, context: 2, memory: .host3D, size: 40 << 10)) == Response.okNoData.rawValue)
    }

    @Test func transfersBetweenStagingPagesAndAHostBlob() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let staging = GPUDriver.dataBase
        #expect(try driver.call(GPUDriver.createContext(1)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(5, context: 1, memory: .host3D, size: 64)) == Response.okNoData.rawValue)
        // Two scattered staging entries.
        #expect(try driver.call(GPUDriver.attachBacking(5, entries: [(staging, 32), (staging + 0x1000, 32)])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: 1, [5, 0])) == Response.okNoData.rawValue)
        try driver.write(floats: (0 ..< 8).map(Float.init), at: staging)
        try driver.write(floats: (8 ..< 16).map(Float.init), at: staging + 0x1000)
        #expect(try driver.call(GPUDriver.transfer(true, context: 1, resource: 5, x: 0, width: 64, offset: 0, fence: 1))
            == Response.okNoData.rawValue)
        // x = 2.5 on the GPU, then the middle 32 bytes come back to the start of the staging pages.
        var stream = StreamBuilder()
        stream.scale(count: 16, alpha: 2.5, x: StreamBuilder.ref(5, offset: 0, length: 64))
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: stream.bytes, fence: 2)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.transfer(false, context: 1, resource: 5, x: 16, width: 32, offset: 0, fence: 3))
            == Response.okNoData.rawValue)
        #expect(try driver.readFloats(at: staging, count: 8) == (4 ..< 12).map { Float($0) * 2.5 })

        // Refusals: no such context, another resource, past the blob, past the backing, 2-D boxes.
        let bad: [([UInt8], Response)] = [
            (GPUDriver.transfer(true, context: 9, resource: 5, x: 0, width: 4, offset: 0), .errorInvalidContextID),
            (GPUDriver.transfer(true, context: 1, resource: 6, x: 0, width: 4, offset: 0), .errorInvalidResourceID),
            (GPUDriver.transfer(true, context: 1, resource: 5, x: 60, width: 8, offset: 0), .errorInvalidParameter),
            (GPUDriver.transfer(true, context: 1, resource: 5, x: 0, width: 8, offset: 60), .errorInvalidParameter),
            (GPUDriver.transfer(true, context: 1, resource: 5, x: 0, width: 4, offset: .max - 1), .errorInvalidParameter),
            (GPUDriver.transfer(true, context: 1, resource: 5, x: 0, width: 0, offset: 0), .errorInvalidParameter),
            (GPUDriver.transfer(true, context: 1, resource: 5, x: 0, width: 4, offset: 0, box: [0, 1, 0, 4, 1, 1]), .errorInvalidParameter),
            (GPUDriver.transfer(true, context: 1, resource: 5, x: 0, width: 4, offset: 0, level: 1), .errorInvalidParameter),
        ]
        for (request, expected) in bad { #expect(try driver.call(request) == expected.rawValue) }
    }

    @Test func refusesMalformedRequestsWithoutRunningThem() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        // Shorter than a header: a bare UNSPEC.
        #expect(try driver.call([1, 2, 3]) == Response.errorUnspecified.rawValue)
        // Unknown command type, 2-D and virgl commands, cursor commands on the control queue.
        #expect(try driver.call(GPUDriver.header(.getDisplayInfo).enumerated().map { $0.offset == 0 ? 0x77 : $0.element })
            == Response.errorUnspecified.rawValue)
        for command: Command in [.resourceCreate2D, .setScanout, .resourceCreate3D, .resourceMapBlob, .updateCursor] {
            #expect(try driver.call(GPUDriver.simple(command, [1, 2, 3, 4, 5, 6, 7, 8])) == Response.errorUnspecified.rawValue)
        }
        // Truncated structures.
        #expect(try driver.call(GPUDriver.simple(.getCapsetInfo)) == Response.errorUnspecified.rawValue)
        #expect(try driver.call(Array(GPUDriver.createContext(1).prefix(40))) == Response.errorUnspecified.rawValue)
        #expect(try driver.call(Array(GPUDriver.createBlob(1, context: 0, memory: .guest, size: 64,
                                                           entries: [(GPUDriver.dataBase, 64)]).dropLast(4)))
            == Response.errorUnspecified.rawValue)
        // Unknown header flags, a ring index past 64.
        var flagged = GPUDriver.simple(.getDisplayInfo)
        flagged[4] = 0x80
        #expect(try driver.call(flagged) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.header(.getDisplayInfo, fence: 1, ring: 64)) == Response.errorInvalidParameter.rawValue)
        // A response buffer too small for display info gets UNSPEC in the header that fits.
        let head = try driver.send(GPUDriver.simple(.getDisplayInfo), responseRoom: 24)
        #expect(try driver.response(head).header.type == Response.errorUnspecified.rawValue)
        // No room even for a header: returned empty.
        let empty = try driver.send(GPUDriver.simple(.getDisplayInfo), responseRoom: 8)
        #expect(try driver.response(empty).bytes.isEmpty)
    }

    @Test func refusesBackingOutsideGuestMemory() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let end = GPUDriver.memorySize
        let outside: [(UInt64, UInt32)] = [
            (end, 4096),  // just past RAM
            (end - 2048, 4096),  // straddles the end
            (UInt64.max - 4095, 8192),  // wraps past 2^64
            (GPUDriver.dataBase, 0),  // empty entry
        ]
        #expect(try driver.call(GPUDriver.createContext(1)) == Response.okNoData.rawValue)
        for entry in outside {
            #expect(try driver.call(GPUDriver.createBlob(1, context: 1, memory: .guest, size: 4096, entries: [entry]))
                == Response.errorInvalidParameter.rawValue)
            #expect(try driver.call(GPUDriver.createBlob(1, context: 1, memory: .guest, size: 4096,
                                                         entries: [(GPUDriver.dataBase, 2048), entry]))
                == Response.errorInvalidParameter.rawValue)
        }
        #expect(try driver.call(GPUDriver.createBlob(2, context: 1, memory: .host3D, size: 4096)) == Response.okNoData.rawValue)
        for entry in outside {
            #expect(try driver.call(GPUDriver.attachBacking(2, entries: [entry])) == Response.errorInvalidParameter.rawValue)
        }
        // Entries that do not cover a GUEST blob, too many entries, none at all.
        #expect(try driver.call(GPUDriver.createBlob(1, context: 1, memory: .guest, size: 8192,
                                                     entries: [(GPUDriver.dataBase, 4096)])) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.simple(.resourceAttachBacking, [2, UInt32(VirtioGPU.maxBackingEntries + 1)]))
            == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.simple(.resourceAttachBacking, [2, 0])) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.simple(.resourceAttachBacking, [2, 3])) == Response.errorUnspecified.rawValue)
        // Nothing was created by any of it.
        #expect(driver.scheduler.memoryInUse(by: driver.scheduler.clientIDs[0]) == 4096)
    }

    @Test func refusesBlobsContextsAndRingsTheDriverDidNotNegotiate() throws {
        let driver = try GPUDriver(features: VirtioFeature.version1)
        defer { driver.shutdown() }
        #expect(try driver.call(GPUDriver.createContext(1)) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(1, context: 0, memory: .guest, size: 64, entries: [(GPUDriver.dataBase, 64)]))
            == Response.errorUnspecified.rawValue)
        #expect(try driver.call(GPUDriver.header(.getDisplayInfo, fence: 1, ring: 0)) == Response.errorInvalidParameter.rawValue)
        // A plain fence works without CONTEXT_INIT.
        let (header, _) = try driver.response(try driver.send(GPUDriver.simple(.getDisplayInfo, fence: 5), responseRoom: 512))
        #expect(header.type == Response.okDisplayInfo.rawValue && header.fenceID == 5 && header.flags == 1)
    }

    @Test func returnsCursorCommandsWithoutAResponse() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let memory = driver.memory
        // UPDATE_CURSOR (56 bytes) at 0x8000, one descriptor; chain head 0.
        try memory.write(GPUDriver.simple(.updateCursor, [0, 10, 20, 0, 1, 0, 0, 0]), at: GuestAddress(0x8000))
        try memory.write(UInt64(0x8000), at: GuestAddress(GPUDriver.cursorDescriptors))
        try memory.write(UInt32(56), at: GuestAddress(GPUDriver.cursorDescriptors + 8))
        try memory.write(UInt16(0), at: GuestAddress(GPUDriver.cursorDescriptors + 12))
        try memory.write(UInt16(0), at: GuestAddress(GPUDriver.cursorAvailable + 4))
        try memory.write(UInt16(1), at: GuestAddress(GPUDriver.cursorAvailable + 2))
        try driver.device.process(queue: 1, context: driver.context)
        #expect(try memory.read(UInt16.self, at: GuestAddress(GPUDriver.cursorUsed + 2)) == 1)
        #expect(try memory.read(UInt32.self, at: GuestAddress(GPUDriver.cursorUsed + 8)) == 0)  // used length
        // A queue index the device does not have is ignored.
        try driver.device.process(queue: 7, context: driver.context)
    }

    /// Random requests of every type (seeded): each gets a response, none crashes the device,
    /// and afterwards a fresh context still computes.
    @Test func answersRandomRequests() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        #expect(try driver.call(GPUDriver.createContext(1)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(1, context: 1, memory: .host3D, size: 256)) == Response.okNoData.rawValue)
        let types: [UInt32] = Array(0x100 ... 0x10d) + Array(0x200 ... 0x209) + [0x300, 0x301, 0, 0xffff_ffff]
        var generator = SplitMix(seed: 0x7667_7075)
        for _ in 0 ..< 600 {
            var w = WireWriter()
            w.u32(types[Int(generator.next() % UInt64(types.count))])
            w.u32(UInt32(generator.next() % 4))  // fence, ring index
            w.u64(generator.next() % 8)
            w.u32(UInt32(generator.next() % 4))  // contexts 0-3
            w.u8(UInt8(generator.next() % 70))
            w.zeros(3)
            // Small ids and sizes half the time, so bodies reach past the first checks.
            for _ in 0 ..< Int(generator.next() % 24) {
                w.u32(generator.next() % 2 == 0 ? UInt32(generator.next() % 4) : UInt32(truncatingIfNeeded: generator.next()))
            }
            let head = try driver.send(w.bytes)
            let (header, _) = try driver.response(head)
            #expect(header.type >= 0x1100 && header.type <= 0x1205)
        }
        driver.device.reset()
        #expect(driver.scheduler.clientIDs.isEmpty)
    }

    @Test func resetDestroysContextsAndFreesTheirMemory() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        #expect(try driver.call(GPUDriver.createContext(1)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createContext(2)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(1, context: 1, memory: .host3D, size: 4096)) == Response.okNoData.rawValue)
        #expect(driver.scheduler.clientIDs.count == 2)
        driver.device.reset()
        #expect(driver.scheduler.clientIDs.isEmpty)
    }
}

@Suite struct VGPUProfileTests {
    @Test func parsesNamedAndCustomProfiles() throws {
        #expect(try VGPUProfile(parsing: "4g.4gb") == VGPUProfile.named["4g.4gb"])
        #expect(try VGPUProfile(parsing: "profile=2g.2gb") == VGPUProfile.named["2g.2gb"])
        let custom = try VGPUProfile(parsing: "profile=4g.4gb,weight=2")
        #expect(custom.memoryBytes == 4 << 30 && custom.weight == 2 && custom.name == "custom")
        let small = try VGPUProfile(parsing: "memory=512m, contexts=4")
        #expect(small.memoryBytes == 512 << 20 && small.maxContexts == 4 && small.weight == 1)
        #expect(try VGPUProfile(parsing: "memory=65536").memoryBytes == 65536)
    }

    @Test(arguments: ["profile=3g", "weight=0", "weight=-1", "weight=nan", "memory=0", "memory=12q",
                      "memory=99999999999999g", "contexts=0", "colour=blue", "weight=1,weight=2"])
    func refusesBadProfiles(_ text: String) {
        #expect(throws: VGPUProfile.ParseError.self) { try VGPUProfile(parsing: text) }
    }
}
