@testable import GPUHost
import Testing

@Suite("Conv2D")
struct Conv2DTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var shape: Conv2DShape
        var testDescription: String {
            let s = shape
            return "N\(s.batch) C\(s.inChannels) \(s.height)x\(s.width) K\(s.outChannels) \(s.kernelHeight)x\(s.kernelWidth) stride \(s.strideY),\(s.strideX) pad \(s.padY),\(s.padX)"
        }
    }

    static let cases: [Case] = [
        Case(shape: Conv2DShape(batch: 1, inChannels: 1, height: 1, width: 1, outChannels: 1, kernelHeight: 1, kernelWidth: 1)),
        Case(shape: Conv2DShape(batch: 2, inChannels: 3, height: 7, width: 7, outChannels: 4, kernelHeight: 3, kernelWidth: 3,
                                padY: 1, padX: 1)),
        Case(shape: Conv2DShape(batch: 1, inChannels: 2, height: 33, width: 33, outChannels: 5, kernelHeight: 3, kernelWidth: 3,
                                strideY: 2, strideX: 2, padY: 1, padX: 1)),
        Case(shape: Conv2DShape(batch: 3, inChannels: 1, height: 9, width: 13, outChannels: 2, kernelHeight: 5, kernelWidth: 2,
                                strideY: 3, strideX: 1, padY: 2, padX: 0)),
        Case(shape: Conv2DShape(batch: 1, inChannels: 7, height: 1, width: 1000, outChannels: 3, kernelHeight: 1, kernelWidth: 7,
                                strideY: 1, strideX: 2, padY: 0, padX: 3)),
        Case(shape: Conv2DShape(batch: 2, inChannels: 4, height: 16, width: 16, outChannels: 8, kernelHeight: 4, kernelWidth: 4,
                                strideY: 4, strideX: 4)),
    ]

    private static func counts(_ s: Conv2DShape) -> (input: Int, weight: Int, output: Int) {
        (s.batch * s.inChannels * s.height * s.width,
         s.outChannels * s.inChannels * s.kernelHeight * s.kernelWidth,
         s.batch * s.outChannels * s.outHeight * s.outWidth)
    }

    private static func tolerance(_ s: Conv2DShape, span: Int) -> Float { 1e-5 + 1e-6 * Float(span) }

    @Test("forward matches the reference", .enabled(if: Backends.hasVulkan), arguments: cases)
    func forward(_ c: Case) throws {
        let s = c.shape
        let n = Self.counts(s)
        for withBias in [false, true] {
            let outputs = try compareBackends { space in
                var random = TestRandom(seed: UInt64(n.input + n.weight))
                let input = try space.floats(random.floats(n.input))
                let weight = try space.floats(random.floats(n.weight))
                let bias = withBias ? try space.floats(random.floats(s.outChannels)) : nil
                let output = try space.zeros(n.output)
                return KernelCase(kernel: .conv2dForward(Conv2DForwardParams(shape: s, input: input, weight: weight,
                                                                             bias: bias, output: output)), outputs: [output])
            }
            for (reference, vulkan) in outputs {
                expectClose(vulkan, reference, atol: Self.tolerance(s, span: s.inChannels * s.kernelHeight * s.kernelWidth),
                            rtol: 1e-4, "forward \(c.testDescription) bias \(withBias)")
            }
        }
    }

    @Test("backward data and filter match the reference", .enabled(if: Backends.hasVulkan), arguments: cases)
    func backward(_ c: Case) throws {
        let s = c.shape
        let n = Self.counts(s)
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(n.output + 5))
            let weight = try space.floats(random.floats(n.weight))
            let dOut = try space.floats(random.floats(n.output))
            let dIn = try space.zeros(n.input)
            return KernelCase(kernel: .conv2dBackwardData(Conv2DBackwardDataParams(shape: s, outputGradient: dOut, weight: weight,
                                                                                   inputGradient: dIn)),
                              outputs: [dIn])
        }
        for (reference, vulkan) in outputs {
            expectClose(vulkan, reference, atol: Self.tolerance(s, span: s.outChannels * s.kernelHeight * s.kernelWidth),
                        rtol: 1e-4, "backward data \(c.testDescription)")
        }
        let filter = try compareBackends { space in
            var random = TestRandom(seed: UInt64(n.output + 6))
            let input = try space.floats(random.floats(n.input))
            let dOut = try space.floats(random.floats(n.output))
            let dW = try space.zeros(n.weight)
            let dB = try space.zeros(s.outChannels)
            return KernelCase(kernel: .conv2dBackwardFilter(Conv2DBackwardFilterParams(shape: s, input: input, outputGradient: dOut,
                                                                                       weightGradient: dW, biasGradient: dB)),
                              outputs: [dW, dB])
        }
        let span = s.batch * s.outHeight * s.outWidth
        for (reference, vulkan) in filter {
            expectClose(vulkan, reference, atol: Self.tolerance(s, span: span), rtol: 1e-4, "backward filter \(c.testDescription)")
        }
    }

    @Test("reference forward by hand: 3x3 input, 2x2 filter, stride 1, pad 0")
    func referenceByHand() {
        let s = Conv2DShape(batch: 1, inChannels: 1, height: 3, width: 3, outChannels: 1, kernelHeight: 2, kernelWidth: 2)
        let out = CPUReference.conv2dForward(s, input: [1, 2, 3, 4, 5, 6, 7, 8, 9], weight: [1, 0, 0, -1], bias: [10])
        #expect(out == [6, 6, 6, 6])
    }

    /// The backward reference must be the exact adjoint of the forward one:
    /// <conv(x), dy> = <x, dL/dx(dy)> and <conv_w(x), dy> = <w, dL/dw(dy)>, bias gradient = sum of dy.
    @Test("reference backward passes are adjoints of the forward pass", arguments: cases)
    func referenceAdjoint(_ c: Case) {
        let s = c.shape
        let n = Self.counts(s)
        var random = TestRandom(seed: 99)
        let x = random.floats(n.input)
        let w = random.floats(n.weight)
        let dy = random.floats(n.output)
        func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
        let y = CPUReference.conv2dForward(s, input: x, weight: w, bias: nil)
        let dx = CPUReference.conv2dBackwardData(s, outputGradient: dy, weight: w)
        let (dw, db) = CPUReference.conv2dBackwardFilter(s, input: x, outputGradient: dy)
        let forward = dot(y, dy)
        #expect(abs(forward - dot(x, dx)) <= 1e-4 * max(1, abs(forward)), "data adjoint")
        #expect(abs(forward - dot(w, dw)) <= 1e-4 * max(1, abs(forward)), "filter adjoint")
        let perChannel = s.outHeight * s.outWidth
        for k in 0 ..< s.outChannels {
            var sum = 0.0
            for b in 0 ..< s.batch {
                let start = (b * s.outChannels + k) * perChannel
                sum += dy[start ..< start + perChannel].reduce(0.0) { $0 + Double($1) }
            }
            #expect(abs(Double(db[k]) - sum) <= 1e-4 * max(1, abs(sum)), "bias gradient channel \(k)")
        }
    }
}
