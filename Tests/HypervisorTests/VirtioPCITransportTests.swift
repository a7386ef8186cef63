import Synchronization
import Testing
@testable import Hypervisor

/// A device with two queues that records what the transport asks of it.
final class FakeVirtioDevice: VirtioQueueHandler, @unchecked Sendable {
    let deviceType: UInt16 = 2
    let offeredFeatures: UInt64 = 1 << 9
    let queueMaximumSizes: [UInt16] = [64, 16]
    let configurationSize = 8
    let pciClass: (UInt8, UInt8, UInt8) = (0x01, 0x00, 0x00)
    let resets = Atomic<Int>(0)

    func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for i in data.indices { data[i] = UInt8(offset + i) }
    }
    func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {}
    func process(queue index: Int, context: VirtioQueueContext) throws(VirtqueueError) {}
    func reset() { resets.add(1, ordering: .relaxed) }
}

/// The common configuration's state machine, driven as a driver would through BAR 0.
@Suite(.serialized) struct VirtioPCITransportTests {
    let device = FakeVirtioDevice()
    let transport: VirtioPCIDevice
    let vm: KVMVirtualMachine

    init() throws {
        vm = try KVMSystem().createVM()
        try vm.createIRQChip()
        let memory = try GuestMemory(layout: [(start: GuestAddress(0), size: 1 << 20)])
        transport = try VirtioPCIDevice(device: device, name: "test", memory: memory, vm: vm, router: try InterruptRouter(vm: vm))
    }

    func write(_ offset: UInt64, _ value: UInt64, size: Int) {
        var bytes: [UInt8] = []
        for i in 0..<size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
        bytes.withUnsafeBytes { transport.writeBAR(0, offset: offset, data: $0) }
    }

    func read(_ offset: UInt64, size: Int) -> UInt64 {
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { transport.readBAR(0, offset: offset, data: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    func offeredFeatures() -> UInt64 {
        write(0x00, 0, size: 4)
        let low = read(0x04, size: 4)
        write(0x00, 1, size: 4)
        return low | read(0x04, size: 4) << 32
    }

    func negotiate(_ features: UInt64) -> UInt8 {
        write(0x14, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver), size: 1)
        write(0x08, 0, size: 4)
        write(0x0c, features & 0xffff_ffff, size: 4)
        write(0x08, 1, size: 4)
        write(0x0c, features >> 32, size: 4)
        write(0x14, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK), size: 1)
        return UInt8(read(0x14, size: 1))
    }

    @Test func identifiesAsAModernVirtioDevice() {
        #expect(transport.configuration.read(offset: 0, size: 4) == 0x1042_1af4)
        #expect(transport.configuration.read(offset: 0x08, size: 1) == 1)  // revision ≥ 1
        #expect(offeredFeatures() == VirtioFeature.version1 | 1 << 9)
        #expect(read(0x12, size: 2) == 2)  // num_queues
    }

    @Test func acceptsOfferedFeaturesWithVersion1() {
        #expect(negotiate(VirtioFeature.version1 | 1 << 9) & VirtioStatus.featuresOK != 0)
    }

    @Test func refusesFeaturesItDidNotOffer() {
        #expect(negotiate(VirtioFeature.version1 | 1 << 3) & VirtioStatus.featuresOK == 0)
    }

    @Test func refusesALegacyDriver() {
        #expect(negotiate(1 << 9) & VirtioStatus.featuresOK == 0)
    }

    @Test func boundsQueueSizeAndVectors() {
        write(0x16, 0, size: 2)
        #expect(read(0x18, size: 2) == 64)
        write(0x18, 128, size: 2)  // above the maximum: ignored
        #expect(read(0x18, size: 2) == 64)
        write(0x18, 32, size: 2)
        #expect(read(0x18, size: 2) == 32)
        write(0x1a, 7, size: 2)  // the table has 3 vectors
        #expect(read(0x1a, size: 2) == 0xffff)
        write(0x1a, 1, size: 2)
        #expect(read(0x1a, size: 2) == 1)
        write(0x16, 9, size: 2)  // no such queue
        #expect(read(0x18, size: 2) == 0)
        #expect(read(0x1e, size: 2) == 9)
    }

    @Test func queueRegistersFreezeOnceEnabled() {
        write(0x16, 1, size: 2)
        write(0x20, 0x1000, size: 4)
        write(0x24, 0x2, size: 4)
        #expect(read(0x20, size: 4) == 0x1000 && read(0x24, size: 4) == 0x2)
        write(0x1c, 1, size: 2)
        write(0x20, 0x5000, size: 4)
        #expect(read(0x20, size: 4) == 0x1000)
    }

    @Test func resetClearsTheDeviceAndItsQueues() {
        _ = negotiate(VirtioFeature.version1)
        write(0x16, 0, size: 2)
        write(0x1c, 1, size: 2)
        write(0x14, 0, size: 1)
        #expect(read(0x14, size: 1) == 0)
        #expect(read(0x1c, size: 2) == 0)
        #expect(device.resets.load(ordering: .relaxed) == 1)
        write(0x08, 0, size: 4)
        #expect(read(0x0c, size: 4) == 0)
    }

    @Test func aQueueOutsideGuestMemorySetsNeedsReset() {
        _ = negotiate(VirtioFeature.version1)
        write(0x16, 0, size: 2)
        write(0x20, 0xfff0_0000, size: 4)  // beyond the 1 MiB of RAM
        write(0x1c, 1, size: 2)
        write(0x14, UInt64(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK | VirtioStatus.driverOK), size: 1)
        #expect(UInt8(read(0x14, size: 1)) & VirtioStatus.needsReset != 0)
        #expect(read(0x1000, size: 1) & 0x2 != 0)  // ISR: configuration change
        #expect(read(0x1000, size: 1) == 0)  // and reading it cleared it
    }

    @Test func deviceConfigurationIsBoundsChecked() {
        #expect(read(0x2000 + 4, size: 4) == 0x0706_0504)
        #expect(read(0x2000 + 6, size: 4) == 0)  // runs past the 8 bytes
    }
}
