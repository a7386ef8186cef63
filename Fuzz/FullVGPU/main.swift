import Foundation
import FuzzSupport
@testable import FullVGPU
import GPUHost
import Hypervisor
import Logging
import VGPUCore

// The full-vGPU's register writes and ring: one FullVGPUDevice on a real (never run) KVM
// machine with 32 MiB of RAM, on the CPU reference backend, with doorbell exiting on so the
// doorbell reaches the G-VMCS model as a register write. Per input the vGPU is reset, guest RAM
// from 2 MiB gets the input's image (the ring, commands, GPU page tables, streams it points
// at), then the input's register accesses go through the BAR as a vCPU's MMIO exits would;
// the device thread handles them (ENABLE programs the G-VMCS and runs the ring) and the input
// ends once it has. Input: [image length u16][image][accesses: op u8, then: op&3 == 0: a 4-byte
// write (offset u16, value u32); 1: an 8-byte write (offset u16, value u64); 2: a 4-byte read
// (offset u16); 3: a doorbell write (tail u32)].

let kernelPath = NSTemporaryDirectory() + "malvvm-fuzz-kernel-\(getpid()).elf"
_ = FileManager.default.createFile(atPath: kernelPath, contents: Data(minimalPVHELF(elf64: true)))
let machine = try! Machine(configuration: MachineConfiguration(kernelPath: kernelPath, memorySize: 32 << 20),
                           console: ConsoleWriter(sink: { _ in }))
unlink(kernelPath)
let scheduler = try! GPUScheduler(backend: CPUBackend())
var logger = Logger(label: "malvvm.fuzz.fullvgpu")
logger.logLevel = .critical
let device = try! machine.addPCIDevice(name: "fullvgpu", placement: .builtIn) { host throws(HypervisorError) in
    try FullVGPUDevice(host: host, scheduler: scheduler, profile: VGPUProfile(memoryBytes: 16 << 20),
                       controls: FullVGPUControls(doorbellExiting: true), name: "fuzz", logger: logger)
}.device
let imageBase: UInt64 = 2 << 20
let ram = try! machine.memory.slice(at: GuestAddress(imageBase), length: 1 << 20)
var accesses: UInt64 = 0

func write32(_ offset: UInt16, _ value: UInt32) -> [UInt8] {
    var w = ByteImage(); w.append(UInt8(0)); w.append(offset); w.append(value); return w.bytes
}

func seeds() -> [[UInt8]] {
    var image = ByteImage()
    image.put(UInt64(0), at: 0x1000)             // completion page, tail shadow
    image.put(UInt32(1), at: 0x2000)
    var prefix = ByteImage()
    prefix.append(UInt16(image.bytes.count)); prefix.append(image.bytes)
    let base = UInt32(imageBase)
    let setup = write32(0x110, base) + write32(0x114, 0) + write32(0x118, 16) + write32(0x120, base + 0x3000)
        + write32(0x124, 0) + write32(0x128, base + 0x1000) + write32(0x12c, 0) + write32(0x130, base + 0x2000)
        + write32(0x134, 0) + write32(0x140, 1)
    var doorbell = ByteImage(); doorbell.append(UInt8(3)); doorbell.append(UInt32(1))
    var reads = ByteImage()
    for offset: UInt16 in [0x0, 0x4, 0x8, 0xc, 0x100, 0x104, 0x108, 0x10c, 0x144, 0x148, 0x160] {
        reads.append(UInt8(2)); reads.append(offset)
    }
    return [prefix.bytes + setup + doorbell.bytes + reads.bytes, prefix.bytes + setup, reads.bytes]
}

func access(write offset: UInt64, _ value: UInt64, size: Int) {
    withUnsafeBytes(of: value.littleEndian) { device.writeBAR(0, offset: offset, data: UnsafeRawBufferPointer(rebasing: $0.prefix(size))) }
    accesses += 1
}

Fuzz.main(seeds: seeds) { data in
    var input = FuzzInput(data)
    access(write: 0x140, 2, size: 4)   // CONTROL: reset
    let image = input.take(Int(input.u16()))
    ram.initializeMemory(as: UInt8.self, repeating: 0)
    image.withUnsafeBytes { ram.copyMemory(from: $0) }
    for _ in 0 ..< 64 where !input.isEmpty {
        let op = input.u8()
        switch op & 3 {
        case 0: access(write: UInt64(input.u16() & 0xffc), UInt64(input.u32()), size: 4)
        case 1: access(write: UInt64(input.u16() & 0xff8), input.u64(), size: 8)
        case 2:
            var word = [UInt8](repeating: 0, count: 4)
            let offset = UInt64(input.u16() & 0xffc)
            word.withUnsafeMutableBytes { device.readBAR(0, offset: offset, data: $0) }
            accesses += 1
        default: access(write: 0, UInt64(input.u32()), size: 4)
        }
    }
    // The device thread has handled every access once its exit count says so.
    let deadline = Date().addingTimeInterval(10)
    while device.fullCounters.registerExits < accesses {
        guard Date() < deadline else { fatalError("the full-vGPU device thread did not handle its register accesses within 10 s") }
        usleep(50)
    }
}
