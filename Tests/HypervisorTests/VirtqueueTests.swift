import VirtioTestSupport
import Testing
@testable import Hypervisor

/// The descriptor walker against hand-built chains: each malformed case is refused with its
/// own error, so removing any one check makes its test fail.
@Suite struct VirtqueueTests {
    @Test func walksAReadableThenWritableChain() throws {
        var ring = try TestRing()
        try ring.setDescriptor(3, address: 0x8000, length: 16, flags: Flag.next, next: 5)
        try ring.setDescriptor(5, address: 0x9000, length: 512, flags: Flag.next | Flag.write, next: 1)
        try ring.setDescriptor(1, address: 0xa000, length: 1, flags: Flag.write)
        try ring.offer(3)
        let queue = try ring.queue()
        let chain = try #require(try queue.popChain())
        #expect(chain.head == 3)
        #expect(chain.readable.map(\.length) == [16])
        #expect(chain.writable.map(\.length) == [512, 1])
        #expect(try queue.popChain() == nil)
    }

    @Test func followsAnIndirectTable() throws {
        var ring = try TestRing()
        let table = GuestAddress(0x20000)
        try ring.setDescriptor(0, address: 0x8000, length: 16, flags: Flag.next, next: 1, table: table)
        try ring.setDescriptor(1, address: 0x9000, length: 8, flags: Flag.write, table: table)
        try ring.setDescriptor(0, address: table.raw, length: 32, flags: Flag.indirect)
        try ring.offer(0)
        let chain = try #require(try ring.queue(indirect: true).popChain())
        #expect(chain.buffers.count == 2)
        #expect(chain.writable.first?.address == GuestAddress(0x9000))
    }

    func expectRefusal(_ expected: VirtqueueError, indirect: Bool = false,
                       _ build: (inout TestRing) throws -> Void) throws {
        var ring = try TestRing()
        try build(&ring)
        let queue = try ring.queue(indirect: indirect)
        #expect(throws: expected) { try queue.popChain() }
    }

    @Test func refusesAHeadBeyondTheQueue() throws {
        try expectRefusal(.headOutOfRange(16)) { ring in try ring.offer(16) }
    }

    @Test func refusesANextBeyondTheQueue() throws {
        try expectRefusal(.nextOutOfRange(40)) { ring in
            try ring.setDescriptor(0, address: 0x8000, length: 4, flags: Flag.next, next: 40)
            try ring.offer(0)
        }
    }

    @Test func refusesALoop() throws {
        try expectRefusal(.chainTooLong(17)) { ring in
            try ring.setDescriptor(0, address: 0x8000, length: 4, flags: Flag.next, next: 1)
            try ring.setDescriptor(1, address: 0x8000, length: 4, flags: Flag.next, next: 0)
            try ring.offer(0)
        }
    }

    @Test func refusesALoopInsideAnIndirectTable() throws {
        try expectRefusal(.chainTooLong(3), indirect: true) { ring in
            let table = GuestAddress(0x20000)
            try ring.setDescriptor(0, address: 0x8000, length: 4, flags: Flag.next, next: 1, table: table)
            try ring.setDescriptor(1, address: 0x8000, length: 4, flags: Flag.next, next: 0, table: table)
            try ring.setDescriptor(0, address: table.raw, length: 32, flags: Flag.indirect)
            try ring.offer(0)
        }
    }

    @Test func refusesIndirectWithoutTheFeature() throws {
        try expectRefusal(.indirectNotNegotiated) { ring in
            try ring.setDescriptor(0, address: 0x20000, length: 32, flags: Flag.indirect)
            try ring.offer(0)
        }
    }

    @Test func refusesIndirectWithNext() throws {
        try expectRefusal(.indirectWithNext, indirect: true) { ring in
            try ring.setDescriptor(0, address: 0x20000, length: 32, flags: Flag.indirect | Flag.next, next: 1)
            try ring.offer(0)
        }
    }

    @Test func refusesNestedIndirect() throws {
        try expectRefusal(.nestedIndirect, indirect: true) { ring in
            let table = GuestAddress(0x20000)
            try ring.setDescriptor(0, address: 0x30000, length: 16, flags: Flag.indirect, table: table)
            try ring.setDescriptor(0, address: table.raw, length: 16, flags: Flag.indirect)
            try ring.offer(0)
        }
    }

