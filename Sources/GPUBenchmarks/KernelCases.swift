import Foundation
import GPUHost

/// One kernel the GPU benchmark times: its buffers, how many timed runs, and what a run is
/// worth (FLOPs, or bytes moved) to turn time into a rate.
public struct KernelBenchmarkCase: Sendable {
    public var name: String
    public var bufferBytes: [Int]
    public var iterations: Int
    public var flops: Double?
    public var bytesMoved: Double?
    public var kernel: @Sendable ([BufferID]) -> Kernel

    /// GFLOP/s (or GB/s for a memory-bound case) at `nanoseconds` per run.
    public func rate(nanoseconds: UInt64) -> Double {
        let seconds = Double(max(nanoseconds, 1)) / 1e9
        if let flops { return flops / seconds / 1e9 }
        return (bytesMoved ?? 0) / seconds / 1e9
    }

    public var unit: String { flops != nil ? "GFLOP/s" : "GB/s" }
}

private let mega = 1 << 20

extension KernelBenchmarkCase {
    /// The cases scripts/bench-gpu and gpu-check measure, sized so each batch runs long enough
    /// to time on lavapipe and still shows per-batch overhead on a data-centre GPU.
    public static let standard: [KernelBenchmarkCase] = [
        KernelBenchmarkCase(name: "sgemm_256", bufferBytes: [256 * 256 * 4, 256 * 256 * 4, 256 * 256 * 4], iterations: 20,
                                flops: 2 * pow(256, 3), bytesMoved: nil) { b in
            .sgemm(SGEMMParams(m: 256, n: 256, k: 256, a: BufferRange(b[0], count: 256 * 256),
                               b: BufferRange(b[1], count: 256 * 256), c: BufferRange(b[2], count: 256 * 256)))
        },
        KernelBenchmarkCase(name: "sgemm_512", bufferBytes: [512 * 512 * 4, 512 * 512 * 4, 512 * 512 * 4], iterations: 8,
                                flops: 2 * pow(512, 3), bytesMoved: nil) { b in
            .sgemm(SGEMMParams(m: 512, n: 512, k: 512, a: BufferRange(b[0], count: 512 * 512),
                               b: BufferRange(b[1], count: 512 * 512), c: BufferRange(b[2], count: 512 * 512)))
        },
        KernelBenchmarkCase(name: "axpy_4M", bufferBytes: [4 * mega * 4, 4 * mega * 4], iterations: 20,
                                flops: nil, bytesMoved: 12 * Double(4 * mega)) { b in
            .axpy(AxpyParams(count: 4 * mega, alpha: 0.5, x: BufferRange(b[0], count: 4 * mega), y: BufferRange(b[1], count: 4 * mega)))
        },
        KernelBenchmarkCase(name: "scale_4M", bufferBytes: [4 * mega * 4], iterations: 20, flops: nil, bytesMoved: 8 * Double(4 * mega)) { b in
            .scale(ScaleParams(count: 4 * mega, alpha: 1.0001, x: BufferRange(b[0], count: 4 * mega)))
        },
        KernelBenchmarkCase(name: "gelu_4M", bufferBytes: [4 * mega * 4, 4 * mega * 4], iterations: 20, flops: nil,
                                bytesMoved: 8 * Double(4 * mega)) { b in
            .activation(ActivationParams(activation: .gelu, count: 4 * mega, input: BufferRange(b[0], count: 4 * mega),
                                         output: BufferRange(b[1], count: 4 * mega)))
        },
        KernelBenchmarkCase(name: "softmax_2048x1000", bufferBytes: [2048 * 1000 * 4, 2048 * 1000 * 4], iterations: 20, flops: nil,
                                bytesMoved: 8 * 2048 * 1000) { b in
            .softmax(SoftmaxParams(rows: 2048, columns: 1000, input: BufferRange(b[0], count: 2048 * 1000),
                                   output: BufferRange(b[1], count: 2048 * 1000)))
        },
        KernelBenchmarkCase(name: "reduce_rows_2048x2048", bufferBytes: [2048 * 2048 * 4, 2048 * 4], iterations: 20, flops: nil,
                                bytesMoved: 4 * 2048 * 2049) { b in
            .reduce(ReduceParams(op: .sum, axis: .perRow, rows: 2048, columns: 2048, input: BufferRange(b[0], count: 2048 * 2048),
                                 output: BufferRange(b[1], count: 2048)))
        },
        KernelBenchmarkCase(name: "conv2d_8x16x32x32_k32_3x3", bufferBytes: [8 * 16 * 32 * 32 * 4, 32 * 16 * 9 * 4, 8 * 32 * 32 * 32 * 4],
                                iterations: 10, flops: 2 * 8 * 32 * 32 * 32 * 16 * 9, bytesMoved: nil) { b in
            let shape = Conv2DShape(batch: 8, inChannels: 16, height: 32, width: 32, outChannels: 32, kernelHeight: 3,
                                    kernelWidth: 3, padY: 1, padX: 1)
            return .conv2dForward(Conv2DForwardParams(shape: shape, input: BufferRange(b[0], count: 8 * 16 * 32 * 32),
                                                      weight: BufferRange(b[1], count: 32 * 16 * 9),
                                                      output: BufferRange(b[2], count: 8 * 32 * 32 * 32)))
        },
    ]
}
