@testable import GPUHost
import Testing

/// MAXPOOL2D forward and backward: the CPU reference computes the documented rule (first
/// maximum in row-major order, gradient to it, 0 elsewhere), Vulkan equals it bit for bit
/// (a max and a copy round nothing), and malformed descriptions are refused by validation.
@Suite("MaxPool2D")
struct MaxPool2DTests {
    static let shapes: [MaxPool2DShape] = [
        MaxPool2DShape(batch: 1, channels: 1, height: 2, width: 2),
        MaxPool2DShape(batch: 2, channels: 3, height: 8, width: 8),
        // Odd sides: the last row and column belong to no window.
        MaxPool2DShape(batch: 3, channels: 2, height: 7, width: 9),
        MaxPool2DShape(batch: 1, channels: 5, height: 48, width: 48),
        MaxPool2DShape(batch: 4, channels: 16, height: 24, width: 24),
    ]

    static func counts(_ s: MaxPool2DShape) -> (input: Int, output: Int) {
        (s.batch * s.channels * s.height * s.width, s.batch * s.channels * s.outHeight * s.outWidth)
    }

    /// Values from a small set, so many windows hold ties (the case the rule decides).
    static func tiedValues(_ count: Int, seed: UInt64) -> [Float] {
        var random = TestRandom(seed: seed)
        return random.floats(count).map { ($0 * 2).rounded() / 2 }
    }

    @Test("the reference takes the first maximum and routes the gradient to it")
    func referenceRule() {
        // One 2x3 plane (the last column outside every window): window (0,1) = 5, 5 at
        // (0,0) and (0,1): the first wins.
        let s = MaxPool2DShape(batch: 1, channels: 1, height: 2, width: 3)
        let input: [Float] = [5, 5, 9,
                              1, 4, 9]
        #expect(CPUReference.maxPool2DForward(s, input: input) == [5])
        #expect(CPUReference.maxPool2DBackward(s, input: input, outputGradient: [7]) == [7, 0, 0, 0, 0, 0])
        // All four equal: the first. The last strictly greatest: the last.
        let square = MaxPool2DShape(batch: 1, channels: 2, height: 2, width: 2)
        #expect(CPUReference.maxPool2DBackward(square, input: [3, 3, 3, 3, -1, -2, -3, 0],
                                               outputGradient: [1, 2]) == [1, 0, 0, 0, 0, 0, 0, 2])
        #expect(CPUReference.maxPool2DForward(square, input: [3, 3, 3, 3, -1, -2, -3, 0]) == [3, 0])
    }

    @Test("Vulkan forward equals the reference", .enabled(if: Backends.hasVulkan),
          arguments: shapes)
    func forward(_ s: MaxPool2DShape) throws {
        let n = Self.counts(s)
        let outputs = try compareBackends { space in
            let input = try space.floats(Self.tiedValues(n.input, seed: UInt64(n.input)))
            let output = try space.zeros(n.output)
            return KernelCase(kernel: .maxPool2DForward(MaxPool2DForwardParams(shape: s, input: input, output: output)),
                              outputs: [output])
        }
        for (reference, vulkan) in outputs {
            #expect(vulkan == reference, "forward \(s)")
        }
    }

    @Test("Vulkan backward equals the reference", .enabled(if: Backends.hasVulkan),
          arguments: shapes)
    func backward(_ s: MaxPool2DShape) throws {
        let n = Self.counts(s)
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(n.output + 3))
            let input = try space.floats(Self.tiedValues(n.input, seed: UInt64(n.input)))
            let outputGradient = try space.floats(random.floats(n.output))
            // Not zeros: every element must be written, 0 where no gradient goes.
            let inputGradient = try space.floats([Float](repeating: 42, count: n.input))
            return KernelCase(kernel: .maxPool2DBackward(MaxPool2DBackwardParams(
                shape: s, input: input, outputGradient: outputGradient, inputGradient: inputGradient)),
                outputs: [inputGradient])
        }
        for (reference, vulkan) in outputs {
            #expect(vulkan == reference, "backward \(s)")
            #expect(!reference.contains(42), "backward \(s): an element was left unwritten")
        }
    }

    @Test("malformed descriptions are refused with the reason", arguments: Backends.all)
    func malformed(_ backend: any ComputeBackend) throws {
        let space = Workspace(backend)
        let a = try space.zeros(16)
        let b = try space.zeros(4)
        let c = try space.zeros(16)
        func shape(_ n: Int, _ ch: Int, _ h: Int, _ w: Int) -> MaxPool2DShape {
            MaxPool2DShape(batch: n, channels: ch, height: h, width: w)
        }
        let cases: [(String, Kernel, (KernelValidationError) -> Bool, String)] = [
            ("a side shorter than the window",
             .maxPool2DForward(MaxPool2DForwardParams(shape: shape(1, 1, 1, 16), input: a, output: b)),
             { if case .invalidParameter(_, "height", _) = $0 { return true } else { return false } },
             "is smaller than the 2x2 window"),
            ("width 1",
             .maxPool2DBackward(MaxPool2DBackwardParams(shape: shape(1, 1, 16, 1), input: a, outputGradient: b,
                                                        inputGradient: c)),
             { if case .invalidParameter(_, "width", _) = $0 { return true } else { return false } }, "width"),
            ("zero channels",
             .maxPool2DForward(MaxPool2DForwardParams(shape: shape(1, 0, 4, 4), input: a, output: b)),
             { if case .zeroDimension(_, "channels") = $0 { return true } else { return false } }, "channels"),
            ("a negative batch",
             .maxPool2DForward(MaxPool2DForwardParams(shape: shape(-1, 1, 4, 4), input: a, output: b)),
             { if case .negativeValue(_, "batch", -1) = $0 { return true } else { return false } }, "batch"),
            // Products past 2^31 (and past Int) must be errors, never traps.
            ("an overflowing product",
             .maxPool2DForward(MaxPool2DForwardParams(shape: shape(Int(Int32.max), Int(Int32.max), 4, 4), input: a, output: b)),
             { if case .dimensionTooLarge = $0 { return true } else { return false } }, "batch*channels*height*width"),
            ("an output range of the wrong size",
             .maxPool2DForward(MaxPool2DForwardParams(shape: shape(1, 1, 4, 4), input: a, output: c)),
             { if case .rangeCountMismatch(_, "output", 4, 16) = $0 { return true } else { return false } }, "output"),
            ("a range past its buffer",
             .maxPool2DForward(MaxPool2DForwardParams(shape: shape(1, 1, 4, 4),
                                                      input: BufferRange(a.buffer, offset: a.offset + 100, count: 16), output: b)),
             { if case .rangeOutOfBounds(_, "input", _, _, _) = $0 { return true } else { return false } }, "input"),
            ("the gradient written over the input it reads",
             .maxPool2DBackward(MaxPool2DBackwardParams(shape: shape(1, 1, 4, 4), input: a, outputGradient: b,
                                                        inputGradient: a)),
             { if case .overlappingOperands = $0 { return true } else { return false } }, "inputGradient"),
        ]
        for (what, kernel, matches, phrase) in cases {
            guard case let .invalidKernel(_, error)? = rejection(of: kernel, on: backend) else {
                Issue.record("\(what): not rejected")
                continue
            }
            #expect(matches(error), "\(what): unexpected \(error)")
            #expect("\(error)".contains(phrase), "\(what): '\(error)' does not say '\(phrase)'")
        }
    }
}
