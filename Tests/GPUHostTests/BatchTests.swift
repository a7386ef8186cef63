@testable import GPUHost
import Testing

@Suite("Batches, barriers and timing")
struct BatchTests {
    /// One SGD step of a two-layer MLP (forward, loss, backward, update), as a guest would
    /// submit it: 14 kernels in one batch, dependent through shared buffers.
    static func trainingStep(_ space: Workspace, seed: UInt64) throws -> (batch: CommandBatch, outputs: [BufferRange]) {
        let (batch, features, hidden, classes) = (8, 33, 16, 7)
        var random = TestRandom(seed: seed)
        let x = try space.floats(random.floats(batch * features))
        let labels = try space.uint32s((0 ..< batch).map { UInt32($0 % classes) })
        let w1 = try space.floats(random.floats(features * hidden, in: -0.3 ... 0.3))
        let b1 = try space.floats(random.floats(hidden))
        let w2 = try space.floats(random.floats(hidden * classes, in: -0.3 ... 0.3))
        let b2 = try space.floats(random.floats(classes))
        let pre = try space.zeros(batch * hidden)
        let act = try space.zeros(batch * hidden)
        let logits = try space.zeros(batch * classes)
        let loss = try space.zeros(batch)
        let dLogits = try space.zeros(batch * classes)
        let dW2 = try space.zeros(hidden * classes)
        let dB2 = try space.zeros(classes)
        let dAct = try space.zeros(batch * hidden)
        let dPre = try space.zeros(batch * hidden)
        let dW1 = try space.zeros(features * hidden)
        let dB1 = try space.zeros(hidden)
        let lr: Float = -0.1
        let kernels: [Kernel] = [
            .sgemm(SGEMMParams(m: batch, n: hidden, k: features, a: x, b: w1, c: pre)),
            .biasAdd(BiasAddParams(outer: batch, channels: hidden, data: pre, bias: b1)),
            .activation(ActivationParams(activation: .gelu, count: batch * hidden, input: pre, output: act)),
            .sgemm(SGEMMParams(m: batch, n: classes, k: hidden, a: act, b: w2, c: logits)),
            .biasAdd(BiasAddParams(outer: batch, channels: classes, data: logits, bias: b2)),
            .softmaxCrossEntropy(SoftmaxCrossEntropyParams(rows: batch, classes: classes, logits: logits, labels: labels,
                                                           loss: loss, logitsGradient: dLogits)),
            .sgemm(SGEMMParams(m: hidden, n: classes, k: batch, transposeA: true, a: act, b: dLogits, c: dW2)),
            .reduce(ReduceParams(op: .sum, axis: .perColumn, rows: batch, columns: classes, input: dLogits, output: dB2)),
            .sgemm(SGEMMParams(m: batch, n: hidden, k: classes, transposeB: true, a: dLogits, b: w2, c: dAct)),
            .activationBackward(ActivationBackwardParams(activation: .gelu, count: batch * hidden, input: pre,
                                                         outputGradient: dAct, inputGradient: dPre)),
            .sgemm(SGEMMParams(m: features, n: hidden, k: batch, transposeA: true, a: x, b: dPre, c: dW1)),
            .reduce(ReduceParams(op: .sum, axis: .perColumn, rows: batch, columns: hidden, input: dPre, output: dB1)),
            .axpy(AxpyParams(count: hidden * classes, alpha: lr, x: dW2, y: w2)),
            .axpy(AxpyParams(count: features * hidden, alpha: lr, x: dW1, y: w1)),
        ]
        return (CommandBatch(kernels), [loss, w1, b1, w2, b2, dW1, dB2])
    }

    @Test("a whole training step in one batch matches the reference", .enabled(if: Backends.hasVulkan))
    func trainingStepMatches() throws {
        let vulkan = try #require(Backends.vulkan)
        let cpuSpace = Workspace(Backends.cpu)
        let gpuSpace = Workspace(vulkan)
        let cpuStep = try Self.trainingStep(cpuSpace, seed: 7)
        let gpuStep = try Self.trainingStep(gpuSpace, seed: 7)
        try Backends.cpu.run(cpuStep.batch)
        let completion = try vulkan.run(gpuStep.batch)
        #expect(completion.kernelCount == 14)
        #expect(completion.dispatchCount == 14)
        #expect(completion.barrierCount > 0 && completion.barrierCount < 14)
        for (cpuRange, gpuRange) in zip(cpuStep.outputs, gpuStep.outputs) {
            expectClose(try gpuSpace.read(gpuRange), try cpuSpace.read(cpuRange), atol: 1e-5, rtol: 1e-4, "training step output")
        }
        #expect(try gpuSpace.guardsIntact())
    }

