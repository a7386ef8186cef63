import Foundation
import GPUHost
import Platform

/// sgemm throughput at square sizes, timed the way scripts/lib/gpucheck/torch_gemm.py times
/// PyTorch's matmul, so the two compare directly.
public enum GEMMBenchmark {
    /// One measured configuration.
    public struct Measurement: Sendable {
        public var size: Int
        public var iterations: Int
        /// Device time per sgemm (timestamps around the whole batch, divided by its kernels).
        public var deviceNanoseconds: Double
        /// Wall time per sgemm, submit to completion of the whole batch.
        public var wallNanoseconds: Double
        public var timing: TimingSource

        public var deviceTFLOPS: Double { Self.tflops(size, deviceNanoseconds) }
        public var wallTFLOPS: Double { Self.tflops(size, wallNanoseconds) }

        static func tflops(_ size: Int, _ nanoseconds: Double) -> Double {
            2 * pow(Double(size), 3) / max(nanoseconds, 1) / 1e3
        }
    }

    /// Times `size`^3 sgemms back to back (one batch of `iterations` identical kernels; each
    /// writes C, so the backend puts a barrier between them, as a CUDA stream serialises
    /// kernels), after warm-up, median of five batches. The batch length is picked from one
    /// timed call so a batch lasts about `seconds` / 5. `variant` forces a tile shape; nil lets
    /// the backend choose as it always does.
    package static func measure(on backend: VulkanBackend, size: Int, seconds: Double,
                               variant: SGEMMVariant? = nil) throws(GPUBenchmarkError) -> Measurement {
        do {
            return try measureThrowing(on: backend, size: size, seconds: seconds, variant: variant)
        } catch {
            throw GPUBenchmarkError("gemm \(size)\(variant.map { " (\($0.rawValue))" } ?? ""): \(error)")
        }
    }

    private static func measureThrowing(on backend: VulkanBackend, size: Int, seconds: Double,
                                        variant: SGEMMVariant?) throws -> Measurement {
        let count = size * size
        var ids: [BufferID] = []
        defer { for id in ids { try? backend.destroyBuffer(id) } }
        for _ in 0 ..< 3 {
            ids.append(try backend.createBuffer(byteCount: count * 4, placement: .deviceLocal))
        }
        // Same data as the kernel cases (and vkdirect).
        let values = (0 ..< count).map { Float($0 % 97) * 0.01 - 0.4 }
        try backend.write(floats: values, to: ids[0])
        try backend.write(floats: values, to: ids[1])
        let kernel = Kernel.sgemm(SGEMMParams(m: size, n: size, k: size, a: BufferRange(ids[0], count: count),
                                              b: BufferRange(ids[1], count: count), c: BufferRange(ids[2], count: count)))
        func timed(_ iterations: Int) throws -> (device: UInt64, wall: UInt64, timing: TimingSource) {
            let batch = CommandBatch([Kernel](repeating: kernel, count: iterations))
            let start = monotonicNanoseconds()
            let completion = try SGEMMVariant.$forced.withValue(variant) { try backend.run(batch) }
            let wall = monotonicNanoseconds() - start
            return (completion.executionNanoseconds ?? wall, wall, completion.timing)
        }
        // Warm-up: pipeline creation, clocks ramping up.
        _ = try timed(1)
        let single = try timed(1)
        let perBatch = seconds / 5
        let iterations = max(1, min(1000, Int(perBatch * 1e9 / Double(max(single.device, 1)))))
        // A single call already longer than a second (a CPU "GPU") is measured once more, not five times.
        let rounds = Double(single.device) * Double(iterations) > 1e9 ? 1 : 5
        _ = try timed(iterations)
        var device: [Double] = []
        var wall: [Double] = []
        var timing = single.timing
        for _ in 0 ..< rounds {
            let r = try timed(iterations)
            device.append(Double(r.device) / Double(iterations))
            wall.append(Double(r.wall) / Double(iterations))
            timing = r.timing
        }
        func middle(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        return Measurement(size: size, iterations: iterations, deviceNanoseconds: middle(device),
                           wallNanoseconds: middle(wall), timing: timing)
    }
}
