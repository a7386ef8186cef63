@testable import GPUHost
import Testing

/// Descriptor sets are cached per submission slot and reused across batches; a destroyed
/// buffer must never be reached through a stale set, even when the same ids' neighbours come
/// back in a later batch.
@Suite("Descriptor set cache", .enabled(if: Backends.hasVulkan))
struct DescriptorCacheTests {
    @Test func reusedBindingsStayCorrectAcrossBatchesAndDestroyedBuffers() throws {
        let vulkan = try #require(Backends.vulkan)
        let space = Workspace(vulkan)
        let x = try space.floats([1, 2, 3, 4])
        var y = try space.floats([10, 20, 30, 40])
        // The same (x, y) tuple in many dispatches and batches: one set, bound again and again.
        for _ in 0 ..< 3 {
            try vulkan.run(CommandBatch(Array(repeating: .axpy(AxpyParams(count: 4, alpha: 1, x: x, y: y)), count: 5)))
        }
        #expect(try space.read(y) == [25, 50, 75, 100])
        // y goes away; a new buffer takes its place in the same kind of dispatch.
        let destroyed = y
        try vulkan.destroyBuffer(y.buffer)
        y = try space.floats([0, 0, 0, 0])
        try vulkan.run(.axpy(AxpyParams(count: 4, alpha: 2, x: x, y: y)))
        #expect(try space.read(y) == [2, 4, 6, 8])
        // A batch naming the destroyed buffer is refused, never run through a cached set.
        #expect(throws: GPUError.self) {
            try vulkan.run(.axpy(AxpyParams(count: 4, alpha: 1, x: x, y: destroyed)))
        }
    }
}
