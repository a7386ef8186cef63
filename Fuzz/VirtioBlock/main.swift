import Foundation
import FuzzSupport
@testable import Hypervisor

// virtio-blk requests: a VirtioBlock on a 1 MiB temporary disk processes whatever request chains
// the input's rings offer (reads, writes, flushes, IDs, discards, write-zeroes, and anything
// else). Input: [flags][log2 queue size][memory image from guest address 0, rings packed from 0
// (PackedRing)]. Flags: bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 the read-only disk.

let memorySize: UInt64 = 64 << 10
let memory = try! GuestMemory(layout: [(start: GuestAddress(0), size: memorySize)])
let ram = try! memory.slice(at: GuestAddress(0), length: memorySize)
let diskPath = NSTemporaryDirectory() + "malvvm-fuzz-blk-\(getpid()).img"
FileManager.default.createFile(atPath: diskPath, contents: Data(count: 1 << 20))
let disks = [try! VirtioBlock(path: diskPath, readOnly: false), try! VirtioBlock(path: diskPath, readOnly: true)]
unlink(diskPath)

func request(_ ring: PackedRing, _ image: inout ByteImage, head: UInt16, type: UInt32, sector: UInt64,
             data: UInt32, writable: Bool, at address: UInt64) {
    image.put(type, at: Int(address))
    image.put(sector, at: Int(address) + 8)
    ring.descriptor(head, address: address, length: 16, flags: PackedRing.next, next: head + 1, into: &image)
    if data > 0 {
        ring.descriptor(head + 1, address: address + 0x100, length: data,
                        flags: PackedRing.next | (writable ? PackedRing.write : 0), next: head + 2, into: &image)
        ring.descriptor(head + 2, address: address + 0x80, length: 1, flags: PackedRing.write, into: &image)
    } else {
        ring.descriptor(head + 1, address: address + 0x80, length: 1, flags: PackedRing.write, into: &image)
    }
}

func seeds() -> [[UInt8]] {
    let ring = PackedRing(size: 16)
    var result: [[UInt8]] = []
    // Write, read back the next sector (merged), flush, get ID.
    var image = ByteImage()
    request(ring, &image, head: 0, type: 1, sector: 2, data: 512, writable: false, at: 0x1000)
    request(ring, &image, head: 3, type: 0, sector: 3, data: 512, writable: true, at: 0x1400)
    request(ring, &image, head: 6, type: 4, sector: 0, data: 0, writable: false, at: 0x1800)
    request(ring, &image, head: 8, type: 8, sector: 0, data: 20, writable: true, at: 0x1c00)
    ring.offer([0, 3, 6, 8], into: &image)
    result.append([0, 4] + image.bytes)
    result.append([4, 4] + image.bytes)
    // Discard and write-zeroes: a 16-byte segment (sector, count, flags) as the data.
    var zeroes = ByteImage()
    request(ring, &zeroes, head: 0, type: 11, sector: 0, data: 16, writable: false, at: 0x1000)
    request(ring, &zeroes, head: 3, type: 13, sector: 0, data: 16, writable: false, at: 0x1400)
    zeroes.put(UInt64(4), at: 0x1100); zeroes.put(UInt32(8), at: 0x1108)
    zeroes.put(UInt64(8), at: 0x1500); zeroes.put(UInt32(8), at: 0x1508)
    ring.offer([0, 3], into: &zeroes)
    result.append([1, 4] + zeroes.bytes)
    return result
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
    let disk = disks[flags & 4 != 0 ? 1 : 0]
    let features = (flags & 1 != 0 ? VirtioFeature.eventIndex : 0) | (flags & 2 != 0 ? VirtioFeature.indirectDescriptors : 0)
    let context = VirtioQueueContext(negotiatedFeatures: features | VirtioFeature.version1, queues: [queue]) { _ in }
    _ = try? disk.process(queue: 0, context: context)
    var configurationBytes = [UInt8](repeating: 0, count: 8)
    configurationBytes.withUnsafeMutableBytes { disk.readConfiguration(offset: Int(flags >> 3), into: $0) }
}
