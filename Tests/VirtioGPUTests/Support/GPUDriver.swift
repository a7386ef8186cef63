@testable import VGPUCore
import VirtioTestSupport
import GPUHost
import Logging
@testable import Hypervisor
import Synchronization
@testable import VirtioGPU
#if canImport(Glibc)
import Glibc
#endif

typealias Response = VirtioGPUProtocol.Response
typealias Command = VirtioGPUProtocol.Command

/// Plays the guest driver of a VirtioGPU on a test ring: builds requests in guest memory,
/// offers them on the control queue, "rings the doorbell" (calls process), and collects the
/// responses, which may arrive later from a context's completion thread.
final class GPUDriver {
    var ring: TestRing
    let queue: Virtqueue
    let context: VirtioQueueContext
    let device: VirtioGPU
    let scheduler: GPUScheduler
    let interrupts = Counter()
    private var nextSlot = 0
    private var seenUsed: UInt16 = 0
    private var responses: [UInt16: UInt32] = [:]
    /// Every response header, in the order the device returned the chains.
    private(set) var returned: [ControlHeader] = []

    static let ringSize: UInt16 = 64
    static let requestBase: UInt64 = 0x10000
    static let requestStride: UInt64 = 0x1000
    static let responseBase: UInt64 = 0x30000
    static let responseStride: UInt64 = 0x200
    /// Guest pages for blobs start here.
    static let dataBase: UInt64 = 0x100000
    static let memorySize: UInt64 = 4 << 20

    var memory: GuestMemory { ring.memory }

    /// The cursor queue, at its own addresses in the same memory (size 16).
    let cursorQueue: Virtqueue
    static let cursorDescriptors: UInt64 = 0x5000, cursorAvailable: UInt64 = 0x6000, cursorUsed: UInt64 = 0x7000

    init(profile: VGPUProfile = VGPUProfile(memoryBytes: 64 << 20), scheduler: GPUScheduler? = nil,
         features: UInt64? = nil, maxQueuedKernels: Int = VirtioGPU.defaultMaxQueuedKernels) throws {
        ring = try TestRing(size: Self.ringSize, memorySize: Self.memorySize)
        queue = try ring.queue()
        cursorQueue = try Virtqueue(configuration: VirtqueueConfiguration(
            size: 16, descriptorTable: GuestAddress(Self.cursorDescriptors), availableRing: GuestAddress(Self.cursorAvailable),
            usedRing: GuestAddress(Self.cursorUsed)), memory: ring.memory)
        let scheduler = try scheduler ?? GPUScheduler(backend: CPUBackend())
        self.scheduler = scheduler
        device = VirtioGPU(scheduler: scheduler, profile: profile, memory: ring.memory, name: "vgpu-test",
                           logger: Logger(label: "malvvm.vgpu.test"), maxQueuedKernels: maxQueuedKernels)
        let interrupts = self.interrupts
        context = VirtioQueueContext(negotiatedFeatures: features ?? device.offeredFeatures,
                                     queues: [queue, cursorQueue]) { _ in
            interrupts.value.add(1, ordering: .relaxed)
        }
    }

    func shutdown() {
        device.stop()
        scheduler.stop()
    }

    // MARK: Raw requests

    /// Offers one request (readable) with a response buffer of `responseRoom` bytes and
    /// processes the queue. Returns the chain's head.
    @discardableResult
    func send(_ request: [UInt8], responseRoom: UInt32 = 0x200, process: Bool = true) throws -> UInt16 {
        precondition(request.count <= Int(Self.requestStride) || nextSlot == 0)
        let slot = UInt64(nextSlot % Int(Self.ringSize / 2))
        nextSlot += 1
        let head = UInt16(slot * 2)
        let requestAddress = Self.requestBase + slot * Self.requestStride
        let responseAddress = Self.responseBase + slot * Self.responseStride
        try memory.write(request, at: GuestAddress(requestAddress))
        try memory.fill(0xee, at: GuestAddress(responseAddress), length: UInt64(responseRoom))
        try ring.setDescriptor(head, address: requestAddress, length: UInt32(request.count), flags: Flag.next, next: head + 1)
        try ring.setDescriptor(head + 1, address: responseAddress, length: responseRoom, flags: Flag.write)
        try ring.offer(head)
        if process { try device.process(queue: 0, context: context) }
        return head
    }