    @Test("barriers separate dependent dispatches only", .enabled(if: Backends.hasVulkan))
    func barrierPlacement() throws {
        let vulkan = try #require(Backends.vulkan)
        let space = Workspace(vulkan)
        let xs = try (0 ..< 4).map { _ in try space.floats([1, 2, 3, 4]) }
        // Four independent in-place scales: no barrier.
        let independent = try vulkan.run(CommandBatch(xs.map { .scale(ScaleParams(count: 4, alpha: 2, x: $0)) }))
        #expect(independent.barrierCount == 0)
        // A chain on one buffer: a barrier before every dispatch but the first.
        let chain = try vulkan.run(CommandBatch((0 ..< 5).map { _ in .scale(ScaleParams(count: 4, alpha: 2, x: xs[0])) }))
        #expect(chain.barrierCount == 4)
        #expect(try space.read(xs[0]) == [64, 128, 192, 256])
        // Disjoint halves of one buffer do not serialise.
        let whole = try space.zeros(8)
        let halves = [BufferRange(whole.buffer, offset: whole.offset, count: 4),
                      BufferRange(whole.buffer, offset: whole.offset + 4, count: 4)]
        let disjoint = try vulkan.run(CommandBatch(halves.map { .axpy(AxpyParams(count: 4, alpha: 1, x: xs[1], y: $0)) }))
        #expect(disjoint.barrierCount == 0)
        #expect(try space.read(whole) == [2, 4, 6, 8, 2, 4, 6, 8])
    }

    @Test("barrier planner: RAW, WAR and WAW need a barrier; read after read does not")
    func plannerRules() {
        let a = BufferID(rawValue: 1)
        func op(_ access: KernelOperand.Access, _ offset: Int, _ count: Int) -> KernelOperand {
            KernelOperand(name: "x", range: BufferRange(a, offset: offset, count: count), access: access,
                          expectedCount: count, pointwise: true)
        }
        var planner = BarrierPlanner()
        let needed = [
            planner.admit([op(.read, 0, 4)]),
            planner.admit([op(.read, 0, 4)]),   // read after read
            planner.admit([op(.write, 2, 4)]),  // write after read
            planner.admit([op(.read, 5, 1)]),   // read after write
            planner.admit([op(.write, 8, 4)]),  // disjoint write
            planner.admit([op(.write, 11, 1)]), // write after write
        ]
        #expect(needed == [false, false, true, true, false, true])
    }

    @Test("Vulkan batches report GPU time from device timestamps", .enabled(if: Backends.hasVulkan))
    func timestamps() throws {
        let vulkan = try #require(Backends.vulkan)
        let space = Workspace(vulkan)
        var random = TestRandom(seed: 1)
        let a = try space.floats(random.floats(128 * 128))
        let c = try space.zeros(128 * 128)
        let id = try vulkan.submit(CommandBatch([.sgemm(SGEMMParams(m: 128, n: 128, k: 128, a: a, b: a, c: c))]))
        let completion = try vulkan.wait(id, timeoutNanoseconds: .max)
        #expect(completion.submission == id)
        if vulkan.device.timestampPeriod != nil {
            #expect(completion.timing == .deviceTimestamps)
            #expect(completion.executionNanoseconds != nil)
        } else {
            #expect(completion.timing == .unavailable)
        }
        #expect(throws: GPUError.unknownSubmission(id)) { try vulkan.wait(id, timeoutNanoseconds: 0) }
    }

    @Test("submissions in flight complete in order and can be polled", arguments: Backends.all)
    func manyInFlight(_ backend: any ComputeBackend) throws {
        let space = Workspace(backend)
        let x = try space.floats([1])
        let ids = try (0 ..< 10).map { _ in try backend.submit(CommandBatch([.scale(ScaleParams(count: 1, alpha: 2, x: x))])) }
        #expect(Set(ids).count == 10)
        for id in ids.reversed() {
            _ = try backend.isComplete(id)
            _ = try backend.wait(id, timeoutNanoseconds: .max)
        }
        #expect(try space.read(x) == [1024])
    }

    @Test("an empty batch completes", arguments: Backends.all)
    func emptyBatch(_ backend: any ComputeBackend) throws {
        let completion = try backend.run(CommandBatch())
        #expect(completion.kernelCount == 0 && completion.dispatchCount == 0)
    }

    @Test("a buffer destroyed while its batch is in flight stays valid until the batch retires", arguments: Backends.all)
    func destroyWhileInFlight(_ backend: any ComputeBackend) throws {
        let x = try backend.makeBuffer(floats: [Float](repeating: 1, count: 4096))
        let id = try backend.submit(CommandBatch([.scale(ScaleParams(count: 4096, alpha: 3, x: BufferRange(x, count: 4096)))]))
        try backend.destroyBuffer(x)
        _ = try backend.wait(id, timeoutNanoseconds: .max)
        #expect(backend.capacity(of: x) == nil)
    }

    @Test("host-visible and device-local buffers behave the same", arguments: Backends.all, MemoryPlacement.allCases)
    func placements(_ backend: any ComputeBackend, _ placement: MemoryPlacement) throws {
        let space = Workspace(backend)
        let x = try space.floats([1, -2, 3], placement: placement)
        let y = try space.zeros(3, placement: placement)
        try backend.run(.activation(ActivationParams(activation: .relu, count: 3, input: x, output: y)))
        #expect(try space.read(y) == [1, 0, 3])
        try backend.write(floats: [9], to: y.buffer, offset: y.offset + 1)
        #expect(try space.read(y) == [1, 9, 3])
        #expect(try space.guardsIntact())
    }
}
