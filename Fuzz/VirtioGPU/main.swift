import FuzzSupport
import GPUHost
@testable import Hypervisor
import Logging
import VGPUCore
import VirtioGPU

// virtio-gpu control commands: a VirtioGPU (the para-vGPU) on the CPU reference backend serves
// whatever control chains the input's rings offer: 2D and blob resources, backing, contexts,
// capsets, transfers, SUBMIT_3D with its compute stream. A fresh device per input, stopped (its
// contexts' queued work cancelled or finished) before the next. Input: [flags][log2 queue
// size][memory image from guest address 0, control queue packed from 0 (PackedRing)].
// Flags: bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 withhold the blob/context-init features.

let memorySize: UInt64 = 128 << 10
let memory = try! GuestMemory(layout: [(start: GuestAddress(0), size: memorySize)])
let ram = try! memory.slice(at: GuestAddress(0), length: memorySize)
let scheduler = try! GPUScheduler(backend: CPUBackend())
let profile = VGPUProfile(memoryBytes: 4 << 20)
var logger = Logger(label: "malvvm.fuzz.vgpu")
logger.logLevel = .critical

/// A control header (struct virtio_gpu_ctrl_hdr, 24 bytes).
func header(_ type: UInt32, context: UInt32 = 0, fence: UInt64? = nil) -> ByteImage {
    var w = ByteImage()
    w.append(type); w.append(UInt32(fence == nil ? 0 : 1)); w.append(fence ?? 0); w.append(context); w.append(UInt32(0))
    return w
}

func seeds() -> [[UInt8]] {
    let ring = PackedRing(size: 16)
    var requests: [[UInt8]] = []
    requests.append(header(0x0100).bytes)                          // GET_DISPLAY_INFO
    var capset = header(0x0108); capset.append(UInt32(0)); capset.append(UInt32(0))
    requests.append(capset.bytes)                                  // GET_CAPSET_INFO 0
    var create = header(0x0200, context: 1)                        // CTX_CREATE, compute capset
    create.append(UInt32(4)); create.append(UInt32(VirtioGPU.computeCapsetID)); create.append(Array("fuzz".utf8) + [UInt8](repeating: 0, count: 60))
    requests.append(create.bytes)
    var blob = header(0x010c, context: 1)                          // RESOURCE_CREATE_BLOB, guest memory
    blob.append(UInt32(1)); blob.append(UInt32(1)); blob.append(UInt32(0)); blob.append(UInt32(1))
    blob.append(UInt64(0)); blob.append(UInt64(4096))
    blob.append(UInt64(0x10000)); blob.append(UInt32(4096)); blob.append(UInt32(0))
    requests.append(blob.bytes)
    var attach = header(0x0202, context: 1); attach.append(UInt32(1)); attach.append(UInt32(0))
    requests.append(attach.bytes)                                  // CTX_ATTACH_RESOURCE
    var stream = ByteImage()                                       // one SCALE of 16 floats
    stream.append(ComputeStream.magic); stream.append(ComputeStream.version); stream.append(UInt16(0))
    stream.append(UInt32(1)); stream.append(UInt32(0))
    stream.append(ComputeStream.Opcode.scale.rawValue); stream.append(UInt16(0))
    stream.append(UInt32(ComputeStream.Opcode.scale.length))
    stream.append(UInt32(16)); stream.append(Float(2).bitPattern)
    stream.append(UInt32(1)); stream.append(UInt32(64)); stream.append(UInt64(0))
    var submit = header(0x0207, context: 1, fence: 7)              // SUBMIT_3D
    submit.append(UInt32(stream.bytes.count)); submit.append(UInt32(0)); submit.append(stream.bytes)
    requests.append(submit.bytes)
    var unref = header(0x0102); unref.append(UInt32(1)); unref.append(UInt32(0))
    requests.append(unref.bytes)                                   // RESOURCE_UNREF
    requests.append(header(0x0201, context: 1).bytes)              // CTX_DESTROY

    var image = ByteImage()
    var heads: [UInt16] = []
    for (index, request) in requests.enumerated() {
        let head = UInt16(index * 2)
        let address = 0x1000 + UInt64(index) * 0x200
        image.put(request, at: Int(address))
        ring.descriptor(head, address: address, length: UInt32(request.count), flags: PackedRing.next, next: head + 1, into: &image)
        ring.descriptor(head + 1, address: 0x8000 + UInt64(index) * 0x100, length: 0x100, flags: PackedRing.write, into: &image)
        heads.append(head)
    }
    ring.offer(heads, into: &image)
    var floats = ByteImage()
    for i in 0 ..< 16 { floats.append(Float(i).bitPattern) }
    image.put(floats.bytes, at: 0x10000)
    return [[0, 4] + image.bytes, [3, 4] + image.bytes, [0, 4] + Array(image.bytes.prefix(0x1000 + 3 * 0x200))]
}

Fuzz.main(seeds: seeds) { data in
    var input = FuzzInput(data)
    let flags = input.u8()
    let size = UInt16(1) << (input.u8() % 9)
    let ring = PackedRing(size: size)
    let configuration = VirtqueueConfiguration(size: size, descriptorTable: GuestAddress(ring.descriptors),
                                               availableRing: GuestAddress(ring.available), usedRing: GuestAddress(ring.used),
                                               eventIndex: flags & 1 != 0, indirectDescriptors: flags & 2 != 0)
    let image = input.rest()
    ram.initializeMemory(as: UInt8.self, repeating: 0)
    image.withUnsafeBytes { ram.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(ram.count))) }
    guard let queue = try? Virtqueue(configuration: configuration, memory: memory) else { return }
    let device = VirtioGPU(scheduler: scheduler, profile: profile, memory: memory, name: "fuzz", logger: logger)
    var features = device.offeredFeatures
    if flags & 4 != 0 { features &= ~(VirtioGPUProtocol.Feature.resourceBlob | VirtioGPUProtocol.Feature.contextInit) }
    if flags & 1 == 0 { features &= ~VirtioFeature.eventIndex }
    if flags & 2 == 0 { features &= ~VirtioFeature.indirectDescriptors }
    let context = VirtioQueueContext(negotiatedFeatures: features, queues: [queue, nil]) { _ in }
    _ = try? device.process(queue: 0, context: context)
    _ = try? device.process(queue: 1, context: context)
    device.stop()
}
