@testable import GPUHost
import Logging
import Testing

extension Backends {
    /// Vulkan with device-local memory treated as unmapped: lavapipe taking a discrete GPU's
    /// staging path for every host transfer to a `deviceLocal` buffer.
    static let vulkanStaged: VulkanBackend? = try? VulkanBackend(
        selector: .automatic, options: VulkanBackendOptions(staging: .always), logger: Logger(label: "gpuhost.tests"))

    /// Every way a batch's transfers can be served: CPU memcpy, Vulkan memcpy into mapped
    /// memory, Vulkan through staging.
    static var transferPaths: [(name: String, backend: any ComputeBackend)] {
        [("cpu", cpu as any ComputeBackend)] + (vulkan.map { [("vulkan mapped", $0)] } ?? [])
            + (vulkanStaged.map { [("vulkan staged", $0)] } ?? [])
    }
}

/// Host memory with the lifetime a transfer needs: it lives until the test lets it go, well
/// after the batch has retired.
final class HostArea {
    let bytes: UnsafeMutableRawBufferPointer

    init(count: Int, fill: UInt8 = 0) {
        bytes = .allocate(byteCount: count, alignment: 16)
        bytes.initializeMemory(as: UInt8.self, repeating: fill)
    }

    convenience init(floats: [Float]) {
        self.init(count: floats.count * 4)
        floats.withUnsafeBytes { bytes.copyMemory(from: $0) }
    }

    convenience init(bytes values: [UInt8]) {
        self.init(count: values.count)
        values.withUnsafeBytes { bytes.copyMemory(from: $0) }
    }

    deinit { bytes.deallocate() }

    /// `count` bytes from `offset`, as a transfer's host side.
    func slice(_ offset: Int, _ count: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: bytes[offset ..< offset + count])
    }

    var array: [UInt8] { Array(bytes) }
    var floats: [Float] { Array(bytes.bindMemory(to: Float.self)) }
}

@Suite("Host transfers inside batches")
struct HostTransferTests {
    /// One batch over two device-local buffers and a host-visible one: uploads at offsets,
    /// in-place and dependent kernels whose arithmetic is exact (so every backend must agree
    /// to the bit), downloads of kernel results, of a range only uploaded, and of untouched
    /// zeros. Returns the download area's bytes.
    static func roundTrip(on backend: any ComputeBackend) throws -> [UInt8] {
        let n = 1000
        let x = try backend.createBuffer(byteCount: (n + 8) * 4, placement: .deviceLocal)
        let y = try backend.createBuffer(byteCount: (n + 8) * 4, placement: .deviceLocal)
        let z = try backend.createBuffer(byteCount: 64, placement: .hostVisible)
        defer { for id in [x, y, z] { try? backend.destroyBuffer(id) } }
        let xs = HostArea(floats: (0 ..< n).map { Float($0 % 37) * 0.25 - 3 })
        let ys = HostArea(floats: (0 ..< n).map { Float($0 % 11) * 0.5 })
        let zs = HostArea(bytes: (0 ..< 40).map { UInt8($0 * 3 + 1) })
        // Results: x (n floats), y (n floats), x's guard words, 37 bytes of z at an odd offset.
        let out = HostArea(count: n * 4 * 2 + 16 + 37, fill: 0xee)
        let batch = CommandBatch(
            [.scale(ScaleParams(count: n, alpha: 2, x: BufferRange(x, offset: 4, count: n))),
             .axpy(AxpyParams(count: n, alpha: 1, x: BufferRange(x, offset: 4, count: n), y: BufferRange(y, offset: 2, count: n)))],
            // x's floats arrive in two pieces, as a guest's pages would.
            uploads: [HostTransfer(buffer: x, byteOffset: 16, host: xs.slice(0, 1200)),
                      HostTransfer(buffer: x, byteOffset: 16 + 1200, host: xs.slice(1200, n * 4 - 1200)),
                      HostTransfer(buffer: y, byteOffset: 8, host: ys.bytes),
                      HostTransfer(buffer: z, byteOffset: 3, host: zs.bytes)],
            downloads: [HostTransfer(buffer: x, byteOffset: 16, host: out.slice(0, n * 4)),
                        HostTransfer(buffer: y, byteOffset: 8, host: out.slice(n * 4, n * 4)),
                        HostTransfer(buffer: x, byteOffset: 0, host: out.slice(n * 8, 16)),
                        HostTransfer(buffer: z, byteOffset: 1, host: out.slice(n * 8 + 16, 37))])
        let completion = try backend.run(batch)
        #expect(completion.kernelCount == 2)
        // Nothing outside the transfers changed: the guards of y are still zero.
        #expect(try backend.readFloats(y, offset: 0, count: 2) == [0, 0])
        #expect(try backend.readFloats(y, offset: n + 2, count: 6) == [Float](repeating: 0, count: 6))
        return out.array
    }

