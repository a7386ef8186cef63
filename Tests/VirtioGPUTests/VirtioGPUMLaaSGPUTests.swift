import Glibc
import GPUHost
@testable import Hypervisor
import Testing
@testable import VGPUCore
@testable import VirtioGPU

/// The para-vGPU's contexts as an MLaaS service computes on them (VGPUCore's MLaaSContextGPU,
/// docs/vgpu-protocol.md "Services on the vGPU's contexts"): only the named context's own HOST3D
/// resources and its scratch buffers, every range checked, the work on the context's queue.
@Suite struct VirtioGPUMLaaSGPUTests {
    typealias Response = VirtioGPUProtocol.Response

    /// Contexts 1 and 2; HOST3D blobs 10 (context 1) and 11 (context 2), a GUEST blob 12
    /// (context 1); each attached to its context.
    static func driver() throws -> GPUDriver {
        let driver = try GPUDriver()
        for id: UInt32 in [1, 2] { #expect(try driver.call(GPUDriver.createContext(id)) == Response.okNoData.rawValue) }
        let blobs: [[UInt8]] = [
            GPUDriver.createBlob(10, context: 1, memory: .host3D, size: 64),
            GPUDriver.createBlob(11, context: 2, memory: .host3D, size: 64),
            GPUDriver.createBlob(12, context: 1, memory: .guest, size: 64, entries: [(GPUDriver.dataBase, 64)]),
        ]
        for blob in blobs { #expect(try driver.call(blob) == Response.okNoData.rawValue) }
        for (resource, context): (UInt32, UInt32) in [(10, 1), (11, 2), (12, 1)] {
            #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: context, [resource, 0])) == Response.okNoData.rawValue)
        }
        return driver
    }

    static func reason(_ body: () throws(MLaaSGPUError) -> Void) -> MLaaSGPUError.Reason? {
        do throws(MLaaSGPUError) { try body(); return nil } catch { return error.reason }
    }

    @Test func onlyTheContextsOwnGPUOnlyResourcesAreReachable() throws {
        let driver = try Self.driver()
        defer { driver.shutdown() }
        let gpu: any MLaaSContextGPU = driver.device
        #expect(try gpu.mlaasResourceSize(context: 1, resource: 10) == 64)
        #expect(Self.reason { () throws(MLaaSGPUError) in _ = try gpu.mlaasResourceSize(context: 1, resource: 11) } == .notFound)
        #expect(Self.reason { () throws(MLaaSGPUError) in _ = try gpu.mlaasResourceSize(context: 1, resource: 12) } == .invalid)
        #expect(Self.reason { () throws(MLaaSGPUError) in _ = try gpu.mlaasResourceSize(context: 9, resource: 10) } == .notFound)
        #expect(Self.reason { () throws(MLaaSGPUError) in _ = try gpu.mlaasResourceSize(context: 1, resource: 0) } == .notFound)
        #expect(Self.reason { () throws(MLaaSGPUError) in _ = try gpu.mlaasAllocate(context: 1, bytes: 65 << 20) } == .noMemory)
        #expect(Self.reason { () throws(MLaaSGPUError) in _ = try gpu.mlaasAllocate(context: 3, bytes: 64) } == .notFound)
    }

    @Test func aRunUploadsComputesIntoTheResourceAndChecksEveryRange() throws {
        let driver = try Self.driver()
        defer { driver.shutdown() }
        let gpu: any MLaaSContextGPU = driver.device
        let scratch = try gpu.mlaasAllocate(context: 1, bytes: 64)
        let inUse = driver.device.statistics.memoryInUseBytes
        let values: [Float] = (0 ..< 16).map { Float($0) - 3.5 }
        // A 4x4 plane, flipped into resource 10 through the scratch buffer.
        try values.withUnsafeBytes { bytes in
            try gpu.mlaasRun(context: 1, uploads: [MLaaSUpload(scratch: scratch, offset: 0, bytes: bytes)]) {
                (resolve: MLaaSResolve) throws(MLaaSGPUError) -> [Kernel] in
                [.flipHorizontal(FlipParams(batch: 1, channels: 1, height: 4, width: 4, input: try resolve(.scratch(scratch), 0, 64, 4),
                                            output: try resolve(.resource(10), 0, 64, 4)))]
            }
        }
        let buffer = try #require(driver.device.stateLock.withLock { driver.device.state.resources[10]?.buffer })
        var out = [Float](repeating: 0, count: 16)
        try out.withUnsafeMutableBytes { try driver.scheduler.read(buffer, for: driver.device.stateLock.withLock {
            driver.device.state.contexts[1]!.client }, byteOffset: 0, into: $0) }
        #expect(out == (0 ..< 4).flatMap { row in (0 ..< 4).reversed().map { values[row * 4 + $0] } })

        func run(_ name: MLaaSBufferName, _ offset: UInt64, _ length: UInt64, context: UInt32 = 1) -> MLaaSGPUError.Reason? {
            Self.reason { () throws(MLaaSGPUError) in
                try gpu.mlaasRun(context: context, uploads: []) { (resolve: MLaaSResolve) throws(MLaaSGPUError) -> [Kernel] in
                    [.flipHorizontal(FlipParams(batch: 1, channels: 1, height: 1, width: 4, input: try resolve(name, offset, length, 4),
                                                output: try resolve(.scratch(scratch), 0, 16, 4)))]
                }
            }
        }
        #expect(run(.resource(10), 48, 32) == .invalid)           // past the blob's end
        #expect(run(.resource(10), 2, 16) == .invalid)            // misaligned
        #expect(run(.resource(11), 0, 16) == .notFound)           // context 2's
        #expect(run(.resource(12), 0, 16) == .invalid)            // a GUEST blob
        #expect(run(.scratch(scratch + 1), 0, 16) == .notFound)   // never allocated
        #expect(run(.resource(10), 0, 16, context: 2) == .notFound)  // the scratch is context 1's
        #expect(run(.resource(10), 0, 12) == .invalid)            // GPUHost: 3 values for a width of 4

        gpu.mlaasRelease(context: 1, scratch: scratch)
        #expect(run(.resource(10), 0, 16) == .notFound)
        // Freed on the context's queue, after its work: the vGPU's memory comes back.
        let deadline = clockSeconds() + 5
        while driver.device.statistics.memoryInUseBytes != inUse - 64 && clockSeconds() < deadline { usleep(1000) }
        #expect(driver.device.statistics.memoryInUseBytes == inUse - 64)
    }
}
