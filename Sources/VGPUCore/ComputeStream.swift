import GPUHost

/// A blob resource range named by a compute command: `length` bytes at byte `offset` of
/// resource `resourceID` (docs/vgpu-protocol.md, "Buffer references").
public struct ComputeReference: Hashable, Sendable {
    public var resourceID: UInt32
    public var offset: UInt64
    public var length: UInt32

    public init(resourceID: UInt32, offset: UInt64, length: UInt32) {
        self.resourceID = resourceID
        self.offset = offset
        self.length = length
    }

    static let size = 16

    package init(_ reader: inout WireReader) throws(WireReader.Truncated) {
        resourceID = try reader.u32()
        length = try reader.u32()
        offset = try reader.u64()
    }

    var isNull: Bool { resourceID == 0 && offset == 0 && length == 0 }
}

/// Why a SUBMIT_3D command stream was refused. Nothing of a refused stream runs.
public enum ComputeStreamError: Error, Hashable, Sendable, CustomStringConvertible {
    case streamTooShort(Int)
    case streamTooLong(Int, limit: Int)
    case badMagic(UInt32)
    case unsupportedVersion(UInt16)
    case reservedNotZero(command: Int?, field: String)
    case badCommandCount(UInt32, limit: Int)
    case truncated(command: Int)
    case unknownOpcode(command: Int, opcode: UInt16)
    case badLength(command: Int, opcode: UInt16, length: UInt32, expected: Int)
    case trailingBytes(Int)
    case badEnumValue(command: Int, field: String, value: UInt32)
    /// Resource id 0, unknown, not attached to the submitting context, or not its own.
    case invalidResource(command: Int, operand: String, resourceID: UInt32)
    case badReference(command: Int, operand: String, reason: String)
    case invalidKernel(command: Int, String)

    public var description: String {
        switch self {
        case let .streamTooShort(n): return "command stream of \(n) bytes is shorter than its header"
        case let .streamTooLong(n, limit): return "command stream of \(n) bytes exceeds \(limit)"
        case let .badMagic(m): return "bad command stream magic 0x\(String(m, radix: 16))"
        case let .unsupportedVersion(v): return "unsupported command stream version \(v)"
        case let .reservedNotZero(c, f): return "reserved field \(f)\(c.map { " of command \($0)" } ?? "") is not zero"
        case let .badCommandCount(n, limit): return "command count \(n) outside 1...\(limit)"
        case let .truncated(c): return "command \(c) is truncated"
        case let .unknownOpcode(c, op): return "command \(c): unknown opcode \(op)"
        case let .badLength(c, op, length, expected):
            return "command \(c) (opcode \(op)): length \(length), expected \(expected)"
        case let .trailingBytes(n): return "\(n) bytes follow the last command"
        case let .badEnumValue(c, field, value): return "command \(c): \(field) = \(value) is not defined"
        case let .invalidResource(c, operand, id): return "command \(c): \(operand) names resource \(id), not this context's"
        case let .badReference(c, operand, reason): return "command \(c): \(operand) \(reason)"
        case let .invalidKernel(c, reason): return "command \(c): \(reason)"
        }
    }
}

/// The compute command stream SUBMIT_3D carries for our capset: a header, then a batch of
/// commands, each a fixed-size record naming blob ranges and carrying one GPUHost kernel's
/// parameters. Layout and rules: docs/vgpu-protocol.md.
public enum ComputeStream {
    public static let magic: UInt32 = 0x4347_564d  // "MVGC" as little-endian bytes
    public static let version: UInt16 = 1
    public static let headerSize = 16
    public static let commandHeadSize = 8
    /// Commands in one submission: enough for a training step of a mid-sized model.
    public static let maxCommands = 4096
    /// Bytes in one stream; the largest command is 120 bytes, so this holds maxCommands.
    public static let maxStreamBytes = 1 << 20

    public enum Opcode: UInt16, CaseIterable, Sendable {
        case sgemm = 1
        case biasAdd = 2
        case activation = 3
        case activationBackward = 4
        case softmax = 5
        case softmaxCrossEntropy = 6
        case reduce = 7
        case axpy = 8
        case scale = 9
        case conv2dForward = 10
        case conv2dBackwardData = 11
        case conv2dBackwardFilter = 12
        case normalizeU8 = 13
        case crop = 14
        case flipHorizontal = 15
        case resizeBilinear = 16
        case copy = 17
        case maxpool2dForward = 18
        case maxpool2dBackward = 19