    @Test("uploads, kernels and downloads in one batch give the same bytes on every path")
    func roundTripMatchesEverywhere() throws {
        let n = 1000
        let xs = (0 ..< n).map { Float($0 % 37) * 0.25 - 3 }
        let ys = (0 ..< n).map { Float($0 % 11) * 0.5 }
        var expected: [UInt8] = []
        (xs.map { $0 * 2 } + zip(xs, ys).map { $0 * 2 + $1 }).withUnsafeBytes { expected += $0 }
        expected += [UInt8](repeating: 0, count: 16)
        expected += [0, 0] + (0 ..< 35).map { UInt8($0 * 3 + 1) }
        for (name, backend) in Backends.transferPaths {
            let got = try Self.roundTrip(on: backend)
            #expect(got == expected, "\(name): downloads differ from the expected bytes")
        }
    }

    @Test("a batch of transfers alone writes, then reads back, at unaligned offsets")
    func transfersWithoutKernels() throws {
        for (name, backend) in Backends.transferPaths {
            let buffer = try backend.createBuffer(byteCount: 4099, placement: .deviceLocal)
            defer { try? backend.destroyBuffer(buffer) }
            var random = TestRandom(seed: 99)
            let data = HostArea(bytes: random.bytes(3001))
            let exact = HostArea(count: 3001, fill: 0x55)
            let wide = HostArea(count: 4099, fill: 0x55)
            try backend.run(CommandBatch(uploads: [HostTransfer(buffer: buffer, byteOffset: 7, host: data.bytes)],
                                         downloads: [HostTransfer(buffer: buffer, byteOffset: 7, host: exact.bytes),
                                                     HostTransfer(buffer: buffer, byteOffset: 0, host: wide.bytes)]))
            #expect(exact.array == data.array, "\(name)")
            #expect(wide.array == [UInt8](repeating: 0, count: 7) + data.array + [UInt8](repeating: 0, count: 4099 - 3008), "\(name)")
            // An empty transfer is allowed anywhere inside, and up to the end of, the buffer.
            try backend.run(CommandBatch(uploads: [HostTransfer(buffer: buffer, byteOffset: 4099, host: UnsafeHostBytes(data.slice(0, 0)))]))
        }
    }

    @Test("downloads land in the batch's order, so a later one wins where destinations overlap")
    func overlappingDownloadsLandInOrder() throws {
        for (name, backend) in Backends.transferPaths {
            let a = try backend.makeBuffer(bytes: [UInt8](repeating: 1, count: 16))
            let b = try backend.makeBuffer(bytes: [UInt8](repeating: 2, count: 16))
            defer { for id in [a, b] { try? backend.destroyBuffer(id) } }
            let out = HostArea(count: 24)
            try backend.run(CommandBatch(downloads: [HostTransfer(buffer: a, byteOffset: 0, host: out.slice(0, 16)),
                                                     HostTransfer(buffer: b, byteOffset: 0, host: out.slice(8, 16))]))
            #expect(out.array == [UInt8](repeating: 1, count: 8) + [UInt8](repeating: 2, count: 16), "\(name)")
        }
    }

    @Test("staging grows when a batch needs more and is reused after", .enabled(if: Backends.hasVulkan))
    func stagingIsReused() throws {
        let backend = try VulkanBackend(options: VulkanBackendOptions(staging: .always))
        let buffer = try backend.createBuffer(byteCount: 1 << 20, placement: .deviceLocal)
        let small = HostArea(count: 100 << 10, fill: 3)
        let large = HostArea(count: 1 << 20, fill: 4)
        func batch(_ area: HostArea) -> CommandBatch {
            CommandBatch(uploads: [HostTransfer(buffer: buffer, byteOffset: 0, host: area.bytes)],
                         downloads: [HostTransfer(buffer: buffer, byteOffset: 0, host: area.bytes)])
        }
        try backend.run(batch(small))
        let first = backend.stagingAllocationCount
        #expect(first == 1, "the batch did not go through staging")
        for _ in 0 ..< 10 { try backend.run(batch(small)) }
        #expect(backend.stagingAllocationCount == first, "same-size batches allocated staging again")
        try backend.run(batch(large))
        let grown = backend.stagingAllocationCount
        #expect(grown == first + 1)
        for _ in 0 ..< 5 { try backend.run(batch(small)); try backend.run(batch(large)) }
        #expect(backend.stagingAllocationCount == grown)
        #expect(try backend.readFloats(buffer, offset: 0, count: 1).first == Float(bitPattern: 0x0404_0404))
    }

