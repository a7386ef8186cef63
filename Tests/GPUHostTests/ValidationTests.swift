@testable import GPUHost
import Testing

/// Bad kernel descriptions are rejected with a typed error before anything runs, on every
/// backend, and never trap.
@Suite("Validation")
struct ValidationTests {
    /// Zero-size variants of every kernel, built against real buffers.
    static func zeroSizeKernels(_ r: BufferRange, _ u8: BufferRange, _ labels: BufferRange) -> [(String, Kernel)] {
        let conv = Conv2DShape(batch: 0, inChannels: 1, height: 3, width: 3, outChannels: 1, kernelHeight: 1, kernelWidth: 1)
        return [
            ("sgemm m", .sgemm(SGEMMParams(m: 0, n: 1, k: 1, a: r, b: r, c: r))),
            ("sgemm k", .sgemm(SGEMMParams(m: 1, n: 1, k: 0, a: r, b: r, c: r))),
            ("biasAdd", .biasAdd(BiasAddParams(outer: 1, channels: 0, data: r, bias: r))),
            ("activation", .activation(ActivationParams(activation: .gelu, count: 0, input: r, output: r))),
            ("activationBackward", .activationBackward(ActivationBackwardParams(activation: .relu, count: 0, input: r,
                                                                                  outputGradient: r, inputGradient: r))),
            ("softmax", .softmax(SoftmaxParams(rows: 1, columns: 0, input: r, output: r))),
            ("softmaxCrossEntropy", .softmaxCrossEntropy(SoftmaxCrossEntropyParams(rows: 0, classes: 3, logits: r, labels: labels,
                                                                                   loss: r, logitsGradient: r))),
            ("reduce", .reduce(ReduceParams(op: .sum, rows: 0, columns: 4, input: r, output: r))),
            ("axpy", .axpy(AxpyParams(count: 0, alpha: 1, x: r, y: r))),
            ("scale", .scale(ScaleParams(count: 0, alpha: 1, x: r))),
            ("conv2dForward", .conv2dForward(Conv2DForwardParams(shape: conv, input: r, weight: r, output: r))),
            ("conv2dBackwardData", .conv2dBackwardData(Conv2DBackwardDataParams(shape: conv, outputGradient: r, weight: r,
                                                                                inputGradient: r))),
            ("conv2dBackwardFilter", .conv2dBackwardFilter(Conv2DBackwardFilterParams(shape: conv, input: r, outputGradient: r,
                                                                                      weightGradient: r))),
            ("normalizeU8", .normalizeU8(NormalizeParams(batch: 1, height: 0, width: 2, input: u8, output: r))),
            ("crop", .crop(CropParams(batch: 1, channels: 1, height: 4, width: 4, top: 0, left: 0, outHeight: 0, outWidth: 2,
                                      input: r, output: r))),
            ("flipHorizontal", .flipHorizontal(FlipParams(batch: 1, channels: 1, height: 2, width: 0, input: r, output: r))),
            ("resizeBilinear", .resizeBilinear(ResizeParams(batch: 1, channels: 1, height: 2, width: 2, outHeight: 0, outWidth: 2,
                                                            input: r, output: r))),
            ("maxPool2DForward", .maxPool2DForward(MaxPool2DForwardParams(
                shape: MaxPool2DShape(batch: 0, channels: 1, height: 2, width: 2), input: r, output: r))),
            ("maxPool2DBackward", .maxPool2DBackward(MaxPool2DBackwardParams(
                shape: MaxPool2DShape(batch: 1, channels: 1, height: 0, width: 2), input: r, outputGradient: r,
                inputGradient: r))),
        ]
    }

    @Test("zero-size inputs are rejected cleanly by every kernel", arguments: Backends.all)
    func zeroSizes(_ backend: any ComputeBackend) throws {
        let space = Workspace(backend)
        let r = try space.zeros(64)
        let u8 = try space.bytes([UInt8](repeating: 0, count: 64))
        let labels = try space.uint32s([0, 0])
        for (label, kernel) in Self.zeroSizeKernels(r, u8, labels) {
            guard case let .invalidKernel(index, error)? = rejection(of: kernel, on: backend) else {
                Issue.record("\(label): not rejected")
                continue
            }
            #expect(index == 0)
            guard case .zeroDimension = error else {
                Issue.record("\(label): rejected as \(error), expected zeroDimension")
                continue
            }
        }
    }

