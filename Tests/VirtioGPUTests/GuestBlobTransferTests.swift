@testable import VGPUCore
import GPUHost
@testable import Hypervisor
import Logging
import Testing
@testable import VirtioGPU

/// Guest blobs travel inside their batch (uploads before its kernels, downloads after), served
/// by memcpy on the CPU backend and on lavapipe's mapped memory, and as on a discrete GPU
/// (`staging: .always`) by device copies straight out of and into guest RAM (imported as
/// device memory) or, with importing off, through staging. The guest must not be able to tell
/// the paths apart.
@Suite struct GuestBlobTransferTests {
    static let vulkan: VulkanBackend? = try? VulkanBackend(logger: Logger(label: "vgpu.tests"))
    static let vulkanZeroCopy: VulkanBackend? = try? VulkanBackend(options: VulkanBackendOptions(staging: .always),
                                                                   logger: Logger(label: "vgpu.tests"))
    static let vulkanStaged: VulkanBackend? = try? VulkanBackend(options: VulkanBackendOptions(staging: .always, hostImport: .off),
                                                                 logger: Logger(label: "vgpu.tests"))

    static var paths: [(name: String, backend: any ComputeBackend)] {
        [("cpu", CPUBackend() as any ComputeBackend)] + (vulkan.map { [("vulkan mapped", $0)] } ?? [])
            + (vulkanZeroCopy.map { [("vulkan zero-copy", $0)] } ?? []) + (vulkanStaged.map { [("vulkan staged", $0)] } ?? [])
    }

    /// The guest-visible outcome of a dense layer, ten dependent submissions queued without
    /// waiting, and HOST3D transfers, as raw guest bytes.
    static func guestOutcome(on backend: any ComputeBackend, _ name: String) throws -> [UInt8] {
        let compute = VirtioGPUComputeTests()
        let driver = try GPUDriver(scheduler: GPUScheduler(backend: backend))
        defer { driver.shutdown() }
        let dense = try compute.makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0.5)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: compute.denseStream(dense).bytes, fence: 1))
            == Response.okNoData.rawValue, "\(name)")
        try compute.expectResult(driver, dense)
        let layer = try driver.memory.read(Int(VirtioGPUComputeTests.outputSize), at: GuestAddress(dense.outputAddress))

        // Each submission reads what the one before wrote back into guest RAM: the bias
        // copied in, then doubled nine times.
        var heads: [UInt16] = []
        var copy = StreamBuilder()
        copy.copy(source: StreamBuilder.ref(1, offset: VirtioGPUComputeTests.biasOffset, length: 16),
                  destination: StreamBuilder.ref(2, offset: 0, length: 16))
        heads.append(try driver.send(GPUDriver.submit(context: 1, stream: copy.bytes, fence: 2)))
        for fence in 3 ... 11 {
            var step = StreamBuilder()
            step.scale(count: 4, alpha: 2, x: StreamBuilder.ref(2, offset: 0, length: 16))
            heads.append(try driver.send(GPUDriver.submit(context: 1, stream: step.bytes, fence: UInt64(fence))))
        }
        for head in heads { #expect(try driver.response(head).header.type == Response.okNoData.rawValue, "\(name)") }
        #expect(try driver.readFloats(at: dense.outputAddress, count: 4) == dense.bias.prefix(4).map { $0 * 512 }, "\(name)")
        let chain = try driver.memory.read(16, at: GuestAddress(dense.outputAddress))

        // A HOST3D blob filled and read back by TRANSFER_*_HOST_3D around a kernel: the
        // standalone write/read path.
        let pages = GPUDriver.dataBase + 0x10000
        #expect(try driver.call(GPUDriver.createBlob(5, context: 1, memory: .host3D, size: 64)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.attachBacking(5, entries: [(pages, 32), (pages + 0x1000, 32)])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: 1, [5, 0])) == Response.okNoData.rawValue)
        try driver.write(floats: (0 ..< 8).map(Float.init), at: pages)
        try driver.write(floats: (8 ..< 16).map(Float.init), at: pages + 0x1000)
        #expect(try driver.call(GPUDriver.transfer(true, context: 1, resource: 5, x: 0, width: 64, offset: 0, fence: 12))
            == Response.okNoData.rawValue)
        var scale = StreamBuilder()
        scale.scale(count: 16, alpha: 2.5, x: StreamBuilder.ref(5, offset: 0, length: 64))
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: scale.bytes, fence: 13)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.transfer(false, context: 1, resource: 5, x: 16, width: 32, offset: 0, fence: 14))
            == Response.okNoData.rawValue)
        #expect(try driver.readFloats(at: pages, count: 8) == (4 ..< 12).map { Float($0) * 2.5 }, "\(name)")
        let host = try driver.memory.read(32, at: GuestAddress(pages))

        let statistics = driver.device.statistics
        #expect(statistics.submissions == 12, "\(name)")
        #expect(statistics.uploadBytes > 0 && statistics.downloadBytes > 0, "\(name)")
        // The nine identical doubling steps come from the decode cache as one validated batch:
        // after the first, Vulkan replays its recording (each step still reads the guest bytes
        // the one before wrote, so a stale replay would fail the chain check above).
        if backend.kind == .vulkan {
            #expect(statistics.replayedRecordings >= 5, "\(name): \(statistics.replayedRecordings) replays")
        }
        // Only the device-local buffers the host cannot map take the zero-copy path, and then
        // every guest-blob byte does (a kernel-read range is in guest RAM by construction).
        if name == "vulkan zero-copy" {
            #expect(statistics.zeroCopyBytes == statistics.uploadBytes + statistics.downloadBytes, "\(name)")
        } else {
            #expect(statistics.zeroCopyBytes == 0, "\(name)")
        }
        return layer + chain + host
    }

    @Test func guestBlobsGiveTheGuestTheSameBytesOnEveryTransferPath() throws {
        var outcomes: [(String, [UInt8])] = []
        for (name, backend) in Self.paths {
            outcomes.append((name, try Self.guestOutcome(on: backend, name)))
        }
        // The Vulkan paths run the same shaders on the same device: equal to the bit.
        let vulkan = outcomes.filter { $0.0.hasPrefix("vulkan") }
        for (name, bytes) in vulkan.dropFirst() {
            #expect(bytes == vulkan[0].1, "\(name) and \(vulkan[0].0) transfers gave the guest different bytes")
        }
    }
}