    @Test("standalone writes and reads go through one persistent staging buffer, piece by piece",
          .enabled(if: Backends.hasVulkan))
    func standaloneTransfersReuseStaging() throws {
        var options = VulkanBackendOptions(staging: .always)
        options.standaloneStagingLimit = 4096
        let backend = try VulkanBackend(options: options)
        var random = TestRandom(seed: 5)
        let data = random.bytes(100_001)
        let buffer = try backend.makeBuffer(bytes: [UInt8](repeating: 0, count: data.count + 3))
        let before = backend.stagingAllocationCount
        try data.withUnsafeBytes { try backend.write(buffer, byteOffset: 3, from: $0) }
        var back = [UInt8](repeating: 0, count: data.count)
        try back.withUnsafeMutableBytes { try backend.read(buffer, byteOffset: 3, into: $0) }
        #expect(back == data)
        // Creation's zero-fill went through the device (vkCmdFillBuffer), not the host.
        var head = [UInt8](repeating: 9, count: 3)
        try head.withUnsafeMutableBytes { try backend.read(buffer, byteOffset: 0, into: $0) }
        #expect(head == [0, 0, 0])
        #expect(backend.stagingAllocationCount == before, "the pieces of one write allocated staging again")
    }

    // MARK: Refusals

    @Test("a transfer outside its buffer, of an unknown buffer, or overlapping another upload runs nothing")
    func refusesBadTransfers() throws {
        for (name, backend) in Backends.transferPaths {
            let buffer = try backend.makeBuffer(floats: [1, 2, 3, 4])
            defer { try? backend.destroyBuffer(buffer) }
            let host = HostArea(count: 16, fill: 0x77)
            let scale = Kernel.scale(ScaleParams(count: 4, alpha: 2, x: BufferRange(buffer, count: 4)))
            let missing = BufferID(rawValue: 1 << 40)
            let cases: [(CommandBatch, GPUError)] = [
                (CommandBatch([scale], uploads: [HostTransfer(buffer: missing, byteOffset: 0, host: host.bytes)]),
                 .invalidTransfer(.upload, index: 0, .unknownBuffer(missing))),
                (CommandBatch([scale], downloads: [HostTransfer(buffer: buffer, byteOffset: 0, host: host.slice(0, 4)),
                                                   HostTransfer(buffer: buffer, byteOffset: 4, host: host.bytes)]),
                 .invalidTransfer(.download, index: 1, .outOfBounds(buffer, byteOffset: 4, byteCount: 16, capacity: 16))),
                (CommandBatch([scale], uploads: [HostTransfer(buffer: buffer, byteOffset: -1, host: host.slice(0, 4))]),
                 .invalidTransfer(.upload, index: 0, .outOfBounds(buffer, byteOffset: -1, byteCount: 4, capacity: 16))),
                (CommandBatch([scale], downloads: [HostTransfer(buffer: buffer, byteOffset: .max - 2, host: host.slice(0, 4))]),
                 .invalidTransfer(.download, index: 0, .outOfBounds(buffer, byteOffset: .max - 2, byteCount: 4, capacity: 16))),
                (CommandBatch([scale], uploads: [HostTransfer(buffer: buffer, byteOffset: 8, host: host.slice(0, 8)),
                                                 HostTransfer(buffer: buffer, byteOffset: 0, host: host.slice(8, 4)),
                                                 HostTransfer(buffer: buffer, byteOffset: 4, host: host.slice(0, 5))]),
                 .invalidTransfer(.upload, index: 2, .overlapsUpload(buffer, otherIndex: 0))),
            ]
            for (batch, expected) in cases {
                #expect(throws: expected, "\(name)") { try backend.submit(batch) }
            }
            // Not one of them ran: no scale, no upload, no download.
            #expect(try backend.readFloats(buffer, count: 4) == [1, 2, 3, 4], "\(name)")
            #expect(host.array == [UInt8](repeating: 0x77, count: 16), "\(name)")
        }
    }

    // MARK: Through the scheduler