    @Test(arguments: [UInt32(0), 24])
    func refusesAnIndirectTableOfBadLength(length: UInt32) throws {
        try expectRefusal(.badIndirectLength(length), indirect: true) { ring in
            try ring.setDescriptor(0, address: 0x20000, length: length, flags: Flag.indirect)
            try ring.offer(0)
        }
    }

    @Test func refusesAnIndirectTableOutsideMemory() throws {
        try expectRefusal(.bufferOutOfMemory(address: 0xfff0_0000, length: 32), indirect: true) { ring in
            try ring.setDescriptor(0, address: 0xfff0_0000, length: 32, flags: Flag.indirect)
            try ring.offer(0)
        }
    }

    @Test(arguments: [(UInt64(0x10_0000), UInt32(1)), (UInt64(0xf_ff00), UInt32(0x200)), (UInt64.max - 8, UInt32(64))])
    func refusesBuffersOutsideGuestMemory(address: UInt64, length: UInt32) throws {
        try expectRefusal(.bufferOutOfMemory(address: address, length: length)) { ring in
            try ring.setDescriptor(0, address: address, length: length, flags: 0)
            try ring.offer(0)
        }
    }

    @Test func refusesReadableAfterWritable() throws {
        try expectRefusal(.readableAfterWritable) { ring in
            try ring.setDescriptor(0, address: 0x8000, length: 4, flags: Flag.write | Flag.next, next: 1)
            try ring.setDescriptor(1, address: 0x9000, length: 4, flags: 0)
            try ring.offer(0)
        }
    }

    @Test func refusesAnAvailableIndexThatJumpsPastTheQueue() throws {
        var ring = try TestRing()
        try ring.memory.write(UInt16(40), at: GuestAddress(ring.available.raw + 2))
        let queue = try ring.queue()
        #expect(throws: VirtqueueError.availIndexJumped(from: 0, to: 40)) { try queue.popChain() }
        _ = ring
    }

    @Test func refusesRingsOutsideMemoryMisalignedOrOfBadSize() throws {
        let ring = try TestRing()
        var config = ring.configuration()
        config.usedRing = GuestAddress(0xf_fff0)
        #expect(throws: VirtqueueError.self) { try Virtqueue(configuration: config, memory: ring.memory) }
        config = ring.configuration()
        config.descriptorTable = GuestAddress(0x1008)
        #expect(throws: VirtqueueError.self) { try Virtqueue(configuration: config, memory: ring.memory) }
        config = ring.configuration()
        config.size = 24
        #expect(throws: VirtqueueError.self) { try Virtqueue(configuration: config, memory: ring.memory) }
    }

    @Test func publishesUsedEntries() throws {
        var ring = try TestRing()
        try ring.setDescriptor(2, address: 0x8000, length: 4, flags: Flag.write)
        try ring.offer(2)
        let queue = try ring.queue()
        let chain = try #require(try queue.popChain())
        queue.pushUsed(head: chain.head, length: 4)
        #expect(try ring.usedIndex() == 1)
        #expect(try ring.usedEntry(0) == (2, 4))
    }

    @Test func suppressesInterruptsAsTheDriverAsks() throws {
        let ring = try TestRing()
        let plain = try ring.queue()
        plain.pushUsed(head: 0, length: 0)
        #expect(plain.needsInterrupt())
        try ring.setNoInterrupt(true)
        #expect(!plain.needsInterrupt())

        // EVENT_IDX: interrupt only when used crosses used_event.
        let ring2 = try TestRing()
        let evented = try ring2.queue(eventIndex: true)
        try ring2.setUsedEvent(2)
        evented.pushUsed(head: 0, length: 0)
        #expect(evented.needsInterrupt())  // the first is always signalled
        evented.pushUsed(head: 0, length: 0)
        #expect(!evented.needsInterrupt())  // used 2: event 2 not yet passed
        evented.pushUsed(head: 0, length: 0)
        #expect(evented.needsInterrupt())  // used 3 passes event 2
    }