    @Test("inconsistent shapes and ranges are rejected with the reason", arguments: Backends.all)
    func inconsistent(_ backend: any ComputeBackend) throws {
        let space = Workspace(backend)
        let a = try space.zeros(6)
        let b = try space.zeros(6)
        let c = try space.zeros(4)
        let id = c.buffer
        let cases: [(Kernel, (KernelValidationError) -> Bool)] = [
            // a is 6 elements, m*k = 2*4 = 8.
            (.sgemm(SGEMMParams(m: 2, n: 2, k: 4, a: a, b: b, c: c)), {
                if case .rangeCountMismatch(_, "a", 8, 6) = $0 { return true } else { return false } }),
            // A range reaching past its buffer.
            // The buffer holds 5 + 4 + 3 floats (guards included): 48 bytes.
            (.scale(ScaleParams(count: 4, alpha: 1, x: BufferRange(id, offset: 10, count: 4))), {
                if case .rangeOutOfBounds(_, "x", _, 56, 48) = $0 { return true } else { return false } }),
            (.scale(ScaleParams(count: 4, alpha: 1, x: BufferRange(id, offset: -1, count: 4))), {
                if case .negativeValue = $0 { return true } else { return false } }),
            (.scale(ScaleParams(count: 4, alpha: 1, x: BufferRange(BufferID(rawValue: 999_999), count: 4))), {
                if case .unknownBuffer(_, "x", _) = $0 { return true } else { return false } }),
            // Products that would overflow Int must not trap.
            (.sgemm(SGEMMParams(m: Int.max, n: Int.max, k: 2, a: a, b: b, c: c)), {
                if case .dimensionTooLarge = $0 { return true } else { return false } }),
            (.axpy(AxpyParams(count: 1 << 40, alpha: 1, x: a, y: b)), {
                if case .dimensionTooLarge = $0 { return true } else { return false } }),
            (.scale(ScaleParams(count: 4, alpha: .nan, x: c)), {
                if case .invalidParameter(_, "alpha", _) = $0 { return true } else { return false } }),
            // C may not alias A: the tiles would read partially written results.
            (.sgemm(SGEMMParams(m: 2, n: 2, k: 2, a: BufferRange(a.buffer, offset: a.offset, count: 4), b: c,
                                c: BufferRange(a.buffer, offset: a.offset, count: 4))), {
                if case .overlappingOperands(_, "a", "c") = $0 { return true } else { return false } }),
            // Overlapping but not identical pointwise ranges are still a race.
            (.activation(ActivationParams(activation: .relu, count: 4, input: BufferRange(a.buffer, offset: a.offset, count: 4),
                                          output: BufferRange(a.buffer, offset: a.offset + 1, count: 4))), {
                if case .overlappingOperands = $0 { return true } else { return false } }),
            (.conv2dForward(Conv2DForwardParams(
                shape: Conv2DShape(batch: 1, inChannels: 1, height: 2, width: 2, outChannels: 1, kernelHeight: 3, kernelWidth: 1),
                input: BufferRange(a.buffer, offset: a.offset, count: 4), weight: b, output: c)), {
                if case .invalidParameter(_, "kernelHeight", _) = $0 { return true } else { return false } }),
            (.conv2dForward(Conv2DForwardParams(
                shape: Conv2DShape(batch: 1, inChannels: 1, height: 2, width: 2, outChannels: 1, kernelHeight: 1, kernelWidth: 1,
                                   strideY: 0),
                input: BufferRange(a.buffer, offset: a.offset, count: 4), weight: b, output: c)), {
                if case .zeroDimension(_, "strideY") = $0 { return true } else { return false } }),
            (.crop(CropParams(batch: 1, channels: 1, height: 2, width: 3, top: 1, left: 0, outHeight: 2, outWidth: 2,
                              input: a, output: c)), {
                if case .invalidParameter(_, "top+outHeight", _) = $0 { return true } else { return false } }),
            // Per-image offsets replace top and left.
            (.crop(CropParams(batch: 1, channels: 1, height: 2, width: 3, top: 1, left: 0, outHeight: 1, outWidth: 2,
                              offsets: BufferRange(b.buffer, offset: b.offset, count: 3),
                              input: BufferRange(a.buffer, offset: a.offset, count: 6),
                              output: BufferRange(c.buffer, offset: c.offset, count: 2))), {
                if case .invalidParameter(_, "top/left", _) = $0 { return true } else { return false } }),
            // Padding widens the window's room by 2*padding, and no further.
            (.crop(CropParams(batch: 1, channels: 1, height: 2, width: 3, top: 0, left: 4, outHeight: 2, outWidth: 2,
                              padding: 1, input: BufferRange(a.buffer, offset: a.offset, count: 6), output: c)), {
                if case .invalidParameter(_, "left+outWidth", _) = $0 { return true } else { return false } }),
            (.crop(CropParams(batch: 1, channels: 1, height: 2, width: 3, top: 0, left: 0, outHeight: 2, outWidth: 2,
                              padding: CropParams.maxPadding + 1, input: BufferRange(a.buffer, offset: a.offset, count: 6),
                              output: c)), {
                if case .invalidParameter(_, "padding", _) = $0 { return true } else { return false } }),
            (.crop(CropParams(batch: 1, channels: 1, height: 2, width: 3, top: 0, left: 0, outHeight: 2, outWidth: 2,
                              padding: 1, padValue: .nan, input: BufferRange(a.buffer, offset: a.offset, count: 6), output: c)), {
                if case .invalidParameter(_, "padValue", _) = $0 { return true } else { return false } }),
            (.normalizeU8(NormalizeParams(batch: 1, height: 1, width: 1, channels: 5, input: a, output: c)), {
                if case .invalidParameter(_, "channels", _) = $0 { return true } else { return false } }),
            (.normalizeU8(NormalizeParams(batch: 1, height: 1, width: 2, channels: 2, mean: [0, 0], std: [1, 0],
                                          input: BufferRange(a.buffer, offset: 0, count: 4), output: c)), {
                if case .invalidParameter(_, "std[1]", _) = $0 { return true } else { return false } }),
        ]
        for (index, (kernel, matches)) in cases.enumerated() {
            guard case let .invalidKernel(_, error)? = rejection(of: kernel, on: backend) else {
                Issue.record("case \(index) (\(kernel.name)) was not rejected")
                continue
            }
            #expect(matches(error), "case \(index): unexpected \(error)")
        }
    }

