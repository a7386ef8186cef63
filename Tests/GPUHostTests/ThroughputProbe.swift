@testable import GPUHost
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// Not a pass/fail check (tests carry no timing assertions): prints SGEMM throughput measured
/// with device timestamps when GPUHOST_PROBE=1, e.g. `GPUHOST_PROBE=1 swift test -c release
/// --filter ThroughputProbe`.
@Suite("Throughput probe", .enabled(if: getenv("GPUHOST_PROBE") != nil && Backends.hasVulkan))
struct ThroughputProbe {
    @Test("SGEMM GFLOP/s from device timestamps", arguments: [256, 512, 1024])
    func sgemm(_ size: Int) throws {
        let vulkan = try #require(Backends.vulkan)
        let space = Workspace(vulkan)
        var random = TestRandom(seed: 3)
        let a = try space.floats(random.floats(size * size))
        let b = try space.floats(random.floats(size * size))
        let c = try space.zeros(size * size)
        let kernel = Kernel.sgemm(SGEMMParams(m: size, n: size, k: size, a: a, b: b, c: c))
        try vulkan.run(kernel) // pipeline creation and first-touch out of the measurement
        var best = UInt64.max
        for _ in 0 ..< 3 {
            let completion = try vulkan.run(kernel)
            best = min(best, completion.executionNanoseconds ?? .max)
        }
        let gflops = 2 * Double(size * size * size) / Double(best)
        print("ThroughputProbe sgemm \(size)^3 on \(vulkan.device.name): \(best / 1000) us, \((gflops * 100).rounded() / 100) GFLOP/s")
    }
}