    /// The driver may add a request after the device's last pop but before it re-arms
    /// notifications, and then skip the doorbell: re-arming must report that work.
    @Test func rearmingNotificationsReportsWorkThatSlippedIn() throws {
        var ring = try TestRing()
        try ring.setDescriptor(0, address: 0x8000, length: 4, flags: 0)
        let queue = try ring.queue(eventIndex: true)
        #expect(!queue.enableNotification())
        try ring.offer(0)
        #expect(queue.enableNotification())
        _ = try queue.popChain()
        #expect(!queue.enableNotification())
        let availEvent = try ring.memory.read(UInt16.self, at: GuestAddress(ring.used.raw + 4 + 8 * UInt64(ring.size)))
        #expect(availEvent == 1)
    }

    @Test func gathersAndScattersAcrossBuffers() throws {
        var ring = try TestRing()
        try ring.memory.write([1, 2, 3], at: GuestAddress(0x8000))
        try ring.memory.write([4, 5], at: GuestAddress(0x9000))
        try ring.setDescriptor(0, address: 0x8000, length: 3, flags: Flag.next, next: 1)
        try ring.setDescriptor(1, address: 0x9000, length: 2, flags: Flag.next, next: 2)
        try ring.setDescriptor(2, address: 0xa000, length: 2, flags: Flag.write | Flag.next, next: 3)
        try ring.setDescriptor(3, address: 0xb000, length: 4, flags: Flag.write)
        try ring.offer(0)
        let queue = try ring.queue()
        let chain = try #require(try queue.popChain())
        #expect(queue.gather(chain, skip: 2, count: 10) == [3, 4, 5])
        #expect(queue.scatter([9, 8, 7, 6, 5, 4, 3], into: chain) == 6)
        #expect(try ring.memory.read(2, at: GuestAddress(0xa000)) == [9, 8])
        #expect(try ring.memory.read(4, at: GuestAddress(0xb000)) == [7, 6, 5, 4])
    }
}

/// Random descriptor tables and rings (a fixed seed, so a failure reproduces): whatever the
/// guest writes, the walker either refuses it with an error or returns buffers wholly inside
/// guest memory, and never traps or loops.
@Suite struct VirtqueueFuzzTests {
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    @Test func randomRingsNeverEscapeGuestMemory() throws {
        var random = SplitMix64(state: 0x6d61_6c76)
        var refused = 0, accepted = 0
        for round in 0..<400 {
            var ring = try TestRing(size: 8, memorySize: 1 << 20)
            // Addresses mostly near or inside RAM, sometimes anywhere; lengths likewise.
            func address() -> UInt64 {
                switch random.next() % 4 {
                case 0: return random.next()
                case 1: return (1 << 20) - (random.next() % 64)
                default: return random.next() % (1 << 20)
                }
            }
            let indirectTable = GuestAddress(0x40000)
            for index in UInt16(0)..<8 {
                try ring.setDescriptor(index, address: address(), length: UInt32(truncatingIfNeeded: random.next() % 3 == 0 ? random.next() : random.next() % 4096),
                                       flags: UInt16(truncatingIfNeeded: random.next() % 8), next: UInt16(truncatingIfNeeded: random.next() % 12))
                try ring.setDescriptor(index, address: address(), length: UInt32(truncatingIfNeeded: random.next() % 256),
                                       flags: UInt16(truncatingIfNeeded: random.next() % 8), next: UInt16(truncatingIfNeeded: random.next() % 12),
                                       table: indirectTable)
            }
            for _ in 0..<4 { try ring.offer(UInt16(truncatingIfNeeded: random.next() % 10)) }
            let queue = try ring.queue(eventIndex: round % 2 == 0, indirect: round % 3 != 0)
            for _ in 0..<4 {
                do {
                    guard let chain = try queue.popChain() else { break }
                    accepted += 1
                    #expect(chain.buffers.count <= 16)
                    for buffer in chain.buffers {
                        #expect(ring.memory.contains(buffer.address, length: UInt64(buffer.length)))
                    }
                } catch {
                    refused += 1
                }
            }
        }
        // Both outcomes must have happened, or the generator tested nothing.
        #expect(refused > 100 && accepted > 100, "refused \(refused), accepted \(accepted)")
    }
}
