import Foundation
@testable import FullVGPU
import GPUHost
import Hypervisor
import Testing
import VGPUCore

/// Inputs scripts/fuzz's full-vgpu target crashed on, replayed the way that target drives the
/// device (Fuzz/FullVGPU/main.swift): a full-vGPU on a real, never-run KVM machine, reset, guest
/// RAM from 2 MiB filled with the input's image, then its register accesses through the BAR.
@Suite(.serialized) struct FullVGPUFuzzRegressionTests {
    /// fuzz/crashes/full-vgpu/crash-bb08997f…: a COMPLETION_PAGE near 2^64, a fault, then the
    /// register page's refresh read the fence at page + 40, and the sum trapped (the VMM died).
    static let completionPageOverflow = "AgAAAkQAAQCIAgwAAgIAYnoEAicAAgz+////LgAAAAAAAAAAAAAAAAAAMv////////////////////////9BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQQECAAACRAABAIgCDAACAgBiegQCJwACDP56BAInAAIM/v///y4AAACqAAAAAAAAAAAAAP////////////////////////9BQUFBQUFBQUFBQUFBQUFB////RQAAAAACDP7///8AswAAAAAAAAAAAAAAAP////////////////////////////9FAAAAAAAAAP8CAAACJEFBQUFBQUH///96/////////zlBQUFBQUFBQUFBBPgAQUFBQUFBQUFBQUFBQUFBQUFBQUFB////RQAAAAAAAAD/AgAAAiRBQUFBQS9B/////////////zUBQUGIAgwAAgIAYnoEAicAAgz+////AAAAAAAAAAAAAAAAAAD/////////////////////////////RQAAAAAAAAD/AgAAAiRBQUFBQUFB////ev////////81AUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQQFBQUFBQUFBQUFBBPgAQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQQFBQUFBQUFBQUFBBPgA/w=="

    @Test func fenceAddressNeverOverflows() {
        // The fence sits 40 bytes into the page: a page within 40 bytes of 2^64 has no fence address.
        #expect(FullVGPUDevice.fenceAddress(UInt64.max - 39) == nil)
        #expect(FullVGPUDevice.fenceAddress(UInt64.max - 40)?.raw == UInt64.max)
        #expect(FullVGPUDevice.fenceAddress(0x10_0000)?.raw == 0x10_0028)
    }

    @Test func completionPageNearTheTopOfTheAddressSpaceIsAFaultNotACrash() throws {
        try Self.replay([UInt8](Data(base64Encoded: Self.completionPageOverflow)!))
    }

    static func replay(_ input: [UInt8]) throws {
        let kernel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Guest/build/malvguest.elf").path
        let machine = try Machine(configuration: MachineConfiguration(kernelPath: kernel, memorySize: 32 << 20),
                                  console: ConsoleWriter(sink: { _ in }))
        let scheduler = try GPUScheduler(backend: CPUBackend())
        defer { scheduler.stop() }
        let device = try machine.addPCIDevice(name: "fullvgpu", placement: .builtIn) { host throws(HypervisorError) in
            try FullVGPUDevice(host: host, scheduler: scheduler, profile: VGPUProfile(memoryBytes: 16 << 20),
                               controls: FullVGPUControls(doorbellExiting: true), name: "fuzz-replay")
        }.device
        defer { device.stop() }
        var accesses: UInt64 = 0
        func write(_ offset: UInt64, _ value: UInt64, size: Int) {
            withUnsafeBytes(of: value.littleEndian) {
                device.writeBAR(0, offset: offset, data: UnsafeRawBufferPointer(rebasing: $0.prefix(size)))
            }
            accesses += 1
        }
        var position = 0
        func byte() -> UInt64 {
            defer { position += 1 }
            return position < input.count ? UInt64(input[position]) : 0
        }
        func value(_ bytes: Int) -> UInt64 { (0 ..< bytes).reduce(0) { $0 | byte() << (8 * UInt64($1)) } }
        write(0x140, 2, size: 4)
        let imageLength = Int(value(2))
        let image = Array(input[min(position, input.count) ..< min(position + imageLength, input.count)])
        position += image.count
        try machine.memory.write(image, at: GuestAddress(2 << 20))
        for _ in 0 ..< 64 where position < input.count {
            switch byte() & 3 {
            case 0: write(value(2) & 0xffc, value(4), size: 4)
            case 1: write(value(2) & 0xff8, value(8), size: 8)
            case 2:
                var word = [UInt8](repeating: 0, count: 4)
                let offset = value(2) & 0xffc
                word.withUnsafeMutableBytes { device.readBAR(0, offset: offset, data: $0) }
                accesses += 1
            default: write(0, value(4), size: 4)
            }
        }
        let deadline = Date().addingTimeInterval(30)
        while device.fullCounters.registerExits < accesses, Date() < deadline { usleep(100) }
        #expect(device.fullCounters.registerExits >= accesses)
    }
}
