#if canImport(Glibc)
import Glibc
#endif
@testable import GPUHost
import Logging
import Testing

/// Host memory shared with the device (`shareHostMemory`, VK_EXT_external_memory_host, which
/// lavapipe offers too): a batch's transfers to and from buffers the host cannot map become
/// device copies straight out of and into that memory, with no host copy and no staging
/// (issue #18: the staging path, not the bytes, was a fifth of the VM's time on the H200).
/// The guest must not be able to tell: every result here is checked against the arithmetic,
/// and the staging path is what the same batch falls back to.
@Suite("Host memory imported for zero-copy transfers", .enabled(if: Backends.hasVulkan))
struct HostMemoryImportTests {
    /// Shared anonymous pages, as guest RAM is mapped (shmem, page-aligned, whole pages).
    final class Pages {
        let bytes: UnsafeMutableRawBufferPointer

        init(count: Int) {
            let base = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
            precondition(base != MAP_FAILED && base != nil, "mmap failed")
            bytes = UnsafeMutableRawBufferPointer(start: base, count: count)
        }

        deinit { munmap(bytes.baseAddress, bytes.count) }

        func slice(_ offset: Int, _ count: Int) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: bytes[offset ..< offset + count])
        }

        func floats(_ offset: Int, _ count: Int) -> [Float] {
            (0 ..< count).map { bytes.load(fromByteOffset: offset + $0 * 4, as: Float.self) }
        }

        func store(_ values: [Float], at offset: Int) {
            for (index, value) in values.enumerated() { bytes.storeBytes(of: value, toByteOffset: offset + index * 4, as: Float.self) }
        }
    }

    /// y = alpha x + y over 64 floats in device-local buffers that lavapipe is told not to map
    /// (`staging: .always`, a discrete GPU's case); x and y live in `pages` at `xAt`/`yAt`.
    struct Axpy {
        static let count = 64
        let backend: VulkanBackend
        let x: BufferID
        let y: BufferID

        init(hostImport: VulkanBackendOptions.HostImport = .automatic) throws {
            backend = try VulkanBackend(options: VulkanBackendOptions(staging: .always, hostImport: hostImport),
                                        logger: Logger(label: "import.tests"))
            x = try backend.createBuffer(byteCount: Self.count * 4, placement: .deviceLocal)
            y = try backend.createBuffer(byteCount: Self.count * 4, placement: .deviceLocal)
        }

        func batch(_ host: Pages, xAt: Int = 0, yAt: Int = 8192) throws -> ValidatedBatch {
            let bytes = Self.count * 4
            return try ValidatedBatch(CommandBatch(
                [.axpy(AxpyParams(count: Self.count, alpha: 2, x: BufferRange(x, count: Self.count), y: BufferRange(y, count: Self.count)))],
                uploads: [HostTransfer(buffer: x, byteOffset: 0, host: host.slice(xAt, bytes)),
                          HostTransfer(buffer: y, byteOffset: 0, host: host.slice(yAt, bytes))],
                downloads: [HostTransfer(buffer: y, byteOffset: 0, host: host.slice(yAt, bytes))]),
                capacity: { backend.capacity(of: $0) })
        }

        /// Runs `batch` on round-specific data and checks y came back as 2x + y.
        func run(_ batch: ValidatedBatch, _ host: Pages, round: Int, xAt: Int = 0, yAt: Int = 8192) throws -> BatchCompletion {
            host.store((0 ..< Self.count).map { Float($0 + round) }, at: xAt)
            host.store([Float](repeating: Float(100 * round), count: Self.count), at: yAt)
            let completion = try backend.wait(try backend.submit(batch), timeoutNanoseconds: .max)
            #expect(host.floats(yAt, Self.count) == (0 ..< Self.count).map { 2 * Float($0 + round) + Float(100 * round) },
                    "round \(round)")
            return completion
        }
    }

    @Test("transfers through shared memory are device copies, and a repeated batch replays them with fresh data")
    func sharedTransfersAreZeroCopy() throws {
        let job = try Axpy()
        let host = Pages(count: 64 << 10)
        let share = try #require(job.backend.shareHostMemory(host.bytes), "lavapipe offers VK_EXT_external_memory_host")
        let batch = try job.batch(host)
        for round in 0 ..< 4 {
            let completion = try job.run(batch, host, round: round)
            #expect(completion.zeroCopyBytes == UInt64(3 * Axpy.count * 4), "round \(round)")
            #expect(completion.replayedRecording == (round > 0), "round \(round)")
        }
        // Nothing went through staging: no slot ever reserved any.
        #expect(job.backend.stagingAllocationCount == 0)
        withExtendedLifetime(share) {}
    }

    @Test("a released share falls back to staging, and its recordings are not replayed")
    func releasedShareFallsBackToStaging() throws {
        let job = try Axpy()
        let host = Pages(count: 64 << 10)
        var share = job.backend.shareHostMemory(host.bytes)
        // Two shares of one range (two vGPUs of one VM) are one import until both are gone.
        var second = job.backend.shareHostMemory(host.bytes)
        #expect(share != nil && second != nil)
        let batch = try job.batch(host)
        for round in 0 ..< 3 { _ = try job.run(batch, host, round: round) }
        share = nil
        #expect(try job.run(batch, host, round: 3).zeroCopyBytes > 0)
        second = nil
        let staged = try job.run(batch, host, round: 4)
        #expect(staged.zeroCopyBytes == 0)
        #expect(staged.replayedRecording == false)
        #expect(try job.run(batch, host, round: 5).replayedRecording == true)
        #expect(job.backend.stagingAllocationCount == 1)
    }

    @Test("downloads into overlapping host bytes keep the batch's order through staging")
    func overlappingDownloadsAreStaged() throws {
        let job = try Axpy()
        let host = Pages(count: 16 << 10)
        let share = try #require(job.backend.shareHostMemory(host.bytes))
        let bytes = Axpy.count * 4
        host.store((0 ..< Axpy.count).map { Float($0) }, at: 0)
        host.store([Float](repeating: 1, count: Axpy.count), at: 4096)
        // x's bytes, then y's result, into one place: the later download must win.
        let batch = try ValidatedBatch(CommandBatch(
            [.axpy(AxpyParams(count: Axpy.count, alpha: 2, x: BufferRange(job.x, count: Axpy.count),
                              y: BufferRange(job.y, count: Axpy.count)))],
            uploads: [HostTransfer(buffer: job.x, byteOffset: 0, host: host.slice(0, bytes)),
                      HostTransfer(buffer: job.y, byteOffset: 0, host: host.slice(4096, bytes))],
            downloads: [HostTransfer(buffer: job.x, byteOffset: 0, host: host.slice(8192, bytes)),
                        HostTransfer(buffer: job.y, byteOffset: 0, host: host.slice(8192, bytes))]),
            capacity: { job.backend.capacity(of: $0) })
        let completion = try job.backend.wait(try job.backend.submit(batch), timeoutNanoseconds: .max)
        #expect(host.floats(8192, Axpy.count) == (0 ..< Axpy.count).map { 2 * Float($0) + 1 })
        // The uploads still went in place; the downloads went through staging.
        #expect(completion.zeroCopyBytes == UInt64(2 * bytes))
        withExtendedLifetime(share) {}
    }

    @Test("host memory outside every share goes through staging")
    func unsharedMemoryIsStaged() throws {
        let job = try Axpy()
        let shared = Pages(count: 16 << 10)
        let other = Pages(count: 16 << 10)
        let share = try #require(job.backend.shareHostMemory(shared.bytes))
        let completion = try job.run(try job.batch(other), other, round: 1)
        #expect(completion.zeroCopyBytes == 0)
        withExtendedLifetime(share) {}
    }

    @Test("memory that cannot be imported, or a backend told not to, gives no share")
    func sharingIsRefusedWhereItCannotWork() throws {
        let host = Pages(count: 16 << 10)
        let job = try Axpy()
        // The device needs its import alignment (lavapipe's is 4096) at both ends.
        #expect(job.backend.shareHostMemory(host.slice(64, 8192)) == nil)
        #expect(job.backend.shareHostMemory(host.slice(0, 4096 + 64)) == nil)
        #expect(try Axpy(hostImport: .off).backend.shareHostMemory(host.bytes) == nil)
        #expect(CPUBackend().shareHostMemory(host.bytes) == nil)
    }

    @Test("MALVVM_VULKAN_HOST_IMPORT turns importing off, and a typo is reported, not ignored")
    func hostImportOptionFromTheEnvironment() {
        #expect(VulkanBackendOptions.fromEnvironment(stagingValue: nil, hostImportValue: nil).options.hostImport == .automatic)
        let off = VulkanBackendOptions.fromEnvironment(stagingValue: "always", hostImportValue: "OFF")
        #expect(off.options.hostImport == .off && off.options.staging == .always && off.problem == nil)
        let typo = VulkanBackendOptions.fromEnvironment(stagingValue: "alway", hostImportValue: "no")
        #expect(typo.options.hostImport == .automatic)
        #expect(typo.problem?.contains("MALVVM_VULKAN_HOST_IMPORT=no") == true)
        #expect(typo.problem?.contains("MALVVM_VULKAN_STAGING=alway") == true)
    }
}