    @Test("the scheduler refuses transfers naming another client's buffer as it refuses unknown ones")
    func schedulerKeepsTransfersInTheClientsNamespace() throws {
        for (name, backend) in Backends.transferPaths {
            let scheduler = try GPUScheduler(backend: backend)
            defer { scheduler.stop() }
            let mine = try scheduler.addClient(ClientConfiguration(name: "mine"))
            let theirs = try scheduler.addClient(ClientConfiguration(name: "theirs"))
            let own = try scheduler.createBuffer(for: mine, byteCount: 64)
            let foreign = try scheduler.createBuffer(for: theirs, byteCount: 64)
            let secret = HostArea(bytes: [UInt8](repeating: 0x5a, count: 64))
            try scheduler.write(foreign, for: theirs, byteOffset: 0, from: UnsafeRawBufferPointer(secret.bytes))
            let host = HostArea(count: 64, fill: 0x11)
            let refusals: [(CommandBatch, GPUError)] = [
                (CommandBatch(downloads: [HostTransfer(buffer: foreign, byteOffset: 0, host: host.bytes)]),
                 .invalidTransfer(.download, index: 0, .unknownBuffer(foreign))),
                (CommandBatch(uploads: [HostTransfer(buffer: own, byteOffset: 0, host: host.slice(0, 8)),
                                        HostTransfer(buffer: foreign, byteOffset: 0, host: host.bytes)]),
                 .invalidTransfer(.upload, index: 1, .unknownBuffer(foreign))),
                (CommandBatch(uploads: [HostTransfer(buffer: own, byteOffset: 1, host: host.bytes)]),
                 .invalidTransfer(.upload, index: 0, .outOfBounds(own, byteOffset: 1, byteCount: 64, capacity: 64))),
            ]
            for (batch, expected) in refusals {
                #expect(throws: SchedulerError.backend(expected), "\(name)") { try scheduler.submit(batch, for: mine) }
            }
            #expect(host.array == [UInt8](repeating: 0x11, count: 64), "\(name): a refused download wrote host memory")
            var check = [UInt8](repeating: 0, count: 64)
            try check.withUnsafeMutableBytes { try scheduler.read(foreign, for: theirs, byteOffset: 0, into: $0) }
            #expect(check == secret.array, "\(name): a refused upload reached another client's buffer")
        }
    }

    @Test("a client's transfers run in its queue order around batches it did not wait for")
    func schedulerOrdersTransfersWithTheClientsBatches() throws {
        for (name, backend) in Backends.transferPaths {
            let scheduler = try GPUScheduler(backend: backend, configuration: SchedulerConfiguration(maxBatchesInFlight: 4))
            defer { scheduler.stop() }
            let client = try scheduler.addClient(ClientConfiguration(name: "ordered"))
            let n = 4096
            let x = try scheduler.createBuffer(for: client, byteCount: n * 4)
            let range = BufferRange(x, count: n)
            let doubling = CommandBatch([Kernel](repeating: .scale(ScaleParams(count: n, alpha: 2, x: range)), count: 4))
            let ones = HostArea(floats: [Float](repeating: 1, count: n))
            let seen = (0 ..< 3).map { _ in HostArea(count: n * 4) }
            var tickets: [BatchTicket] = []
            for round in 0 ..< 3 {
                // Upload, three batches nobody waits for, then a download: x = 2^12 each round.
                tickets.append(try scheduler.submit(CommandBatch(uploads: [HostTransfer(buffer: x, byteOffset: 0, host: ones.bytes)]),
                                                    for: client))
                for _ in 0 ..< 3 { tickets.append(try scheduler.submit(doubling, for: client)) }
                tickets.append(try scheduler.submit(CommandBatch(downloads: [HostTransfer(buffer: x, byteOffset: 0, host: seen[round].bytes)]),
                                                    for: client))
            }
            for ticket in tickets {
                if case let .failure(error) = ticket.wait() { Issue.record("\(name): \(error)") }
            }
            for round in 0 ..< 3 {
                // As a set, so a failure prints the values seen rather than 4096 of them.
                #expect(Set(seen[round].floats) == [4096], "\(name): round \(round)")
            }
        }
    }

    @Test("a batch's host copy times are reported")
    func reportsHostCopyTimes() throws {
        for (name, backend) in Backends.transferPaths {
            let buffer = try backend.createBuffer(byteCount: 1 << 20, placement: .deviceLocal)
            defer { try? backend.destroyBuffer(buffer) }
            let area = HostArea(count: 1 << 20, fill: 1)
            let completion = try backend.run(CommandBatch(uploads: [HostTransfer(buffer: buffer, byteOffset: 0, host: area.bytes)],
                                                          downloads: [HostTransfer(buffer: buffer, byteOffset: 0, host: area.bytes)]))
            #expect(completion.uploadNanoseconds > 0 && completion.downloadNanoseconds > 0, "\(name)")
        }
    }

    @Test("MALVVM_VULKAN_STAGING picks the staging policy, and a typo is reported, not ignored")
    func stagingOptionFromTheEnvironment() {
        #expect(VulkanBackendOptions.fromEnvironment(stagingValue: nil).options.staging == .automatic)
        #expect(VulkanBackendOptions.fromEnvironment(stagingValue: "").options.staging == .automatic)
        #expect(VulkanBackendOptions.fromEnvironment(stagingValue: "auto").options.staging == .automatic)
        let always = VulkanBackendOptions.fromEnvironment(stagingValue: "ALWAYS")
        #expect(always.options.staging == .always && always.problem == nil)
        let typo = VulkanBackendOptions.fromEnvironment(stagingValue: "alway")
        #expect(typo.options.staging == .automatic)
        #expect(typo.problem?.contains("MALVVM_VULKAN_STAGING=alway") == true)
    }
}