        /// The exact length of the command, head included: every command is fixed-size, so
        /// a length that differs is a malformed (or future-version) command.
        public var length: Int {
            let r = ComputeReference.size
            let body: Int
            switch self {
            case .sgemm: body = 24 + 3 * r
            case .biasAdd: body = 16 + 2 * r
            case .activation: body = 8 + 2 * r
            case .activationBackward: body = 8 + 3 * r
            case .softmax: body = 8 + 2 * r
            case .softmaxCrossEntropy: body = 16 + 4 * r
            case .reduce: body = 16 + 2 * r
            case .axpy: body = 8 + 2 * r
            case .scale: body = 8 + r
            case .conv2dForward: body = 48 + 4 * r
            case .conv2dBackwardData: body = 48 + 3 * r
            case .conv2dBackwardFilter: body = 48 + 4 * r
            case .normalizeU8: body = 56 + 2 * r
            case .crop: body = 32 + 2 * r
            case .flipHorizontal: body = 16 + 2 * r
            case .resizeBilinear: body = 24 + 2 * r
            case .copy: body = 2 * r
            case .maxpool2dForward: body = 16 + 2 * r
            case .maxpool2dBackward: body = 16 + 3 * r
            }
            return ComputeStream.commandHeadSize + body
        }
    }

    /// Turns a reference into a buffer range of `element`s; throws for anything that is not
    /// the submitting context's, or does not lie inside its blob.
    public typealias Resolver = (_ reference: ComputeReference, _ element: ElementType, _ command: Int,
                                 _ operand: String) throws(ComputeStreamError) -> BufferRange

    /// Decodes and resolves a whole stream into one batch, or refuses it.
    public static func decode(_ bytes: [UInt8], resolve: Resolver) throws(ComputeStreamError) -> CommandBatch {
        guard bytes.count >= headerSize else { throw .streamTooShort(bytes.count) }
        guard bytes.count <= maxStreamBytes else { throw .streamTooLong(bytes.count, limit: maxStreamBytes) }
        var reader = WireReader(bytes)
        do {
            let magic = try reader.u32()
            guard magic == Self.magic else { throw ComputeStreamError.badMagic(magic) }
            let version = try reader.u16()
            guard version == Self.version else { throw ComputeStreamError.unsupportedVersion(version) }
            guard try reader.u16() == 0 else { throw ComputeStreamError.reservedNotZero(command: nil, field: "flags") }
            let count = try reader.u32()
            guard count >= 1, count <= UInt32(maxCommands) else {
                throw ComputeStreamError.badCommandCount(count, limit: maxCommands)
            }
            guard try reader.u32() == 0 else { throw ComputeStreamError.reservedNotZero(command: nil, field: "reserved") }
            var batch = CommandBatch()
            batch.kernels.reserveCapacity(Int(count))
            for index in 0 ..< Int(count) {
                guard reader.remaining >= commandHeadSize else { throw ComputeStreamError.truncated(command: index) }
                let opcodeValue = try reader.u16()
                let flags = try reader.u16()
                let length = try reader.u32()
                guard let opcode = Opcode(rawValue: opcodeValue) else {
                    throw ComputeStreamError.unknownOpcode(command: index, opcode: opcodeValue)
                }
                guard flags == 0 else { throw ComputeStreamError.reservedNotZero(command: index, field: "flags") }
                guard Int(length) == opcode.length else {
                    throw ComputeStreamError.badLength(command: index, opcode: opcodeValue, length: length, expected: opcode.length)
                }
                let bodyLength = opcode.length - commandHeadSize
                guard reader.remaining >= bodyLength else { throw ComputeStreamError.truncated(command: index) }
                var body = WireReader(Array(bytes[reader.position ..< reader.position + bodyLength]))
                try reader.skip(bodyLength)
                batch.append(try kernel(opcode, &body, index: index, resolve: resolve))
            }
            guard reader.remaining == 0 else { throw ComputeStreamError.trailingBytes(reader.remaining) }
            return batch
        } catch let error as ComputeStreamError {
            throw error
        } catch {
            // Only the header can run short here: command bodies are length-checked first.
            throw .streamTooShort(bytes.count)
        }
    }

