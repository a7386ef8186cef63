@testable import VGPUCore
import GPUHost
import Testing
@testable import VirtioGPU

/// The command stream decoder on its own: every opcode's layout, and random corruption of
/// valid streams (the decoder is a guest-facing parser: it must refuse, never trap).
@Suite struct ComputeStreamTests {
    /// Resource n is buffer n; any range inside 1 MiB is accepted.
    static func resolve(_ ref: ComputeReference, _ element: ElementType, _ command: Int,
                        _ operand: String) throws(ComputeStreamError) -> BufferRange {
        guard ref.resourceID != 0 else { throw .invalidResource(command: command, operand: operand, resourceID: 0) }
        let size = UInt64(element.byteSize)
        guard ref.length > 0, ref.offset % size == 0, UInt64(ref.length) % size == 0,
              ref.offset <= 1 << 20, UInt64(ref.length) <= 1 << 20 else {
            throw .badReference(command: command, operand: operand, reason: "test bounds")
        }
        return BufferRange(BufferID(rawValue: UInt64(ref.resourceID)), offset: Int(ref.offset / size),
                           count: Int(UInt64(ref.length) / size))
    }

    static func decode(_ bytes: [UInt8]) throws(ComputeStreamError) -> CommandBatch {
        try ComputeStream.decode(bytes, resolve: resolve)
    }

    static func ref(_ id: UInt32, _ offset: UInt64, _ count: Int, _ element: Int = 4) -> [UInt8] {
        StreamBuilder.ref(id, offset: offset * UInt64(element), length: UInt32(count * element))
    }

    static func range(_ id: UInt64, _ offset: Int, _ count: Int) -> BufferRange {
        BufferRange(BufferID(rawValue: id), offset: offset, count: count)
    }

    static func words(_ values: [UInt32]) -> [UInt8] {
        var w = WireWriter()
        for v in values { w.u32(v) }
        return w.bytes
    }

    static func float(_ f: Float) -> UInt32 { f.bitPattern }

