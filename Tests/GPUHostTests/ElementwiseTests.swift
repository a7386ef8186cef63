@testable import GPUHost
import Testing

@Suite("Elementwise kernels")
struct ElementwiseTests {
    static let sizes = [1, 7, 33, 1000, 70_001]

    @Test("activations match the reference", .enabled(if: Backends.hasVulkan),
          arguments: Activation.allCases, sizes)
    func activation(_ activation: Activation, _ count: Int) throws {
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(count))
            let x = try space.floats(random.floats(count, in: -6 ... 6))
            let y = try space.zeros(count)
            return KernelCase(kernel: .activation(ActivationParams(activation: activation, count: count, input: x, output: y)),
                              outputs: [y])
        }
        // GPU tanh is single precision; the reference is evaluated in Double.
        for (reference, vulkan) in outputs {
            expectClose(vulkan, reference, atol: 2e-6, rtol: 1e-5, "\(activation) forward, \(count)")
        }
    }

    @Test("activation gradients match the reference", .enabled(if: Backends.hasVulkan),
          arguments: Activation.allCases, sizes)
    func activationBackward(_ activation: Activation, _ count: Int) throws {
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(count) + 17)
            let x = try space.floats(random.floats(count, in: -6 ... 6))
            let dy = try space.floats(random.floats(count))
            let dx = try space.zeros(count)
            return KernelCase(kernel: .activationBackward(ActivationBackwardParams(
                activation: activation, count: count, input: x, outputGradient: dy, inputGradient: dx)), outputs: [dx])
        }
        for (reference, vulkan) in outputs {
            expectClose(vulkan, reference, atol: 2e-6, rtol: 1e-5, "\(activation) backward, \(count)")
        }
    }

    @Test("reference activations: known values and finite-difference gradients")
    func referenceActivations() {
        let xs: [Float] = [-3, -1, -0.5, 0, 0.5, 1, 3]
        let relu = CPUReference.activation(ActivationParams(activation: .relu, count: 7, input: dummy, output: dummy), input: xs)
        #expect(relu == [0, 0, 0, 0, 0.5, 1, 3])
        let gelu = CPUReference.activation(ActivationParams(activation: .gelu, count: 7, input: dummy, output: dummy), input: xs)
        // PyTorch gelu(approximate="tanh") values.
        expectClose(gelu, [-0.0036373, -0.1588080, -0.1542859, 0, 0.3457141, 0.8411920, 2.9963627],
                    atol: 1e-6, rtol: 1e-5, "gelu known values")
        for activation in Activation.allCases {
            let probe: [Float] = [-2.5, -0.7, 0.3, 1.9]
            let ones = [Float](repeating: 1, count: probe.count)
            let analytic = CPUReference.activationBackward(
                ActivationBackwardParams(activation: activation, count: probe.count, input: dummy, outputGradient: dummy,
                                         inputGradient: dummy), input: probe, outputGradient: ones)
            let h: Float = 1e-3
            let params = ActivationParams(activation: activation, count: probe.count, input: dummy, output: dummy)
            let plus = CPUReference.activation(params, input: probe.map { $0 + h })
            let minus = CPUReference.activation(params, input: probe.map { $0 - h })
            let numeric = zip(plus, minus).map { ($0 - $1) / (2 * h) }
            expectClose(analytic, numeric, atol: 1e-3, rtol: 1e-3, "\(activation) gradient vs finite difference")
        }
    }

    @Test("activation runs in place", arguments: Backends.all)
    func inPlace(_ backend: any ComputeBackend) throws {
        let space = Workspace(backend)
        let x = try space.floats([-1, 2, -3, 4])
        try backend.run(.activation(ActivationParams(activation: .relu, count: 4, input: x, output: x)))
        #expect(try space.read(x) == [0, 2, 0, 4])
    }

    @Test("bias add over (outer, channels, inner) matches the reference", .enabled(if: Backends.hasVulkan),
          arguments: [(1, 1, 1), (7, 33, 1), (1000, 7, 1), (3, 7, 33), (2, 33, 1000)])
    func biasAdd(_ shape: (Int, Int, Int)) throws {
        let (outer, channels, inner) = shape
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(outer * channels * inner))
            let data = try space.floats(random.floats(outer * channels * inner))
            let bias = try space.floats(random.floats(channels))
            return KernelCase(kernel: .biasAdd(BiasAddParams(outer: outer, channels: channels, inner: inner,
                                                             data: data, bias: bias)), outputs: [data])
        }
        for (reference, vulkan) in outputs {
            expectClose(vulkan, reference, atol: 0, rtol: 0, "biasAdd \(shape)")
        }
    }

    @Test("reference bias add by hand")
    func biasAddByHand() throws {
        let space = Workspace(Backends.cpu)
        let data = try space.floats([0, 0, 0, 0, 0, 0, 0, 0])
        let bias = try space.floats([1, 2])
        try Backends.cpu.run(.biasAdd(BiasAddParams(outer: 2, channels: 2, inner: 2, data: data, bias: bias)))
        #expect(try space.read(data) == [1, 1, 2, 2, 1, 1, 2, 2])
    }

    @Test("axpy (SGD step) and scale match the reference", .enabled(if: Backends.hasVulkan), arguments: sizes)
    func axpyAndScale(_ count: Int) throws {
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(count) * 3)
            let weights = try space.floats(random.floats(count))
            let gradient = try space.floats(random.floats(count))
            let momentum = try space.floats(random.floats(count))
            return KernelCase(kernel: .axpy(AxpyParams(count: count, alpha: -0.01, x: gradient, y: weights)),
                              outputs: [weights, momentum])
        }
        for (reference, vulkan) in outputs {
            expectClose(vulkan, reference, atol: 1e-7, rtol: 1e-6, "axpy \(count)")
        }
        let scaled = try compareBackends { space in
            var random = TestRandom(seed: UInt64(count) * 5)
            let x = try space.floats(random.floats(count))
            return KernelCase(kernel: .scale(ScaleParams(count: count, alpha: 0.9, x: x)), outputs: [x])
        }
        for (reference, vulkan) in scaled {
            expectClose(vulkan, reference, atol: 0, rtol: 0, "scale \(count)")
        }
    }

    @Test("reference SGD step by hand", arguments: Backends.all)
    func sgdByHand(_ backend: any ComputeBackend) throws {
        let space = Workspace(backend)
        let w = try space.floats([1, 2, 3])
        let g = try space.floats([10, -10, 0])
        try backend.run(.axpy(AxpyParams(count: 3, alpha: -0.5, x: g, y: w)), .scale(ScaleParams(count: 3, alpha: 2, x: w)))
        #expect(try space.read(w) == [-8, 14, 6])
    }
}

/// A placeholder range for calling reference functions directly (they take arrays).
let dummy = BufferRange(BufferID(rawValue: 0), count: 0)