    // swiftlint:disable:next cyclomatic_complexity function_body_length
    private static func kernel(_ opcode: Opcode, _ r: inout WireReader, index: Int,
                               resolve: Resolver) throws(ComputeStreamError) -> Kernel {
        // Bodies were length-checked against the opcode, so reads cannot run short.
        func u32() throws(ComputeStreamError) -> UInt32 {
            do { return try r.u32() } catch { throw .truncated(command: index) }
        }
        func int() throws(ComputeStreamError) -> Int { Int(try u32()) }
        func f32() throws(ComputeStreamError) -> Float { Float(bitPattern: try u32()) }
        func reserved(_ field: String) throws(ComputeStreamError) {
            guard try u32() == 0 else { throw .reservedNotZero(command: index, field: field) }
        }
        func reference(_ name: String, _ element: ElementType = .float32) throws(ComputeStreamError) -> BufferRange {
            let ref: ComputeReference
            do { ref = try ComputeReference(&r) } catch { throw .truncated(command: index) }
            return try resolve(ref, element, index, name)
        }
        /// An optional operand: present when its flag is set, and all zeros when not.
        func optionalReference(_ name: String, present: Bool) throws(ComputeStreamError) -> BufferRange? {
            if present { return try reference(name) }
            let ref: ComputeReference
            do { ref = try ComputeReference(&r) } catch { throw .truncated(command: index) }
            guard ref.isNull else { throw .reservedNotZero(command: index, field: name) }
            return nil
        }
        func flags(_ field: String, allowed: UInt32) throws(ComputeStreamError) -> UInt32 {
            let value = try u32()
            guard value & ~allowed == 0 else { throw .badEnumValue(command: index, field: field, value: value) }
            return value
        }
        func activation() throws(ComputeStreamError) -> Activation {
            let value = try u32()
            switch value {
            case 0: return .relu
            case 1: return .gelu
            default: throw .badEnumValue(command: index, field: "activation", value: value)
            }
        }
        func poolShape() throws(ComputeStreamError) -> MaxPool2DShape {
            MaxPool2DShape(batch: try int(), channels: try int(), height: try int(), width: try int())
        }
        func convShape() throws(ComputeStreamError) -> Conv2DShape {
            Conv2DShape(batch: try int(), inChannels: try int(), height: try int(), width: try int(),
                        outChannels: try int(), kernelHeight: try int(), kernelWidth: try int(),
                        strideY: try int(), strideX: try int(), padY: try int(), padX: try int())
        }

        switch opcode {
        case .sgemm:
            let m = try int(), n = try int(), k = try int()
            let transpose = try flags("transpose", allowed: 0b11)
            let alpha = try f32(), beta = try f32()
            return .sgemm(SGEMMParams(m: m, n: n, k: k, transposeA: transpose & 1 != 0, transposeB: transpose & 2 != 0,
                                      alpha: alpha, beta: beta, a: try reference("a"), b: try reference("b"),
                                      c: try reference("c")))
        case .biasAdd:
            let outer = try int(), channels = try int(), inner = try int()
            try reserved("reserved")
            return .biasAdd(BiasAddParams(outer: outer, channels: channels, inner: inner,
                                          data: try reference("data"), bias: try reference("bias")))
        case .activation:
            let kind = try activation()
            let count = try int()
            return .activation(ActivationParams(activation: kind, count: count, input: try reference("input"),
                                                output: try reference("output")))
        case .activationBackward:
            let kind = try activation()
            let count = try int()
            return .activationBackward(ActivationBackwardParams(
                activation: kind, count: count, input: try reference("input"),
                outputGradient: try reference("outputGradient"), inputGradient: try reference("inputGradient")))
        case .softmax:
            let rows = try int(), columns = try int()
            return .softmax(SoftmaxParams(rows: rows, columns: columns, input: try reference("input"),
                                          output: try reference("output")))
        case .softmaxCrossEntropy:
            let rows = try int(), classes = try int()
            let scale = try f32()
            try reserved("reserved")
            return .softmaxCrossEntropy(SoftmaxCrossEntropyParams(
                rows: rows, classes: classes, logits: try reference("logits"), labels: try reference("labels", .uint32),
                loss: try reference("loss"), logitsGradient: try reference("logitsGradient"), gradientScale: scale))
        case .reduce:
            let opValue = try u32()
            let axisValue = try u32()
            let op: ReductionOp
            switch opValue {
            case 0: op = .sum
            case 1: op = .max
            default: throw .badEnumValue(command: index, field: "op", value: opValue)
            }
            let axis: ReductionAxis
            switch axisValue {
            case 0: axis = .perRow
            case 1: axis = .perColumn
            default: throw .badEnumValue(command: index, field: "axis", value: axisValue)
            }
            let rows = try int(), columns = try int()
            return .reduce(ReduceParams(op: op, axis: axis, rows: rows, columns: columns,
                                        input: try reference("input"), output: try reference("output")))
        case .axpy:
            let count = try int()
            let alpha = try f32()
            return .axpy(AxpyParams(count: count, alpha: alpha, x: try reference("x"), y: try reference("y")))
        case .scale:
            let count = try int()
            let alpha = try f32()
            return .scale(ScaleParams(count: count, alpha: alpha, x: try reference("x")))
        case .conv2dForward:
            let shape = try convShape()
            let hasBias = try flags("flags", allowed: 1) & 1 != 0
            let input = try reference("input"), weight = try reference("weight")
            let bias = try optionalReference("bias", present: hasBias)
            return .conv2dForward(Conv2DForwardParams(shape: shape, input: input, weight: weight, bias: bias,
                                                      output: try reference("output")))
        case .conv2dBackwardData:
            let shape = try convShape()
            try reserved("reserved")
            return .conv2dBackwardData(Conv2DBackwardDataParams(
                shape: shape, outputGradient: try reference("outputGradient"), weight: try reference("weight"),
                inputGradient: try reference("inputGradient")))
        case .conv2dBackwardFilter:
            let shape = try convShape()
            let hasBias = try flags("flags", allowed: 1) & 1 != 0
            let input = try reference("input"), outputGradient = try reference("outputGradient")
            let weightGradient = try reference("weightGradient")
            return .conv2dBackwardFilter(Conv2DBackwardFilterParams(
                shape: shape, input: input, outputGradient: outputGradient, weightGradient: weightGradient,
                biasGradient: try optionalReference("biasGradient", present: hasBias)))
        case .normalizeU8:
            let batch = try int(), height = try int(), width = try int(), channels = try int()
            let scale = try f32()
            try reserved("reserved")
            var mean: [Float] = [], std: [Float] = []
            for _ in 0 ..< NormalizeParams.maxChannels { mean.append(try f32()) }
            for _ in 0 ..< NormalizeParams.maxChannels { std.append(try f32()) }
            guard (1 ... NormalizeParams.maxChannels).contains(channels) else {
                throw .badEnumValue(command: index, field: "channels", value: UInt32(truncatingIfNeeded: channels))
            }
            // Slots past `channels` are reserved.
            for slot in channels ..< NormalizeParams.maxChannels where mean[slot].bitPattern != 0 || std[slot].bitPattern != 0 {
                throw .reservedNotZero(command: index, field: "mean/std[\(slot)]")
            }
            return .normalizeU8(NormalizeParams(batch: batch, height: height, width: width, channels: channels,
                                                scale: scale, mean: Array(mean.prefix(channels)),
                                                std: Array(std.prefix(channels)),
                                                input: try reference("input", .uint8), output: try reference("output")))
        case .crop:
            let batch = try int(), channels = try int(), height = try int(), width = try int()
            let top = try int(), left = try int(), outHeight = try int(), outWidth = try int()
            return .crop(CropParams(batch: batch, channels: channels, height: height, width: width, top: top, left: left,
                                    outHeight: outHeight, outWidth: outWidth, input: try reference("input"),
                                    output: try reference("output")))
        case .flipHorizontal:
            let batch = try int(), channels = try int(), height = try int(), width = try int()
            return .flipHorizontal(FlipParams(batch: batch, channels: channels, height: height, width: width,
                                              input: try reference("input"), output: try reference("output")))
        case .resizeBilinear:
            let batch = try int(), channels = try int(), height = try int(), width = try int()
            let outHeight = try int(), outWidth = try int()
            return .resizeBilinear(ResizeParams(batch: batch, channels: channels, height: height, width: width,
                                                outHeight: outHeight, outWidth: outWidth, input: try reference("input"),
                                                output: try reference("output")))
        case .copy:
            // A copy of 4-byte words, run as a crop that keeps everything: one plane of one
            // row of `count` values. The kernel library has no byte copy; f32 covers u32 too.
            let source = try reference("source"), destination = try reference("destination")
            guard source.count == destination.count else {
                throw .badReference(command: index, operand: "destination",
                                    reason: "is \(destination.count) words for a source of \(source.count)")
            }
            return .crop(CropParams(batch: 1, channels: 1, height: 1, width: source.count, top: 0, left: 0,
                                    outHeight: 1, outWidth: source.count, input: source, output: destination))
        case .maxpool2dForward:
            let shape = try poolShape()
            return .maxPool2DForward(MaxPool2DForwardParams(shape: shape, input: try reference("input"),
                                                            output: try reference("output")))
        case .maxpool2dBackward:
            let shape = try poolShape()
            return .maxPool2DBackward(MaxPool2DBackwardParams(
                shape: shape, input: try reference("input"), outputGradient: try reference("outputGradient"),
                inputGradient: try reference("inputGradient")))
        }
    }
}
