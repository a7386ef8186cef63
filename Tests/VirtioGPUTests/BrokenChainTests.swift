import VirtioTestSupport
import GPUHost
import Glibc
import Testing
@testable import Hypervisor
@testable import VirtioGPU

/// A ring the driver broke is met the same way by every device, because every queue drains
/// through `VirtioQueueContext.drain`: the drain ends with the walker's error at the broken
/// chain, serves nothing from there on, returns no chain and raises no interrupt, and the
/// error is what `VirtioQueueServer` turns into DEVICE_NEEDS_RESET.
@Suite struct BrokenChainTests {
    enum Breakage: CaseIterable, CustomStringConvertible {
        case headOutOfRange, bufferOutsideMemory, loop, availableIndexJumped

        var description: String {
            switch self {
            case .headOutOfRange: return "a head beyond the queue"
            case .bufferOutsideMemory: return "a buffer outside guest memory"
            case .loop: return "a chain that loops"
            case .availableIndexJumped: return "an available index that jumped"
            }
        }

        func expected(ringSize: UInt16) -> VirtqueueError {
            switch self {
            case .headOutOfRange: return .headOutOfRange(200)
            case .bufferOutsideMemory: return .bufferOutOfMemory(address: 1 << 40, length: 64)
            case .loop: return .chainTooLong(Int(ringSize) + 1)
            case .availableIndexJumped: return .availIndexJumped(from: 0, to: ringSize + 1)
            }
        }

        /// Offers the broken chain, then a well-formed request behind it that must not be served.
        func offer(on ring: inout TestRing) throws {
            switch self {
            case .headOutOfRange:
                try ring.offer(200)
            case .bufferOutsideMemory:
                try ring.setDescriptor(0, address: 1 << 40, length: 64, flags: Flag.write)
                try ring.offer(0)
            case .loop:
                try ring.setDescriptor(0, address: 0x8000, length: 16, flags: Flag.next, next: 0)
                try ring.offer(0)
            case .availableIndexJumped:
                try ring.memory.write(ring.size + 1, at: GuestAddress(ring.available.raw + 2))
                return
            }
            try ring.memory.write(GPUDriver.simple(.getDisplayInfo), at: GuestAddress(0x8000))
            try ring.setDescriptor(10, address: 0x8000, length: 24, flags: Flag.next, next: 11)
            try ring.setDescriptor(11, address: 0x9000, length: 0x200, flags: Flag.write)
            try ring.offer(10)
        }
    }

    /// Drains `ring` through `process` and checks the refusal: the walker's error, nothing
    /// returned to the driver, no interrupt.
    func expectRefusal(_ breakage: Breakage, on ring: inout TestRing, queues: (Virtqueue) -> [Virtqueue?],
                       process: (VirtioQueueContext) throws(VirtqueueError) -> Void) throws {
        try breakage.offer(on: &ring)
        let interrupts = Counter()
        let context = VirtioQueueContext(negotiatedFeatures: 0, queues: queues(try ring.queue())) { _ in
            interrupts.value.add(1, ordering: .relaxed)
        }
        #expect(throws: breakage.expected(ringSize: ring.size)) { try process(context) }
        #expect(try ring.usedIndex() == 0)
        #expect(interrupts.value.load(ordering: .relaxed) == 0)
    }

    @Test(arguments: Breakage.allCases) func blockRefusesTheRing(_ breakage: Breakage) throws {
        let path = "/tmp/malvvm-broken-chain-\(getpid())-\(UInt32.random(in: 0 ... .max)).img"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        ftruncate(fd, 8 * 512)
        close(fd)
        defer { unlink(path) }
        let block = try VirtioBlock(path: path, readOnly: false)
        var ring = try TestRing()
        try expectRefusal(breakage, on: &ring, queues: { [$0] }) { context throws(VirtqueueError) in
            try block.process(queue: 0, context: context)
        }
    }

    @Test(arguments: Breakage.allCases) func gpuControlQueueRefusesTheRing(_ breakage: Breakage) throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        try expectRefusal(breakage, on: &driver.ring, queues: { [$0, nil] }) { context throws(VirtqueueError) in
            try driver.device.process(queue: 0, context: context)
        }
        // Nothing reached the command handlers.
        #expect(driver.device.statistics.contexts == 0)
    }

    @Test(arguments: Breakage.allCases) func gpuCursorQueueRefusesTheRing(_ breakage: Breakage) throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        var ring = try TestRing()
        try expectRefusal(breakage, on: &ring, queues: { [nil, $0] }) { context throws(VirtqueueError) in
            try driver.device.process(queue: 1, context: context)
        }
    }
}