    /// One encoded command per opcode and the kernel it must decode to.
    static let cases: [(ComputeStream.Opcode, [UInt8], Kernel)] = {
        let shape: [UInt32] = [2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1]
        let conv = Conv2DShape(batch: 2, inChannels: 3, height: 8, width: 8, outChannels: 4, kernelHeight: 3,
                               kernelWidth: 3, strideY: 1, strideX: 1, padY: 1, padX: 1)
        let inCount = 2 * 3 * 8 * 8, weightCount = 4 * 3 * 3 * 3, outCount = 2 * 4 * 8 * 8
        return [
            (.sgemm, words([2, 3, 4, 0b10, float(0.5), float(1)]) + ref(1, 0, 8) + ref(2, 4, 12) + ref(3, 0, 6),
             .sgemm(SGEMMParams(m: 2, n: 3, k: 4, transposeA: false, transposeB: true, alpha: 0.5, beta: 1,
                                a: range(1, 0, 8), b: range(2, 4, 12), c: range(3, 0, 6)))),
            (.biasAdd, words([2, 3, 5, 0]) + ref(1, 0, 30) + ref(2, 0, 3),
             .biasAdd(BiasAddParams(outer: 2, channels: 3, inner: 5, data: range(1, 0, 30), bias: range(2, 0, 3)))),
            (.activation, words([1, 16]) + ref(1, 0, 16) + ref(1, 0, 16),
             .activation(ActivationParams(activation: .gelu, count: 16, input: range(1, 0, 16), output: range(1, 0, 16)))),
            (.activationBackward, words([0, 4]) + ref(1, 0, 4) + ref(2, 0, 4) + ref(3, 0, 4),
             .activationBackward(ActivationBackwardParams(activation: .relu, count: 4, input: range(1, 0, 4),
                                                          outputGradient: range(2, 0, 4), inputGradient: range(3, 0, 4)))),
            (.softmax, words([3, 5]) + ref(1, 0, 15) + ref(2, 0, 15),
             .softmax(SoftmaxParams(rows: 3, columns: 5, input: range(1, 0, 15), output: range(2, 0, 15)))),
            (.softmaxCrossEntropy, words([3, 5, float(0.25), 0]) + ref(1, 0, 15) + ref(2, 0, 3) + ref(3, 0, 3) + ref(4, 0, 15),
             .softmaxCrossEntropy(SoftmaxCrossEntropyParams(rows: 3, classes: 5, logits: range(1, 0, 15), labels: range(2, 0, 3),
                                                            loss: range(3, 0, 3), logitsGradient: range(4, 0, 15),
                                                            gradientScale: 0.25))),
            (.reduce, words([1, 1, 4, 6]) + ref(1, 0, 24) + ref(2, 0, 6),
             .reduce(ReduceParams(op: .max, axis: .perColumn, rows: 4, columns: 6, input: range(1, 0, 24), output: range(2, 0, 6)))),
            (.axpy, words([8, float(-0.1)]) + ref(1, 0, 8) + ref(2, 8, 8),
             .axpy(AxpyParams(count: 8, alpha: -0.1, x: range(1, 0, 8), y: range(2, 8, 8)))),
            (.scale, words([8, float(3)]) + ref(1, 2, 8),
             .scale(ScaleParams(count: 8, alpha: 3, x: range(1, 2, 8)))),
            (.conv2dForward, words(shape + [1]) + ref(1, 0, inCount) + ref(2, 0, weightCount) + ref(3, 0, 4) + ref(4, 0, outCount),
             .conv2dForward(Conv2DForwardParams(shape: conv, input: range(1, 0, inCount), weight: range(2, 0, weightCount),
                                                bias: range(3, 0, 4), output: range(4, 0, outCount)))),
            (.conv2dBackwardData, words(shape + [0]) + ref(1, 0, outCount) + ref(2, 0, weightCount) + ref(3, 0, inCount),
             .conv2dBackwardData(Conv2DBackwardDataParams(shape: conv, outputGradient: range(1, 0, outCount),
                                                          weight: range(2, 0, weightCount), inputGradient: range(3, 0, inCount)))),
            (.conv2dBackwardFilter, words(shape + [0]) + ref(1, 0, inCount) + ref(2, 0, outCount) + ref(3, 0, weightCount)
                + [UInt8](repeating: 0, count: 16),
             .conv2dBackwardFilter(Conv2DBackwardFilterParams(shape: conv, input: range(1, 0, inCount),
                                                              outputGradient: range(2, 0, outCount),
                                                              weightGradient: range(3, 0, weightCount), biasGradient: nil))),
            (.normalizeU8, words([1, 4, 4, 3, float(1.0 / 255), 0, float(0.5), float(0.4), float(0.3), 0,
                                  float(0.2), float(0.2), float(0.2), 0]) + ref(1, 0, 48, 1) + ref(2, 0, 48),
             .normalizeU8(NormalizeParams(batch: 1, height: 4, width: 4, channels: 3, scale: 1.0 / 255, mean: [0.5, 0.4, 0.3],
                                          std: [0.2, 0.2, 0.2], input: range(1, 0, 48), output: range(2, 0, 48)))),
            (.crop, words([1, 3, 8, 8, 1, 2, 4, 5]) + ref(1, 0, 192) + ref(2, 0, 60),
             .crop(CropParams(batch: 1, channels: 3, height: 8, width: 8, top: 1, left: 2, outHeight: 4, outWidth: 5,
                              input: range(1, 0, 192), output: range(2, 0, 60)))),
            (.flipHorizontal, words([1, 3, 8, 8]) + ref(1, 0, 192) + ref(2, 0, 192),
             .flipHorizontal(FlipParams(batch: 1, channels: 3, height: 8, width: 8, input: range(1, 0, 192), output: range(2, 0, 192)))),
            (.resizeBilinear, words([1, 3, 8, 8, 4, 4]) + ref(1, 0, 192) + ref(2, 0, 48),
             .resizeBilinear(ResizeParams(batch: 1, channels: 3, height: 8, width: 8, outHeight: 4, outWidth: 4,
                                          input: range(1, 0, 192), output: range(2, 0, 48)))),
            (.copy, ref(1, 0, 10) + ref(2, 5, 10),
             .crop(CropParams(batch: 1, channels: 1, height: 1, width: 10, top: 0, left: 0, outHeight: 1, outWidth: 10,
                              input: range(1, 0, 10), output: range(2, 5, 10)))),
            (.maxpool2dForward, words([2, 3, 8, 7]) + ref(1, 0, 336) + ref(2, 0, 72),
             .maxPool2DForward(MaxPool2DForwardParams(shape: MaxPool2DShape(batch: 2, channels: 3, height: 8, width: 7),
                                                      input: range(1, 0, 336), output: range(2, 0, 72)))),
            (.maxpool2dBackward, words([2, 3, 8, 7]) + ref(1, 0, 336) + ref(2, 0, 72) + ref(3, 0, 336),
             .maxPool2DBackward(MaxPool2DBackwardParams(shape: MaxPool2DShape(batch: 2, channels: 3, height: 8, width: 7),
                                                        input: range(1, 0, 336), outputGradient: range(2, 0, 72),
                                                        inputGradient: range(3, 0, 336)))),
        ]
    }()

    @Test func everyOpcodeHasACaseAndDecodesToItsKernel() throws {
        #expect(Set(Self.cases.map(\.0)) == Set(ComputeStream.Opcode.allCases))
        var stream = StreamBuilder()
        for (opcode, body, _) in Self.cases {
            #expect(body.count + 8 == opcode.length, "\(opcode)")
            stream.raw(opcode.rawValue, body)
        }
        let batch = try Self.decode(stream.bytes)
        #expect(batch.kernels == Self.cases.map(\.2))
        // And each is a valid kernel by GPUHost's rules (the shapes above agree).
        _ = try batch.validate(capacity: { _ in 1 << 20 })
    }

