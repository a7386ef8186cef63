import VirtioTestSupport
import Platform
import Testing
@testable import Hypervisor

/// The one drain loop every device's queue runs (`VirtioQueueContext.drain`): chains answered
/// at once or kept for later, one interrupt decision per drain, work offered while the device
/// re-arms notifications, and a chain that cannot be taken.
@Suite struct VirtioQueueDrainTests {
    /// Offers one single-buffer (writable) chain per head.
    func offer(_ heads: [UInt16], on ring: inout TestRing) throws {
        for head in heads {
            try ring.setDescriptor(head, address: 0x8000 + UInt64(head) * 0x100, length: 64, flags: Flag.write)
            try ring.offer(head)
        }
    }

    final class Interrupts {
        var count = 0
    }

    func context(_ queue: Virtqueue, _ interrupts: Interrupts) -> VirtioQueueContext {
        VirtioQueueContext(negotiatedFeatures: 0, queues: [queue]) { _ in interrupts.count += 1 }
    }

    @Test func returnsAnsweredChainsAtOnceAndKeptOnesWhenTheDeviceDoes() throws {
        var ring = try TestRing()
        try offer([0, 1, 2, 3], on: &ring)
        let queue = try ring.queue()
        let interrupts = Interrupts()
        var kept: [DescriptorChain] = []
        var batches = 0
        try context(queue, interrupts).drain(queue: 0) { chain, queue in
            guard chain.head % 2 == 1 else { return .used(length: UInt32(chain.head) + 10) }
            kept.append(chain)
            return .kept
        } endOfBatch: { queue in
            batches += 1
            for chain in kept { queue.pushUsed(head: chain.head, length: 99) }
            kept = []
        }
        #expect(batches == 1)
        #expect(try ring.usedIndex() == 4)
        let entries = try (0 ..< 4).map { try ring.usedEntry($0) }
        #expect(entries.map(\.id) == [0, 2, 1, 3], "answered chains go back at once, kept ones when the device returns them")
        #expect(entries.map(\.length) == [10, 12, 99, 99])
        #expect(interrupts.count == 1, "one interrupt for the whole drain")
    }

    @Test func decidesTheInterruptOncePerDrainAsTheDriverAsks() throws {
        var ring = try TestRing()
        let queue = try ring.queue()
        let interrupts = Interrupts()
        let context = context(queue, interrupts)
        // Nothing offered: nothing served, no interrupt.
        try context.drain(queue: 0) { _, _ in .used(length: 0) }
        #expect(interrupts.count == 0)
        // NO_INTERRUPT: served, but the driver does not want to hear of it.
        try ring.setNoInterrupt(true)
        try offer([0, 1], on: &ring)
        try context.drain(queue: 0) { _, _ in .used(length: 0) }
        #expect(try ring.usedIndex() == 2)
        #expect(interrupts.count == 0)
        try ring.setNoInterrupt(false)
        try offer([2, 3, 4], on: &ring)
        try context.drain(queue: 0) { _, _ in .used(length: 0) }
        #expect(interrupts.count == 1)
        // A queue the driver did not enable, or one the device does not have, is left alone.
        let absent = VirtioQueueContext(negotiatedFeatures: 0, queues: [nil]) { _ in interrupts.count += 1 }
        try absent.drain(queue: 0) { _, _ in .used(length: 0) }
        try absent.drain(queue: 3) { _, _ in .used(length: 0) }
        #expect(interrupts.count == 1)
    }

    /// With EVENT_IDX the device re-arms by publishing avail_event; a chain the driver offered
    /// meanwhile (it may not have notified) is served in the same drain, after the batch before
    /// it was returned, and the driver's used_event decides the one interrupt.
    @Test func servesWorkOfferedWhileItReArms() throws {
        var ring = try TestRing()
        try offer([0], on: &ring)
        let queue = try ring.queue(eventIndex: true)
        let interrupts = Interrupts()
        var served: [UInt16] = []
        var batches = 0
        var lateOffer: Error?
        try context(queue, interrupts).drain(queue: 0) { chain, _ in
            served.append(chain.head)
            return .used(length: 1)
        } endOfBatch: { _ in
            batches += 1
            if batches == 1 {
                do { try offer([5], on: &ring) } catch { lateOffer = error }
            }
        }
        #expect(lateOffer == nil)
        #expect(served == [0, 5])
        #expect(batches == 2)
        #expect(try ring.usedIndex() == 2)
        let availEvent = try ring.memory.read(UInt16.self, at: GuestAddress(ring.used.raw + 4 + 8 * UInt64(ring.size)))
        #expect(availEvent == 2, "re-armed past everything taken")
        #expect(interrupts.count == 1)

        // used_event says: interrupt only once used.idx passes 10.
        try ring.setUsedEvent(10)
        try offer([6], on: &ring)
        try context(queue, interrupts).drain(queue: 0) { _, _ in .used(length: 1) }
        #expect(interrupts.count == 1)
    }

    /// A chain the driver broke ends the drain with its error: the chains before it were
    /// answered, it is not served, the batch is not closed and no interrupt is raised (the
    /// device is reset next; `VirtioQueueServer` turns the error into DEVICE_NEEDS_RESET).
    @Test func endsTheDrainAtAChainThatCannotBeTaken() throws {
        var ring = try TestRing()
        try offer([0], on: &ring)
        try ring.setDescriptor(1, address: 0x8000, length: 16, flags: Flag.next, next: 40)  // next beyond the queue
        try ring.offer(1)
        try offer([2], on: &ring)
        let queue = try ring.queue()
        let interrupts = Interrupts()
        var served: [UInt16] = []
        var batches = 0
        #expect(throws: VirtqueueError.nextOutOfRange(40)) {
            try context(queue, interrupts).drain(queue: 0) { chain, _ in
                served.append(chain.head)
                return .used(length: 0)
            } endOfBatch: { _ in batches += 1 }
        }
        #expect(served == [0])
        #expect(try ring.usedIndex() == 1)
        #expect(batches == 0)
        #expect(interrupts.count == 0)
    }

    /// With a ring lock, every ring operation of the drain happens under it, so a thread that
    /// returns kept chains under the same lock never races the drain on the ring.
    @Test func sharesTheRingWithThreadsThatReturnKeptChains() throws {
        var ring = try TestRing(size: 64)
        let lock = Monitor()
        let queue = try ring.queue()
        let interrupts = Interrupts()
        let context = context(queue, interrupts)
        for round in 0 ..< 20 {
            let heads = (0 ..< 3).map { UInt16((round * 3 + $0) % 64) }
            try offer(heads, on: &ring)
            var threads: [NativeThread] = []
            try context.drain(queue: 0, ringLock: lock) { chain, queue in
                let head = chain.head
                threads.append(try! NativeThread(name: "completion") {
                    lock.withLock { queue.pushUsed(head: head, length: 3) }
                })
                return .kept
            }
            for thread in threads { thread.join() }
        }
        #expect(try ring.usedIndex() == 60)
        #expect(try (0 ..< 60).allSatisfy { try ring.usedEntry(UInt16($0)).length == 3 })
    }
}
