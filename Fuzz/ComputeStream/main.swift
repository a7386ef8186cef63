import FuzzSupport
import GPUHost
import VGPUCore

// The compute stream (docs/vgpu-protocol.md) both vGPU kinds carry: decoded and resolved by
// ComputeStream.decode, then validated by GPUHost's rules (CommandBatch.validate: shapes,
// bounds, aliasing) as VirtioGPU does before anything runs. The input is the stream; resources
// 1-8 are 64 KiB blobs, the rest unknown.

let resourceBytes: UInt64 = 64 << 10

func resolve(_ reference: ComputeReference, _ element: ElementType, _ command: Int,
             _ operand: String) throws(ComputeStreamError) -> BufferRange {
    guard (1 ... 8).contains(reference.resourceID) else {
        throw .invalidResource(command: command, operand: operand, resourceID: reference.resourceID)
    }
    let size = UInt64(element.byteSize)
    guard reference.length > 0, reference.offset % size == 0, UInt64(reference.length) % size == 0,
          reference.offset <= resourceBytes, UInt64(reference.length) <= resourceBytes - reference.offset else {
        throw .badReference(command: command, operand: operand, reason: "outside the blob")
    }
    return BufferRange(BufferID(rawValue: UInt64(reference.resourceID)), offset: Int(reference.offset / size),
                       count: Int(UInt64(reference.length) / size))
}

func words(_ values: [UInt32]) -> [UInt8] {
    var w = ByteImage()
    for v in values { w.append(v) }
    return w.bytes
}

func ref(_ id: UInt32, _ offset: UInt64, _ count: Int, _ element: Int = 4) -> [UInt8] {
    var w = ByteImage()
    w.append(id); w.append(UInt32(count * element)); w.append(offset * UInt64(element))
    return w.bytes
}

func stream(_ commands: [(ComputeStream.Opcode, [UInt8])]) -> [UInt8] {
    var w = ByteImage()
    w.append(ComputeStream.magic); w.append(ComputeStream.version); w.append(UInt16(0))
    w.append(UInt32(commands.count)); w.append(UInt32(0))
    for (opcode, body) in commands {
        w.append(opcode.rawValue); w.append(UInt16(0)); w.append(UInt32(8 + body.count)); w.append(body)
    }
    return w.bytes
}

func seeds() -> [[UInt8]] {
    let f = { (x: Float) in x.bitPattern }
    let shape: [UInt32] = [2, 3, 8, 8, 4, 3, 3, 1, 1, 1, 1]
    let inCount = 2 * 3 * 8 * 8, weightCount = 4 * 3 * 3 * 3, outCount = 2 * 4 * 8 * 8
    let commands: [(ComputeStream.Opcode, [UInt8])] = [
        (.sgemm, words([2, 3, 4, 0b10, f(0.5), f(1)]) + ref(1, 0, 8) + ref(2, 4, 12) + ref(3, 0, 6)),
        (.biasAdd, words([2, 3, 5, 0]) + ref(1, 0, 30) + ref(2, 0, 3)),
        (.activation, words([1, 16]) + ref(1, 0, 16) + ref(1, 0, 16)),
        (.activationBackward, words([0, 4]) + ref(1, 0, 4) + ref(2, 0, 4) + ref(3, 0, 4)),
        (.softmax, words([3, 5]) + ref(1, 0, 15) + ref(2, 0, 15)),
        (.softmaxCrossEntropy, words([3, 5, f(0.25), 0]) + ref(1, 0, 15) + ref(2, 0, 3) + ref(3, 0, 3) + ref(4, 0, 15)),
        (.reduce, words([1, 1, 4, 6]) + ref(1, 0, 24) + ref(2, 0, 6)),
        (.axpy, words([8, f(-0.1)]) + ref(1, 0, 8) + ref(2, 8, 8)),
        (.scale, words([8, f(3)]) + ref(1, 2, 8)),
        (.conv2dForward, words(shape + [1]) + ref(1, 0, inCount) + ref(2, 0, weightCount) + ref(3, 0, 4) + ref(4, 0, outCount)),
        (.conv2dBackwardData, words(shape + [0]) + ref(1, 0, outCount) + ref(2, 0, weightCount) + ref(3, 0, inCount)),
        (.conv2dBackwardFilter, words(shape + [0]) + ref(1, 0, inCount) + ref(2, 0, outCount) + ref(3, 0, weightCount)
            + [UInt8](repeating: 0, count: 16)),
        (.normalizeU8, words([1, 4, 4, 3, f(1.0 / 255), 0, f(0.5), f(0.4), f(0.3), 0, f(0.2), f(0.2), f(0.2), 0])
            + ref(1, 0, 48, 1) + ref(2, 0, 48)),
        (.crop, words([1, 3, 8, 8, 1, 2, 4, 5]) + ref(1, 0, 192) + ref(2, 0, 60)),
        (.flipHorizontal, words([1, 3, 8, 8]) + ref(1, 0, 192) + ref(2, 0, 192)),
        (.resizeBilinear, words([1, 3, 8, 8, 4, 4]) + ref(1, 0, 192) + ref(2, 0, 48)),
        (.copy, ref(1, 0, 10) + ref(2, 5, 10)),
        (.maxpool2dForward, words([2, 3, 8, 7]) + ref(1, 0, 336) + ref(2, 0, 72)),
        (.maxpool2dBackward, words([2, 3, 8, 7]) + ref(1, 0, 336) + ref(2, 0, 72) + ref(3, 0, 336)),
    ]
    // Every opcode alone (those whose layout matches), then all of them in one stream.
    return commands.filter { $0.1.count + 8 == $0.0.length }.map { stream([$0]) } + [stream(commands)]
}

Fuzz.main(seeds: seeds) { data in
    let bytes = Array(data)
    guard let batch = try? ComputeStream.decode(bytes, resolve: resolve) else { return }
    _ = try? batch.validate(capacity: { buffer in
        (1 ... 8).contains(buffer.rawValue) ? Int(resourceBytes) / 4 : nil
    })
}