    /// Offers a large request from the data area (for big streams).
    func sendLarge(_ request: [UInt8], at address: UInt64) throws -> UInt16 {
        let slot = UInt64(nextSlot % Int(Self.ringSize / 2))
        nextSlot += 1
        let head = UInt16(slot * 2)
        let responseAddress = Self.responseBase + slot * Self.responseStride
        try memory.write(request, at: GuestAddress(address))
        try ring.setDescriptor(head, address: address, length: UInt32(request.count), flags: Flag.next, next: head + 1)
        try ring.setDescriptor(head + 1, address: responseAddress, length: 0x200, flags: Flag.write)
        try ring.offer(head)
        try device.process(queue: 0, context: context)
        return head
    }

    /// Reads used entries published so far, in order; returns their heads.
    @discardableResult
    func collect() throws -> [UInt16] {
        var heads: [UInt16] = []
        let used = try ring.usedIndex()
        while seenUsed != used {
            let entry = try ring.usedEntry(seenUsed)
            responses[UInt16(entry.id)] = entry.length
            heads.append(UInt16(entry.id))
            if entry.length >= 24 {
                var reader = WireReader(try memory.read(24, at: GuestAddress(Self.responseBase + UInt64(entry.id / 2) * Self.responseStride)))
                returned.append(try ControlHeader(&reader))
            }
            seenUsed &+= 1
        }
        return heads
    }

    /// Waits (polling, with a generous deadline so a bug fails instead of hanging) for the
    /// response to `head`; returns its header and bytes.
    func response(_ head: UInt16) throws -> (header: ControlHeader, bytes: [UInt8]) {
        let deadline = clockSeconds() + 60
        while responses[head] == nil {
            try collect()
            if responses[head] != nil { break }
            guard clockSeconds() < deadline else { throw TestFailure("no response to chain \(head)") }
            usleep(200)
        }
        let length = responses.removeValue(forKey: head)!
        let slot = UInt64(head / 2)
        let bytes = try memory.read(Int(length), at: GuestAddress(Self.responseBase + slot * Self.responseStride))
        guard bytes.count >= 24 else { return (ControlHeader(type: 0), bytes) }
        var reader = WireReader(bytes)
        return (try ControlHeader(&reader), bytes)
    }

    /// Sends a request and waits for its response code.
    func call(_ request: [UInt8]) throws -> UInt32 {
        try response(try send(request)).header.type
    }

    // MARK: Commands

    static func header(_ type: Command, context: UInt32 = 0, fence: UInt64? = nil, ring: UInt8? = nil) -> [UInt8] {
        var w = WireWriter()
        var flags: UInt32 = 0
        if fence != nil { flags |= VirtioGPUProtocol.flagFence }
        if ring != nil { flags |= VirtioGPUProtocol.flagInfoRingIndex }
        ControlHeader(type: type.rawValue, flags: flags, fenceID: fence ?? 0, contextID: context, ringIndex: ring ?? 0)
            .encode(into: &w)
        return w.bytes
    }

    static func createContext(_ id: UInt32, capset: UInt32 = VirtioGPU.computeCapsetID, name: String = "test") -> [UInt8] {
        var w = WireWriter()
        w.append(header(.contextCreate, context: id))
        let nameBytes = Array(name.utf8.prefix(64))
        w.u32(UInt32(nameBytes.count))
        w.u32(capset)
        w.append(nameBytes + [UInt8](repeating: 0, count: 64 - nameBytes.count))
        return w.bytes
    }

