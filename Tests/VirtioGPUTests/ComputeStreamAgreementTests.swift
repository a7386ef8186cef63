import Foundation
import GPUHost
import Testing
@testable import VGPUCore

/// The compute stream (docs/vgpu-protocol.md) has three implementations and no generator: the
/// guest's C encoders (Guest/include/malv/vgpu.h, Guest/lib/vgpu_stream.c), the VMM's decoder
/// (`ComputeStream`) and the tests' encoder (`StreamBuilder`). This suite holds them to one
/// another: Fixtures/stream_golden.c, built here with the host's gcc, records one command of
/// every opcode with the guest's encoders; `golden` below is the same list of commands. The C
/// bytes must equal StreamBuilder's, decode to exactly the kernels given, and cover the opcodes
/// that vgpu.h and `ComputeStream.Opcode` define, with `Opcode.length` bytes each.
///
/// A change to the stream changes all three (and this list and stream_golden.c with them).
@Suite struct ComputeStreamAgreementTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let header = root.appendingPathComponent("Guest/include/malv/vgpu.h")
    static let encoders = root.appendingPathComponent("Guest/lib/vgpu_stream.c")
    static let harness = root.appendingPathComponent("Tests/VirtioGPUTests/Fixtures/stream_golden.c")

    // MARK: The commands stream_golden.c records, in its order and with its values.

    /// A buffer reference as the C harness writes it: `R(resource_id, length, offset)`.
    struct Ref {
        var id: UInt32
        var length: UInt32
        var offset: UInt64
        var bytes: [UInt8] { StreamBuilder.ref(id, offset: offset, length: length) }
        /// What `resolve` below turns it into, for elements of `size` bytes.
        func range(_ size: Int = 4) -> BufferRange {
            BufferRange(BufferID(rawValue: UInt64(id)), offset: Int(offset) / size, count: Int(length) / size)
        }
    }

    static func R(_ id: UInt32, _ length: UInt32, _ offset: UInt64) -> Ref { Ref(id: id, length: length, offset: offset) }

    struct Golden {
        /// The harness's name for it (its error messages use the same).
        var name: String
        var opcode: ComputeStream.Opcode
        var encode: (inout StreamBuilder) -> Void
        /// What the decoder must make of it.
        var kernel: Kernel
    }

    static let shapeA = Conv2DShape(batch: 2, inChannels: 3, height: 83, width: 89, outChannels: 5, kernelHeight: 7,
                                    kernelWidth: 9, strideY: 11, strideX: 13, padY: 15, padX: 17)
    static let shapeB = Conv2DShape(batch: 4, inChannels: 6, height: 97, width: 101, outChannels: 8, kernelHeight: 10,
                                    kernelWidth: 12, strideY: 14, strideX: 16, padY: 18, padX: 20)

    // swiftlint:disable:next function_body_length
    static let golden: [Golden] = {
        var list: [Golden] = []
        func add(_ name: String, _ opcode: ComputeStream.Opcode, _ kernel: Kernel,
                 _ encode: @escaping (inout StreamBuilder) -> Void) {
            list.append(Golden(name: name, opcode: opcode, encode: encode, kernel: kernel))
        }
        do {
            let a = R(101, 84, 0x40), b = R(102, 140, 0x80), c = R(103, 60, 0x1_0000_00c0)
            add("sgemm (transpose A)", .sgemm,
                .sgemm(SGEMMParams(m: 3, n: 5, k: 7, transposeA: true, transposeB: false, alpha: 1.5, beta: -0.25,
                                   a: a.range(), b: b.range(), c: c.range()))) {
                $0.sgemm(m: 3, n: 5, k: 7, transpose: 1, alpha: 1.5, beta: -0.25, a: a.bytes, b: b.bytes, c: c.bytes)
            }
        }
        do {
            let a = R(201, 468, 0x44), b = R(202, 572, 0x88), c = R(203, 396, 0x20_0000_0cc0)
            add("sgemm (transpose B)", .sgemm,
                .sgemm(SGEMMParams(m: 9, n: 11, k: 13, transposeA: false, transposeB: true, alpha: 2.5, beta: 0.75,
                                   a: a.range(), b: b.range(), c: c.range()))) {
                $0.sgemm(m: 9, n: 11, k: 13, transpose: 2, alpha: 2.5, beta: 0.75, a: a.bytes, b: b.bytes, c: c.bytes)
            }
        }
        do {
            let data = R(301, 1024, 0x140), bias = R(302, 76, 0x180)
            add("bias_add", .biasAdd,
                .biasAdd(BiasAddParams(outer: 17, channels: 19, inner: 23, data: data.range(), bias: bias.range()))) {
                $0.biasAdd(outer: 17, channels: 19, inner: 23, data: data.bytes, bias: bias.bytes)
            }
        }
        do {
            let input = R(401, 116, 0x1c0), output = R(402, 120, 0x200)
            add("gelu", .activation,
                .activation(ActivationParams(activation: .gelu, count: 29, input: input.range(), output: output.range()))) {
                $0.activation(1, count: 29, input: input.bytes, output: output.bytes)
            }
        }
        do {
            let input = R(501, 124, 0x240), output = R(502, 128, 0x280)
            add("relu", .activation,
                .activation(ActivationParams(activation: .relu, count: 31, input: input.range(), output: output.range()))) {
                $0.relu(count: 31, input: input.bytes, output: output.bytes)
            }
        }
        do {
            let input = R(601, 148, 0x2c0), outputGradient = R(602, 152, 0x300), inputGradient = R(603, 156, 0x340)
            add("activation_backward", .activationBackward,
                .activationBackward(ActivationBackwardParams(activation: .gelu, count: 37, input: input.range(),
                                                             outputGradient: outputGradient.range(),
                                                             inputGradient: inputGradient.range()))) {
                $0.activationBackward(1, count: 37, input: input.bytes, outputGradient: outputGradient.bytes,
                                      inputGradient: inputGradient.bytes)
            }
        }
        do {
            let input = R(701, 164, 0x380), output = R(702, 168, 0x3c0)
            add("softmax", .softmax,
                .softmax(SoftmaxParams(rows: 41, columns: 43, input: input.range(), output: output.range()))) {
                $0.softmax(rows: 41, columns: 43, input: input.bytes, output: output.bytes)
            }
        }
        do {
            let logits = R(801, 172, 0x400), labels = R(802, 176, 0x440), loss = R(803, 180, 0x480)
            let logitsGradient = R(804, 184, 0x4c0)
            add("softmax_xent", .softmaxCrossEntropy,
                .softmaxCrossEntropy(SoftmaxCrossEntropyParams(rows: 47, classes: 53, logits: logits.range(),
                                                               labels: labels.range(), loss: loss.range(),
                                                               logitsGradient: logitsGradient.range(),
                                                               gradientScale: 0.125))) {
                $0.softmaxCrossEntropy(rows: 47, classes: 53, gradientScale: 0.125, logits: logits.bytes,
                                       labels: labels.bytes, loss: loss.bytes, logitsGradient: logitsGradient.bytes)
            }
        }
        do {
            let input = R(901, 188, 0x500), output = R(902, 192, 0x540)
            add("reduce (max, per row)", .reduce,
                .reduce(ReduceParams(op: .max, axis: .perRow, rows: 59, columns: 61, input: input.range(),
                                     output: output.range()))) {
                $0.reduce(op: 1, axis: 0, rows: 59, columns: 61, input: input.bytes, output: output.bytes)
            }
        }
        do {
            let input = R(1001, 196, 0x580), output = R(1002, 200, 0x5c0)
            add("reduce (sum, per column)", .reduce,
                .reduce(ReduceParams(op: .sum, axis: .perColumn, rows: 67, columns: 71, input: input.range(),
                                     output: output.range()))) {
                $0.reduce(op: 0, axis: 1, rows: 67, columns: 71, input: input.bytes, output: output.bytes)
            }
        }
        do {
            let x = R(1101, 204, 0x600), y = R(1102, 208, 0x640)
            add("axpy", .axpy, .axpy(AxpyParams(count: 73, alpha: -3.5, x: x.range(), y: y.range()))) {
                $0.axpy(count: 73, alpha: -3.5, x: x.bytes, y: y.bytes)
            }
        }
        do {
            let x = R(1201, 212, 0x680)
            add("scale", .scale, .scale(ScaleParams(count: 79, alpha: 6.25, x: x.range()))) {
                $0.scale(count: 79, alpha: 6.25, x: x.bytes)
            }
        }
        do {
            let input = R(1301, 216, 0x6c0), weight = R(1302, 220, 0x700), bias = R(1303, 224, 0x740)
            let output = R(1304, 228, 0x780)
            add("conv2d_forward (bias)", .conv2dForward,
                .conv2dForward(Conv2DForwardParams(shape: shapeA, input: input.range(), weight: weight.range(),
                                                   bias: bias.range(), output: output.range()))) {
                $0.conv2dForward(shape: shapeA, input: input.bytes, weight: weight.bytes, bias: bias.bytes,
                                 output: output.bytes)
            }
        }
        do {
            let input = R(1401, 232, 0x7c0), weight = R(1402, 236, 0x800), output = R(1404, 240, 0x840)
            add("conv2d_forward (no bias)", .conv2dForward,
                .conv2dForward(Conv2DForwardParams(shape: shapeB, input: input.range(), weight: weight.range(),
                                                   bias: nil, output: output.range()))) {
                $0.conv2dForward(shape: shapeB, input: input.bytes, weight: weight.bytes, bias: nil, output: output.bytes)
            }
        }
        do {
            let outputGradient = R(1501, 244, 0x880), weight = R(1502, 248, 0x8c0), inputGradient = R(1503, 252, 0x900)
            add("conv2d_backward_data", .conv2dBackwardData,
                .conv2dBackwardData(Conv2DBackwardDataParams(shape: shapeA, outputGradient: outputGradient.range(),
                                                             weight: weight.range(),
                                                             inputGradient: inputGradient.range()))) {
                $0.conv2dBackwardData(shape: shapeA, outputGradient: outputGradient.bytes, weight: weight.bytes,
                                      inputGradient: inputGradient.bytes)
            }
        }
        do {
            let input = R(1601, 256, 0x940), outputGradient = R(1602, 260, 0x980), weightGradient = R(1603, 264, 0x9c0)
            let biasGradient = R(1604, 268, 0xa00)
            add("conv2d_backward_filter (bias gradient)", .conv2dBackwardFilter,
                .conv2dBackwardFilter(Conv2DBackwardFilterParams(shape: shapeB, input: input.range(),
                                                                 outputGradient: outputGradient.range(),
                                                                 weightGradient: weightGradient.range(),
                                                                 biasGradient: biasGradient.range()))) {
                $0.conv2dBackwardFilter(shape: shapeB, input: input.bytes, outputGradient: outputGradient.bytes,
                                        weightGradient: weightGradient.bytes, biasGradient: biasGradient.bytes)
            }
        }
        do {
            let input = R(1701, 272, 0xa40), outputGradient = R(1702, 276, 0xa80), weightGradient = R(1703, 280, 0xac0)
            add("conv2d_backward_filter (no bias gradient)", .conv2dBackwardFilter,
                .conv2dBackwardFilter(Conv2DBackwardFilterParams(shape: shapeA, input: input.range(),
                                                                 outputGradient: outputGradient.range(),
                                                                 weightGradient: weightGradient.range(),
                                                                 biasGradient: nil))) {
                $0.conv2dBackwardFilter(shape: shapeA, input: input.bytes, outputGradient: outputGradient.bytes,
                                        weightGradient: weightGradient.bytes, biasGradient: nil)
            }
        }
        do {
            let input = R(1801, 113, 0xb01), output = R(1802, 284, 0x3_0000_0b40)
            let mean: [Float] = [0.5, 0.375, 0.25, 0.125], std: [Float] = [2, 4, 8, 16]
            add("normalize_u8 (4 channels)", .normalizeU8,
                .normalizeU8(NormalizeParams(batch: 103, height: 107, width: 109, channels: 4, scale: 0.00390625,
                                             mean: mean, std: std, input: input.range(1), output: output.range()))) {
                $0.normalizeU8(batch: 103, height: 107, width: 109, channels: 4, scale: 0.00390625, mean: mean, std: std,
                               input: input.bytes, output: output.bytes)
            }
        }
        do {
            // The harness passes four means and deviations; the encoder must send only two.
            let input = R(1901, 139, 0xb81), output = R(1902, 288, 0xbc0)
            let mean: [Float] = [0.625, 0.875], std: [Float] = [3, 5]
            add("normalize_u8 (2 channels)", .normalizeU8,
                .normalizeU8(NormalizeParams(batch: 127, height: 131, width: 137, channels: 2, scale: 0.0078125,
                                             mean: mean, std: std, input: input.range(1), output: output.range()))) {
                $0.normalizeU8(batch: 127, height: 131, width: 137, channels: 2, scale: 0.0078125, mean: mean, std: std,
                               input: input.bytes, output: output.bytes)
            }
        }
        do {
            let input = R(2001, 292, 0xc00), output = R(2002, 296, 0xc40)
            add("crop", .crop,
                .crop(CropParams(batch: 149, channels: 151, height: 157, width: 163, top: 167, left: 173, outHeight: 179,
                                 outWidth: 181, input: input.range(), output: output.range()))) {
                $0.crop(batch: 149, channels: 151, height: 157, width: 163, top: 167, left: 173, outHeight: 179,
                        outWidth: 181, input: input.bytes, output: output.bytes)
            }
        }
        do {
            let input = R(2101, 300, 0xc80), output = R(2102, 304, 0xcc0)
            add("flip_horizontal", .flipHorizontal,
                .flipHorizontal(FlipParams(batch: 191, channels: 193, height: 197, width: 199, input: input.range(),
                                           output: output.range()))) {
                $0.flipHorizontal(batch: 191, channels: 193, height: 197, width: 199, input: input.bytes,
                                  output: output.bytes)
            }
        }
        do {
            let input = R(2201, 308, 0xd00), output = R(2202, 312, 0xd40)
            add("resize_bilinear", .resizeBilinear,
                .resizeBilinear(ResizeParams(batch: 211, channels: 223, height: 227, width: 229, outHeight: 233,
                                             outWidth: 239, input: input.range(), output: output.range()))) {
                $0.resizeBilinear(batch: 211, channels: 223, height: 227, width: 229, outHeight: 233, outWidth: 239,
                                  input: input.bytes, output: output.bytes)
            }
        }
        do {
            // COPY decodes to a crop that keeps one row of all the words.
            let source = R(2301, 316, 0xd80), destination = R(2302, 316, 0x4_0000_0dc0)
            add("copy", .copy,
                .crop(CropParams(batch: 1, channels: 1, height: 1, width: 79, top: 0, left: 0, outHeight: 1, outWidth: 79,
                                 input: source.range(), output: destination.range()))) {
                $0.copy(source: source.bytes, destination: destination.bytes)
            }
        }
        do {
            let input = R(2401, 320, 0xe00), output = R(2402, 324, 0xe40)
            let shape = MaxPool2DShape(batch: 241, channels: 251, height: 257, width: 263)
            add("maxpool2d_forward", .maxpool2dForward,
                .maxPool2DForward(MaxPool2DForwardParams(shape: shape, input: input.range(), output: output.range()))) {
                $0.maxPool2DForward(batch: 241, channels: 251, height: 257, width: 263, input: input.bytes,
                                    output: output.bytes)
            }
        }
        do {
            let input = R(2501, 328, 0xe80), outputGradient = R(2502, 332, 0xec0), inputGradient = R(2503, 336, 0x5_0000_0f00)
            let shape = MaxPool2DShape(batch: 269, channels: 271, height: 277, width: 281)
            add("maxpool2d_backward", .maxpool2dBackward,
                .maxPool2DBackward(MaxPool2DBackwardParams(shape: shape, input: input.range(),
                                                           outputGradient: outputGradient.range(),
                                                           inputGradient: inputGradient.range()))) {
                $0.maxPool2DBackward(batch: 269, channels: 271, height: 277, width: 281, input: input.bytes,
                                     outputGradient: outputGradient.bytes, inputGradient: inputGradient.bytes)
            }
        }
        return list
    }()

    // MARK: The three sides

    /// The harness's stream, built once for the suite.
    static let cStream: Result<[UInt8], TestFailure> = {
        do throws(TestFailure) { return .success(try buildAndRunHarness()) } catch { return .failure(error) }
    }()

    static func streamBuilderBytes() -> [UInt8] {
        var stream = StreamBuilder()
        for command in golden { command.encode(&stream) }
        return stream.bytes
    }

    /// Any reference with a non-zero id and whole elements; the decoder's own checks are not
    /// what this suite is about.
    static func resolve(_ ref: ComputeReference, _ element: ElementType, _ command: Int,
                        _ operand: String) throws(ComputeStreamError) -> BufferRange {
        let size = UInt64(element.byteSize)
        guard ref.resourceID != 0, ref.offset % size == 0, UInt64(ref.length) % size == 0 else {
            throw .badReference(command: command, operand: operand, reason: "is not whole elements")
        }
        return BufferRange(BufferID(rawValue: UInt64(ref.resourceID)), offset: Int(ref.offset / size),
                           count: Int(UInt64(ref.length) / size))
    }

    struct RawCommand {
        var opcode: UInt16
        var length: UInt32
        var bytes: ArraySlice<UInt8>
    }

    /// Splits a stream at its commands' length fields (no other checks).
    static func commands(_ stream: [UInt8]) throws -> [RawCommand] {
        func u16(_ at: Int) -> UInt16 { UInt16(stream[at]) | UInt16(stream[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
        var result: [RawCommand] = []
        var at = ComputeStream.headerSize
        while at < stream.count {
            guard stream.count - at >= ComputeStream.commandHeadSize else {
                throw TestFailure("command \(result.count) at byte \(at): \(stream.count - at) bytes, no whole head")
            }
            let opcode = u16(at), length = u32(at + 4)
            guard length >= ComputeStream.commandHeadSize, Int(length) <= stream.count - at else {
                throw TestFailure("command \(result.count) at byte \(at) (opcode \(opcode)): length \(length) does not fit")
            }
            result.append(RawCommand(opcode: opcode, length: length, bytes: stream[at ..< at + Int(length)]))
            at += Int(length)
        }
        return result
    }

    /// `enum vgpu_opcode` of vgpu.h: C name (VGPU_OP_ stripped) → value, VGPU_OP_COUNT included.
    static func headerOpcodes() throws -> [String: Int] {
        let text = try String(contentsOf: header, encoding: .utf8)
        guard let start = text.range(of: "enum vgpu_opcode {"),
              let end = text.range(of: "};", range: start.upperBound ..< text.endIndex) else {
            throw TestFailure("\(header.path): no `enum vgpu_opcode { ... };`")
        }
        let entry = try Regex(#"VGPU_OP_([A-Z0-9_]+)\s*=\s*([0-9]+)"#)
        var result: [String: Int] = [:]
        for match in text[start.upperBound ..< end.lowerBound].matches(of: entry) {
            guard let name = match.output[1].substring, let value = match.output[2].substring.flatMap({ Int($0) }) else {
                continue
            }
            if result.updateValue(value, forKey: String(name)) != nil {
                throw TestFailure("vgpu.h: VGPU_OP_\(name) defined twice")
            }
        }
        return result
    }

    /// `#define NAME value` of vgpu.h (a C integer literal).
    static func headerDefine(_ name: String) throws -> UInt64 {
        let text = try String(contentsOf: header, encoding: .utf8)
        let pattern = try Regex(#"#define\s+"# + name + #"\s+(0x[0-9a-fA-F]+|[0-9]+)[uUlL]*"#)
        guard let match = text.firstMatch(of: pattern), let literal = match.output[1].substring else {
            throw TestFailure("vgpu.h: no #define \(name)")
        }
        let value = literal.hasPrefix("0x") ? UInt64(literal.dropFirst(2), radix: 16) : UInt64(literal)
        guard let value else { throw TestFailure("vgpu.h: #define \(name) \(literal) is not a number") }
        return value
    }

    /// The C spelling of an opcode: the Swift case in upper snake case, but for the names C
    /// abbreviates.
    static func cName(_ opcode: ComputeStream.Opcode) -> String {
        let exceptions: [ComputeStream.Opcode: String] = [.softmaxCrossEntropy: "SOFTMAX_XENT"]
        if let name = exceptions[opcode] { return name }
        var name = ""
        for character in String(describing: opcode) {
            if character.isUppercase { name += "_" }
            name += character.uppercased()
        }
        return name
    }

    // MARK: Tests

    @Test func theGoldenListCoversEveryOpcode() {
        let covered = Set(Self.golden.map(\.opcode))
        let missing = ComputeStream.Opcode.allCases.filter { !covered.contains($0) }
        #expect(missing.isEmpty, "stream_golden.c and `golden` have no command for \(missing)")
    }

    @Test func vgpuHeaderDefinesTheOpcodesOfTheDecoder() throws {
        var c = try Self.headerOpcodes()
        guard let count = c.removeValue(forKey: "COUNT") else {
            Issue.record("vgpu.h: no VGPU_OP_COUNT")
            return
        }
        let swift = Dictionary(uniqueKeysWithValues: ComputeStream.Opcode.allCases.map {
            (Self.cName($0), Int($0.rawValue))
        })
        for (name, value) in swift.sorted(by: { $0.value < $1.value }) {
            #expect(c[name] == value,
                    "VGPU_OP_\(name) is \(c[name].map(String.init) ?? "missing") in vgpu.h, \(value) in ComputeStream.Opcode")
        }
        for (name, value) in c.sorted(by: { $0.value < $1.value }) where swift[name] == nil {
            Issue.record("VGPU_OP_\(name) = \(value) of vgpu.h is not in ComputeStream.Opcode")
        }
        // Opcodes are 1 ... COUNT-1 with no holes, on both sides.
        #expect(count == ComputeStream.Opcode.allCases.count + 1, "VGPU_OP_COUNT")
        #expect(Set(c.values) == Set(1 ..< count), "vgpu.h's opcodes are not 1 ..< VGPU_OP_COUNT")
        #expect(try Self.headerDefine("VGPU_STREAM_MAGIC") == UInt64(ComputeStream.magic))
        #expect(try Self.headerDefine("VGPU_STREAM_VERSION") == UInt64(ComputeStream.version))
        #expect(try Self.headerDefine("VGPU_STREAM_HEADER") == UInt64(ComputeStream.headerSize))
    }

    @Test func guestEncodersEmitEveryOpcodeAtItsLength() throws {
        let stream = try Self.cStream.get()
        let commands = try Self.commands(stream)
        let opcodes = ComputeStream.Opcode.allCases
        #expect(Set(commands.map(\.opcode)) == Set(opcodes.map(\.rawValue)),
                "the harness emitted opcodes \(commands.map(\.opcode)), ComputeStream.Opcode has \(opcodes.map(\.rawValue))")
        try #require(commands.count == Self.golden.count,
                     "the harness recorded \(commands.count) commands, golden has \(Self.golden.count)")
        for (index, (command, golden)) in zip(commands, Self.golden).enumerated() {
            #expect(command.opcode == golden.opcode.rawValue,
                    "command \(index) (\(golden.name)): opcode \(command.opcode), expected \(golden.opcode.rawValue)")
            #expect(Int(command.length) == golden.opcode.length, """
                command \(index) (\(golden.name)): the guest writes \(command.length) bytes, \
                Opcode.length is \(golden.opcode.length)
                """)
        }
        // The header: magic, version, flags, count, reserved.
        let expected = StreamBuilder().bytes.prefix(8) + [UInt8(commands.count), 0, 0, 0, 0, 0, 0, 0]
        #expect(Array(stream.prefix(ComputeStream.headerSize)) == Array(expected), "stream header")
    }

    @Test func streamBuilderEncodesTheGuestsBytes() throws {
        let c = try Self.cStream.get()
        let swift = Self.streamBuilderBytes()
        if c == swift { return }
        #expect(Array(c.prefix(ComputeStream.headerSize)) == Array(swift.prefix(ComputeStream.headerSize)), "stream header")
        let cCommands = try Self.commands(c), swiftCommands = try Self.commands(swift)
        #expect(cCommands.count == swiftCommands.count, "command count")
        for (index, (cCommand, swiftCommand)) in zip(cCommands, swiftCommands).enumerated()
            where cCommand.bytes.elementsEqual(swiftCommand.bytes) == false {
            let name = index < Self.golden.count ? Self.golden[index].name : "?"
            let first = zip(cCommand.bytes, swiftCommand.bytes).enumerated().first { $0.element.0 != $0.element.1 }
            Issue.record("""
                command \(index) (\(name)) differs\(first.map { " first at byte \($0.offset) of the command" } ?? " in length"):
                  guest (vgpu_stream.c): \(Self.hex(cCommand.bytes))
                  StreamBuilder:         \(Self.hex(swiftCommand.bytes))
                """)
        }
    }

    @Test func decoderReadsEveryFieldWhereTheGuestWroteIt() throws {
        let stream = try Self.cStream.get()
        let batch: CommandBatch
        do {
            batch = try ComputeStream.decode(stream, resolve: Self.resolve)
        } catch {
            Issue.record("ComputeStream.decode refused the guest's stream: \(error)")
            return
        }
        try #require(batch.kernels.count == Self.golden.count)
        for (kernel, golden) in zip(batch.kernels, Self.golden) {
            #expect(kernel == golden.kernel, "\(golden.name)")
        }
    }

    // MARK: Building the harness

    static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined(separator: " ")
    }

    /// gcc (or $CC), found on PATH. Not there is a failure: scripts/setup installs it.
    static func compiler() throws(TestFailure) -> String {
        let name = ProcessInfo.processInfo.environment["CC"].flatMap { $0.isEmpty ? nil : $0 } ?? "gcc"
        if name.contains("/") {
            if FileManager.default.isExecutableFile(atPath: name) { return name }
        } else {
            for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
                let path = "\(directory)/\(name)"
                if FileManager.default.isExecutableFile(atPath: path) { return path }
            }
        }
        throw TestFailure("""
            no C compiler: `\(name)` is not on PATH. This test builds the guest's stream encoders \
            (Guest/lib/vgpu_stream.c) for the host to check them against ComputeStream and StreamBuilder; \
            run scripts/setup, which installs gcc (or set CC).
            """)
    }

    /// Runs a program to its end; its output (stdout and stderr) and status.
    static func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    static func buildAndRunHarness() throws(TestFailure) -> [UInt8] {
        let cc = try compiler()
        // Built beside the test binary, not in /tmp: CI machines may forbid running programs from
        // /tmp (mounted noexec or confined), and the build directory is where programs run anyway.
        let productsDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let directory = productsDirectory
            .appendingPathComponent("stream-golden-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let program = directory.appendingPathComponent("stream_golden").path
            let output = directory.appendingPathComponent("stream.bin").path
            let build = try run(cc, ["-std=gnu11", "-O1", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
                                     "-I", root.appendingPathComponent("Guest/include").path,
                                     encoders.path, harness.path, "-o", program])
            guard build.status == 0 else {
                throw TestFailure("\(cc) could not build \(harness.lastPathComponent) with vgpu_stream.c:\n\(build.output)")
            }
            let result = try run(program, [output])
            guard result.status == 0 else {
                throw TestFailure("\(harness.lastPathComponent) failed (status \(result.status)):\n\(result.output)")
            }
            return Array(try Data(contentsOf: URL(fileURLWithPath: output)))
        } catch let failure as TestFailure {
            throw failure
        } catch {
            throw TestFailure("building or running \(harness.lastPathComponent): \(error)")
        }
    }
}