    @Test("a batch with one bad kernel runs none of it", arguments: Backends.all)
    func atomicBatches(_ backend: any ComputeBackend) throws {
        let space = Workspace(backend)
        let x = try space.floats([1, 2, 3])
        let batch = CommandBatch([
            .scale(ScaleParams(count: 3, alpha: 10, x: x)),
            .scale(ScaleParams(count: 4, alpha: 10, x: x)),
        ])
        do {
            _ = try backend.run(batch)
            Issue.record("batch was accepted")
        } catch {
            guard case .invalidKernel(1, .rangeCountMismatch) = error else {
                Issue.record("unexpected \(error)")
                return
            }
        }
        #expect(try space.read(x) == [1, 2, 3])
    }

    @Test("buffer API rejects bad sizes, ids and accesses", arguments: Backends.all)
    func bufferErrors(_ backend: any ComputeBackend) throws {
        #expect(throws: GPUError.invalidBufferSize(requested: 0, limit: Int(backend.device.maxStorageBufferRange))) {
            try backend.createBuffer(byteCount: 0, placement: .deviceLocal)
        }
        #expect(throws: GPUError.self) { try backend.createBuffer(byteCount: -5, placement: .hostVisible) }
        let id = try backend.createBuffer(byteCount: 16, placement: .hostVisible)
        #expect(try backend.readFloats(id, count: 4) == [0, 0, 0, 0], "new buffers are zeroed")
        #expect(throws: GPUError.bufferAccessOutOfBounds(id, byteOffset: 8, byteCount: 12, capacity: 16)) {
            try backend.write(floats: [1, 2, 3], to: id, offset: 2)
        }
        #expect(throws: GPUError.self) { try backend.readFloats(id, offset: 0, count: Int.max / 2) }
        try backend.destroyBuffer(id)
        #expect(throws: GPUError.unknownBuffer(id)) { try backend.readFloats(id, count: 1) }
        #expect(throws: GPUError.unknownBuffer(id)) { try backend.destroyBuffer(id) }
        let unknown = SubmissionID(rawValue: 424_242)
        #expect(throws: GPUError.unknownSubmission(unknown)) { try backend.wait(unknown, timeoutNanoseconds: 0) }
        #expect(throws: GPUError.unknownSubmission(unknown)) { try backend.isComplete(unknown) }
    }
}