    @Test func refusesReservedBitsAndUndefinedValues() {
        let hostile: [(ComputeStream.Opcode, [UInt8])] = [
            (.sgemm, Self.words([2, 3, 4, 0b100, 0, 0]) + Self.ref(1, 0, 8) + Self.ref(2, 0, 12) + Self.ref(3, 0, 6)),
            (.biasAdd, Self.words([2, 3, 5, 1]) + Self.ref(1, 0, 30) + Self.ref(2, 0, 3)),
            (.reduce, Self.words([2, 0, 4, 6]) + Self.ref(1, 0, 24) + Self.ref(2, 0, 4)),
            (.reduce, Self.words([0, 2, 4, 6]) + Self.ref(1, 0, 24) + Self.ref(2, 0, 4)),
            // Bias flag clear but a bias reference present.
            (.conv2dForward, Self.words([1, 1, 4, 4, 1, 3, 3, 1, 1, 0, 0, 0]) + Self.ref(1, 0, 16) + Self.ref(2, 0, 9)
                + Self.ref(3, 0, 1) + Self.ref(4, 0, 4)),
            (.conv2dForward, Self.words([1, 1, 4, 4, 1, 3, 3, 1, 1, 0, 0, 2]) + Self.ref(1, 0, 16) + Self.ref(2, 0, 9)
                + [UInt8](repeating: 0, count: 16) + Self.ref(4, 0, 4)),
            // Channels 5, and a non-zero mean past the channels.
            (.normalizeU8, Self.words([1, 2, 2, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) + Self.ref(1, 0, 20, 1) + Self.ref(2, 0, 20)),
            (.normalizeU8, Self.words([1, 2, 2, 1, 0, 0, 0, Self.float(1), 0, 0, Self.float(1), 0, 0, 0])
                + Self.ref(1, 0, 4, 1) + Self.ref(2, 0, 4)),
            (.copy, Self.ref(1, 0, 10) + Self.ref(2, 0, 11)),
        ]
        for (opcode, body) in hostile {
            var stream = StreamBuilder()
            stream.raw(opcode.rawValue, body)
            #expect(throws: ComputeStreamError.self, "\(opcode)") { try Self.decode(stream.bytes) }
        }
        var flagged = StreamBuilder()
        flagged.raw(ComputeStream.Opcode.scale.rawValue, Self.words([1, 0]) + Self.ref(1, 0, 1))
        var bytes = flagged.bytes
        bytes[16 + 2] = 1  // command flags
        #expect(throws: ComputeStreamError.reservedNotZero(command: 0, field: "flags")) { try Self.decode(bytes) }
        bytes = flagged.bytes
        bytes[6] = 1  // stream flags
        #expect(throws: ComputeStreamError.reservedNotZero(command: nil, field: "flags")) { try Self.decode(bytes) }
        bytes = flagged.bytes
        bytes[12] = 1  // stream reserved
        #expect(throws: ComputeStreamError.reservedNotZero(command: nil, field: "reserved")) { try Self.decode(bytes) }
        #expect(throws: ComputeStreamError.streamTooShort(15)) { try Self.decode(Array(flagged.bytes.prefix(15))) }
        #expect(throws: ComputeStreamError.self) {
            try Self.decode(flagged.bytes + [UInt8](repeating: 0, count: ComputeStream.maxStreamBytes))
        }
    }

    /// Corrupts valid streams at random (a seeded generator, so a failure reproduces): the
    /// decoder must answer every one with a batch or a typed refusal.
    @Test func survivesRandomCorruption() {
        var stream = StreamBuilder()
        for (opcode, body, _) in Self.cases { stream.raw(opcode.rawValue, body) }
        let valid = stream.bytes
        var generator = SplitMix(seed: 0x6d61_6c76)
        var refused = 0
        for _ in 0 ..< 3000 {
            var bytes = valid
            for _ in 0 ..< Int(generator.next() % 4 + 1) {
                let position = Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 4 {
                case 0: bytes[position] = UInt8(truncatingIfNeeded: generator.next())
                case 1: bytes[position] ^= 1 << UInt8(generator.next() % 8)
                case 2: bytes = Array(bytes.prefix(position))
                default: bytes.insert(UInt8(truncatingIfNeeded: generator.next()), at: position)
                }
                if bytes.isEmpty { break }
            }
            do throws(ComputeStreamError) {
                let batch = try Self.decode(bytes)
                _ = try? batch.validate(capacity: { _ in 1 << 20 })
            } catch {
                refused += 1
            }
        }
        #expect(refused > 0)
    }
}

/// A small deterministic generator for corruption tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