    static func simple(_ type: Command, context: UInt32 = 0, fence: UInt64? = nil, _ words: [UInt32] = []) -> [UInt8] {
        var w = WireWriter()
        w.append(header(type, context: context, fence: fence))
        for word in words { w.u32(word) }
        return w.bytes
    }

    static func createBlob(_ id: UInt32, context: UInt32, memory: VirtioGPUProtocol.BlobMemory, size: UInt64,
                           entries: [(UInt64, UInt32)] = [], flags: UInt32 = 0, blobID: UInt64 = 0) -> [UInt8] {
        var w = WireWriter()
        w.append(header(.resourceCreateBlob, context: context))
        w.u32(id)
        w.u32(memory.rawValue)
        w.u32(flags)
        w.u32(UInt32(entries.count))
        w.u64(blobID)
        w.u64(size)
        for (address, length) in entries {
            w.u64(address)
            w.u32(length)
            w.u32(0)
        }
        return w.bytes
    }

    static func attachBacking(_ id: UInt32, entries: [(UInt64, UInt32)]) -> [UInt8] {
        var w = WireWriter()
        w.append(header(.resourceAttachBacking))
        w.u32(id)
        w.u32(UInt32(entries.count))
        for (address, length) in entries {
            w.u64(address)
            w.u32(length)
            w.u32(0)
        }
        return w.bytes
    }

    static func transfer(_ toHost: Bool, context: UInt32, resource: UInt32, x: UInt32, width: UInt32, offset: UInt64,
                         fence: UInt64? = nil, box: [UInt32]? = nil, level: UInt32 = 0) -> [UInt8] {
        var w = WireWriter()
        w.append(header(toHost ? .transferToHost3D : .transferFromHost3D, context: context, fence: fence))
        for value in box ?? [x, 0, 0, width, 1, 1] { w.u32(value) }
        w.u64(offset)
        w.u32(resource)
        w.u32(level)
        w.u32(0)  // stride
        w.u32(0)  // layer_stride
        return w.bytes
    }

    static func submit(context: UInt32, stream: [UInt8], fence: UInt64? = nil, ring: UInt8? = nil,
                       declaredSize: UInt32? = nil, inFences: UInt32 = 0) -> [UInt8] {
        var w = WireWriter()
        w.append(header(.submit3D, context: context, fence: fence, ring: ring))
        w.u32(declaredSize ?? UInt32(stream.count))
        w.u32(inFences)
        w.append(stream)
        return w.bytes
    }

    // MARK: Guest data

    func write(floats: [Float], at address: UInt64) throws {
        var bytes: [UInt8] = []
        for value in floats {
            let bits = value.bitPattern
            for i in 0 ..< 4 { bytes.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt32(i)))) }
        }
        try memory.write(bytes, at: GuestAddress(address))
    }

    func readFloats(at address: UInt64, count: Int) throws -> [Float] {
        let bytes = try memory.read(count * 4, at: GuestAddress(address))
        return (0 ..< count).map { i in
            var bits: UInt32 = 0
            for b in 0 ..< 4 { bits |= UInt32(bytes[i * 4 + b]) << (8 * UInt32(b)) }
            return Float(bitPattern: bits)
        }
    }
}

/// Builds a compute command stream (docs/vgpu-protocol.md).
struct StreamBuilder {
    private(set) var commands: [[UInt8]] = []
    var magic = ComputeStream.magic
    var version = ComputeStream.version
    var declaredCount: UInt32?

    static func ref(_ resource: UInt32, offset: UInt64, length: UInt32) -> [UInt8] {
        var w = WireWriter()
        w.u32(resource)
        w.u32(length)
        w.u64(offset)
        return w.bytes
    }

