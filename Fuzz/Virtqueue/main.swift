import FuzzSupport
import Hypervisor

// Virtqueue chain walking: the driver's rings and descriptors are the input, laid in guest
// memory; the device pops every chain it is offered and moves bytes through it, as a device
// thread does. Input: [flags][log2 queue size][3 ring addresses if flags bit 2][memory image
// from guest address 0]. Flags: bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 explicit ring
// addresses (else packed from 0: PackedRing).

let memorySize: UInt64 = 64 << 10
let memory = try! GuestMemory(layout: [(start: GuestAddress(0), size: memorySize)])
let ram = try! memory.slice(at: GuestAddress(0), length: memorySize)

func seeds() -> [[UInt8]] {
    var result: [[UInt8]] = []
    let ring = PackedRing(size: 16)
    // A readable buffer then a writable one; then an indirect table of two.
    var image = ByteImage()
    ring.descriptor(0, address: 0x800, length: 64, flags: PackedRing.next, next: 1, into: &image)
    ring.descriptor(1, address: 0x900, length: 128, flags: PackedRing.write, into: &image)
    ring.descriptor(2, address: 0xa00, length: 32, flags: PackedRing.indirect, into: &image)
    ring.descriptor(0, address: 0xb00, length: 16, flags: PackedRing.next, next: 1, into: &image, table: 0xa00)
    ring.descriptor(1, address: 0xc00, length: 16, flags: PackedRing.write, into: &image, table: 0xa00)
    ring.offer([0, 2], into: &image)
    image.put([UInt8](repeating: 0x5a, count: 64), at: 0x800)
    for flags: UInt8 in [0, 1, 2, 3] { result.append([flags, 4] + image.bytes) }
    var explicit = ByteImage()
    explicit.append([UInt8(4 | 2), 4])
    explicit.append(UInt16(ring.descriptors)); explicit.append(UInt16(ring.available)); explicit.append(UInt16(ring.used))
    result.append(explicit.bytes + image.bytes)
    return result
}

Fuzz.main(seeds: seeds) { data in
    var input = FuzzInput(data)
    let flags = input.u8()
    let size = UInt16(1) << (input.u8() % 10)
    var configuration: VirtqueueConfiguration
    if flags & 4 != 0 {
        configuration = VirtqueueConfiguration(size: size, descriptorTable: GuestAddress(UInt64(input.u16())),
                                               availableRing: GuestAddress(UInt64(input.u16())), usedRing: GuestAddress(UInt64(input.u16())))
    } else {
        let ring = PackedRing(size: size)
        configuration = VirtqueueConfiguration(size: size, descriptorTable: GuestAddress(ring.descriptors),
                                               availableRing: GuestAddress(ring.available), usedRing: GuestAddress(ring.used))
    }
    configuration.eventIndex = flags & 1 != 0
    configuration.indirectDescriptors = flags & 2 != 0
    let image = input.rest()
    ram.initializeMemory(as: UInt8.self, repeating: 0)
    image.withUnsafeBytes { ram.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(ram.count))) }

    guard let queue = try? Virtqueue(configuration: configuration, memory: memory) else { return }
    var rounds = 0
    while rounds < 2 * Int(size) + 8 {
        rounds += 1
        let chain: DescriptorChain?
        do { chain = try queue.popChain() } catch { return }
        guard let chain else {
            if queue.enableNotification() { continue }
            break
        }
        let bytes = queue.gather(chain, skip: UInt64(flags >> 4), count: Int(min(chain.readableLength, 1 << 16)))
        let written = queue.scatter(bytes + [1, 2, 3], into: chain, skip: UInt64(flags >> 6))
        for slice in queue.hostSlices(chain.writable) { slice.initializeMemory(as: UInt8.self, repeating: 0xa5) }
        queue.pushUsed(head: chain.head, length: UInt32(written))
        _ = queue.needsInterrupt()
    }
}
