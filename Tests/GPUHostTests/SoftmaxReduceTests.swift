@testable import GPUHost
import Testing

@Suite("Softmax, cross-entropy and reductions")
struct SoftmaxReduceTests {
    static let shapes = [(1, 1), (1, 7), (7, 33), (33, 1000), (1000, 7), (3, 4097)]

    @Test("softmax matches the reference", .enabled(if: Backends.hasVulkan), arguments: shapes)
    func softmax(_ shape: (Int, Int)) throws {
        let (rows, columns) = shape
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(rows * 7919 + columns))
            let x = try space.floats(random.floats(rows * columns, in: -20 ... 20))
            let y = try space.zeros(rows * columns)
            return KernelCase(kernel: .softmax(SoftmaxParams(rows: rows, columns: columns, input: x, output: y)), outputs: [y])
        }
        for (reference, vulkan) in outputs {
            expectClose(vulkan, reference, atol: 1e-7, rtol: 1e-4, "softmax \(shape)")
        }
    }

    @Test("softmax cross-entropy loss and gradient match the reference", .enabled(if: Backends.hasVulkan), arguments: shapes)
    func crossEntropy(_ shape: (Int, Int)) throws {
        let (rows, classes) = shape
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(rows * 31 + classes))
            let logits = try space.floats(random.floats(rows * classes, in: -8 ... 8))
            let labels = try space.uint32s((0 ..< rows).map { _ in UInt32(random.next() % UInt64(classes)) })
            let loss = try space.zeros(rows)
            let gradient = try space.zeros(rows * classes)
            return KernelCase(kernel: .softmaxCrossEntropy(SoftmaxCrossEntropyParams(
                rows: rows, classes: classes, logits: logits, labels: labels, loss: loss, logitsGradient: gradient)),
                              outputs: [loss, gradient])
        }
        // Loss is logsumexp minus a logit: absolute error tracks the logits' magnitude.
        if outputs.count == 2 {
            expectClose(outputs[0].vulkan, outputs[0].reference, atol: 1e-5, rtol: 1e-5, "cross-entropy loss \(shape)")
            expectClose(outputs[1].vulkan, outputs[1].reference, atol: 1e-8, rtol: 1e-4, "cross-entropy gradient \(shape)")
        }
    }

    @Test("reference cross-entropy: hand value and finite-difference gradient")
    func referenceCrossEntropy() {
        let logits: [Float] = [1, 2, 3, 0.5, -1, 0]
        let params = SoftmaxCrossEntropyParams(rows: 2, classes: 3, logits: dummy, labels: dummy, loss: dummy,
                                               logitsGradient: dummy, gradientScale: 1)
        let (loss, gradient) = CPUReference.softmaxCrossEntropy(params, logits: logits, labels: [2, 0])
        // -log softmax([1,2,3])[2] = log(e^1 + e^2 + e^3) - 3 = 0.4076059
        expectClose([loss[0]], [0.4076059], atol: 1e-6, rtol: 0, "hand loss")
        let h: Float = 1e-2
        for i in logits.indices {
            var plus = logits, minus = logits
            plus[i] += h
            minus[i] -= h
            let lossPlus = CPUReference.softmaxCrossEntropy(params, logits: plus, labels: [2, 0]).loss.reduce(0, +)
            let lossMinus = CPUReference.softmaxCrossEntropy(params, logits: minus, labels: [2, 0]).loss.reduce(0, +)
            expectClose([gradient[i]], [(lossPlus - lossMinus) / (2 * h)], atol: 1e-3, rtol: 1e-3, "dL/dlogit[\(i)]")
        }
    }

    @Test("an out-of-range label gives a NaN loss, never an out-of-bounds read", arguments: Backends.all)
    func invalidLabel(_ backend: any ComputeBackend) throws {
        let space = Workspace(backend)
        let logits = try space.floats([0, 0, 0, 0])
        let labels = try space.uint32s([1, 99])
        let loss = try space.zeros(2)
        let gradient = try space.zeros(4)
        try backend.run(.softmaxCrossEntropy(SoftmaxCrossEntropyParams(
            rows: 2, classes: 2, logits: logits, labels: labels, loss: loss, logitsGradient: gradient, gradientScale: 1)))
        let losses = try space.read(loss)
        expectClose([losses[0]], [0.6931472], atol: 1e-6, rtol: 0, "valid row")
        #expect(losses[1].isNaN)
        #expect(try space.read(gradient) == [0.5, -0.5, 0.5, 0.5])
    }

    @Test("reductions match the reference", .enabled(if: Backends.hasVulkan),
          arguments: ReductionOp.allCases, ReductionAxis.allCases)
    func reduce(_ op: ReductionOp, _ axis: ReductionAxis) throws {
        for (rows, columns) in Self.shapes {
            let outputs = try compareBackends { space in
                var random = TestRandom(seed: UInt64(rows + columns))
                let x = try space.floats(random.floats(rows * columns))
                let y = try space.zeros(axis == .perRow ? rows : columns)
                return KernelCase(kernel: .reduce(ReduceParams(op: op, axis: axis, rows: rows, columns: columns,
                                                               input: x, output: y)), outputs: [y])
            }
            let span = Float(axis == .perRow ? columns : rows)
            for (reference, vulkan) in outputs {
                expectClose(vulkan, reference, atol: 1e-6 * span, rtol: 1e-5, "\(op) \(axis) \(rows)x\(columns)")
            }
        }
    }

    @Test("reference reductions by hand")
    func reduceByHand() {
        let m: [Float] = [1, -2, 3, 4, 5, -6]
        func run(_ op: ReductionOp, _ axis: ReductionAxis) -> [Float] {
            CPUReference.reduce(ReduceParams(op: op, axis: axis, rows: 2, columns: 3, input: dummy, output: dummy), input: m)
        }
        #expect(run(.sum, .perRow) == [2, 3])
        #expect(run(.max, .perRow) == [3, 5])
        #expect(run(.sum, .perColumn) == [5, 3, -3])
        #expect(run(.max, .perColumn) == [4, 5, 3])
    }
}