    /// Any command, with the length field computed unless given.
    mutating func raw(_ opcode: UInt16, _ body: [UInt8], length: UInt32? = nil) {
        var w = WireWriter()
        w.u8(UInt8(opcode & 0xff))
        w.u8(UInt8(opcode >> 8))
        w.u8(0)
        w.u8(0)
        w.u32(length ?? UInt32(8 + body.count))
        w.append(body)
        commands.append(w.bytes)
    }

    // One encoder per opcode, written from docs/vgpu-protocol.md's table (not from the guest's
    // C encoders): ComputeStreamAgreementTests checks that the three encoders agree.

    mutating func sgemm(m: UInt32, n: UInt32, k: UInt32, transpose: UInt32 = 0, alpha: Float = 1, beta: Float = 0,
                        a: [UInt8], b: [UInt8], c: [UInt8]) {
        command(.sgemm, [m, n, k, transpose, alpha.bitPattern, beta.bitPattern], a, b, c)
    }

    mutating func biasAdd(outer: UInt32, channels: UInt32, inner: UInt32 = 1, data: [UInt8], bias: [UInt8]) {
        command(.biasAdd, [outer, channels, inner, 0], data, bias)
    }

    /// `kind`: 0 ReLU, 1 GELU.
    mutating func activation(_ kind: UInt32, count: UInt32, input: [UInt8], output: [UInt8]) {
        command(.activation, [kind, count], input, output)
    }

    mutating func relu(count: UInt32, input: [UInt8], output: [UInt8]) {
        activation(0, count: count, input: input, output: output)
    }

    mutating func activationBackward(_ kind: UInt32, count: UInt32, input: [UInt8], outputGradient: [UInt8],
                                     inputGradient: [UInt8]) {
        command(.activationBackward, [kind, count], input, outputGradient, inputGradient)
    }

    mutating func softmax(rows: UInt32, columns: UInt32, input: [UInt8], output: [UInt8]) {
        command(.softmax, [rows, columns], input, output)
    }

    mutating func softmaxCrossEntropy(rows: UInt32, classes: UInt32, gradientScale: Float, logits: [UInt8],
                                      labels: [UInt8], loss: [UInt8], logitsGradient: [UInt8]) {
        command(.softmaxCrossEntropy, [rows, classes, gradientScale.bitPattern, 0], logits, labels, loss, logitsGradient)
    }

    /// `op`: 0 sum, 1 max; `axis`: 0 per row, 1 per column.
    mutating func reduce(op: UInt32, axis: UInt32, rows: UInt32, columns: UInt32, input: [UInt8], output: [UInt8]) {
        command(.reduce, [op, axis, rows, columns], input, output)
    }

    mutating func axpy(count: UInt32, alpha: Float, x: [UInt8], y: [UInt8]) {
        command(.axpy, [count, alpha.bitPattern], x, y)
    }

    mutating func scale(count: UInt32, alpha: Float, x: [UInt8]) {
        command(.scale, [count, alpha.bitPattern], x)
    }

    /// The 11 shape words of the convolutions.
    static func words(_ shape: Conv2DShape) -> [UInt32] {
        [shape.batch, shape.inChannels, shape.height, shape.width, shape.outChannels, shape.kernelHeight,
         shape.kernelWidth, shape.strideY, shape.strideX, shape.padY, shape.padX].map { UInt32(truncatingIfNeeded: $0) }
    }

    /// An absent optional operand is an all-zero reference.
    static let nullRef = [UInt8](repeating: 0, count: ComputeReference.size)

    mutating func conv2dForward(shape: Conv2DShape, input: [UInt8], weight: [UInt8], bias: [UInt8]?, output: [UInt8]) {
        command(.conv2dForward, Self.words(shape) + [bias == nil ? 0 : 1], input, weight, bias ?? Self.nullRef, output)
    }

    mutating func conv2dBackwardData(shape: Conv2DShape, outputGradient: [UInt8], weight: [UInt8],
                                     inputGradient: [UInt8]) {
        command(.conv2dBackwardData, Self.words(shape) + [0], outputGradient, weight, inputGradient)
    }

    mutating func conv2dBackwardFilter(shape: Conv2DShape, input: [UInt8], outputGradient: [UInt8],
                                       weightGradient: [UInt8], biasGradient: [UInt8]?) {
        command(.conv2dBackwardFilter, Self.words(shape) + [biasGradient == nil ? 0 : 1], input, outputGradient,
                weightGradient, biasGradient ?? Self.nullRef)
    }

    /// `mean` and `std` hold `channels` values (1 ... 4); the slots past them are sent as 0.
    mutating func normalizeU8(batch: UInt32, height: UInt32, width: UInt32, channels: UInt32, scale: Float,
                              mean: [Float], std: [Float], input: [UInt8], output: [UInt8]) {
        func slots(_ values: [Float]) -> [UInt32] {
            (0 ..< 4).map { $0 < values.count ? values[$0].bitPattern : 0 }
        }
        command(.normalizeU8, [batch, height, width, channels, scale.bitPattern, 0] + slots(mean) + slots(std),
                input, output)
    }

    mutating func crop(batch: UInt32, channels: UInt32, height: UInt32, width: UInt32, top: UInt32, left: UInt32,
                       outHeight: UInt32, outWidth: UInt32, input: [UInt8], output: [UInt8]) {
        command(.crop, [batch, channels, height, width, top, left, outHeight, outWidth], input, output)
    }

    mutating func flipHorizontal(batch: UInt32, channels: UInt32, height: UInt32, width: UInt32, input: [UInt8],
                                 output: [UInt8]) {
        command(.flipHorizontal, [batch, channels, height, width], input, output)
    }

    mutating func resizeBilinear(batch: UInt32, channels: UInt32, height: UInt32, width: UInt32, outHeight: UInt32,
                                 outWidth: UInt32, input: [UInt8], output: [UInt8]) {
        command(.resizeBilinear, [batch, channels, height, width, outHeight, outWidth], input, output)
    }

    mutating func copy(source: [UInt8], destination: [UInt8]) {
        command(.copy, [], source, destination)
    }

    mutating func maxPool2DForward(batch: UInt32, channels: UInt32, height: UInt32, width: UInt32, input: [UInt8],
                                   output: [UInt8]) {
        command(.maxpool2dForward, [batch, channels, height, width], input, output)
    }

    mutating func maxPool2DBackward(batch: UInt32, channels: UInt32, height: UInt32, width: UInt32, input: [UInt8],
                                    outputGradient: [UInt8], inputGradient: [UInt8]) {
        command(.maxpool2dBackward, [batch, channels, height, width], input, outputGradient, inputGradient)
    }

    /// The usual layout: u32 words, then buffer references.
    private mutating func command(_ opcode: ComputeStream.Opcode, _ words: [UInt32], _ references: [UInt8]...) {
        var w = WireWriter()
        for v in words { w.u32(v) }
        for reference in references { w.append(reference) }
        raw(opcode.rawValue, w.bytes)
    }

    var bytes: [UInt8] {
        var w = WireWriter()
        w.u32(magic)
        w.u8(UInt8(version & 0xff))
        w.u8(UInt8(version >> 8))
        w.u8(0)
        w.u8(0)
        w.u32(declaredCount ?? UInt32(commands.count))
        w.u32(0)
        for command in commands { w.append(command) }
        return w.bytes
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func clockSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// C = relu(A·B + bias), the CPU reference of the full-flow batch.
func referenceDense(_ a: [Float], _ b: [Float], _ bias: [Float], m: Int, n: Int, k: Int) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    for i in 0 ..< m {
        for j in 0 ..< n {
            var sum: Float = 0
            for p in 0 ..< k { sum += a[i * k + p] * b[p * n + j] }
            c[i * n + j] = max(0, sum + bias[j])
        }
    }
    return c
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
}
