import Synchronization

/// Why a descriptor chain (or a ring) cannot be used. Each is a driver bug or a hostile guest;
/// the transport answers with DEVICE_NEEDS_RESET, never a crash.
public enum VirtqueueError: Error, Equatable, Sendable, CustomStringConvertible {
    case ringOutOfMemory(String)
    case headOutOfRange(UInt16)
    case nextOutOfRange(UInt16)
    case chainTooLong(Int)
    case indirectNotNegotiated
    case indirectWithNext
    case nestedIndirect
    case badIndirectLength(UInt32)
    case bufferOutOfMemory(address: UInt64, length: UInt32)
    case readableAfterWritable
    case availIndexJumped(from: UInt16, to: UInt16)

    public var description: String {
        switch self {
        case let .ringOutOfMemory(ring): return "\(ring) ring lies outside guest memory"
        case let .headOutOfRange(head): return "descriptor head \(head) is beyond the queue"
        case let .nextOutOfRange(next): return "descriptor next \(next) is beyond the queue"
        case let .chainTooLong(count): return "descriptor chain longer than its table (\(count)): a loop"
        case .indirectNotNegotiated: return "indirect descriptor without VIRTIO_F_INDIRECT_DESC"
        case .indirectWithNext: return "descriptor has both INDIRECT and NEXT"
        case .nestedIndirect: return "indirect descriptor inside an indirect table"
        case let .badIndirectLength(length): return "indirect table length \(length) is not a positive multiple of 16"
        case let .bufferOutOfMemory(address, length):
            return "buffer of \(length) bytes at 0x\(String(address, radix: 16)) lies outside guest memory"
        case .readableAfterWritable: return "device-readable descriptor after a device-writable one"
        case let .availIndexJumped(from, to): return "available index moved from \(from) to \(to), more than the queue holds"
        }
    }
}

/// One guest buffer of a chain.
public struct VirtqueueBuffer: Equatable, Sendable {
    public let address: GuestAddress
    public let length: UInt32
    public let writable: Bool
}

/// A validated descriptor chain: device-readable buffers, then device-writable ones.
public struct DescriptorChain: Sendable {
    public let head: UInt16
    public let buffers: [VirtqueueBuffer]

    public var readable: ArraySlice<VirtqueueBuffer> { buffers.prefix { !$0.writable } }
    public var writable: ArraySlice<VirtqueueBuffer> { buffers.drop { !$0.writable } }
    public var readableLength: UInt64 { readable.reduce(0) { $0 + UInt64($1.length) } }
    public var writableLength: UInt64 { writable.reduce(0) { $0 + UInt64($1.length) } }
}

/// Where the driver placed a queue and how it was negotiated (virtio 1.2 §2.7).
public struct VirtqueueConfiguration: Sendable, Equatable {
    public var size: UInt16
    public var descriptorTable: GuestAddress
    public var availableRing: GuestAddress
    public var usedRing: GuestAddress
    public var eventIndex: Bool
    public var indirectDescriptors: Bool

    public init(size: UInt16, descriptorTable: GuestAddress, availableRing: GuestAddress, usedRing: GuestAddress,
                eventIndex: Bool = false, indirectDescriptors: Bool = false) {
        self.size = size
        self.descriptorTable = descriptorTable
        self.availableRing = availableRing
        self.usedRing = usedRing
        self.eventIndex = eventIndex
        self.indirectDescriptors = indirectDescriptors
    }
}

/// The device side of a split virtqueue over guest memory. Used by one device thread.
///
/// Every index and address the guest supplies is checked before use; the ring memory itself is
/// validated once, at creation.
public final class Virtqueue: @unchecked Sendable {
    static let descriptorSize: UInt64 = 16
    static let flagNext: UInt16 = 1
    static let flagWrite: UInt16 = 2
    static let flagIndirect: UInt16 = 4
    static let usedFlagNoNotify: UInt16 = 1
    static let availFlagNoInterrupt: UInt16 = 1

    public let configuration: VirtqueueConfiguration
    private let memory: GuestMemory
    private let descriptors: UnsafeMutableRawBufferPointer
    private let avail: UnsafeMutableRawBufferPointer
    private let used: UnsafeMutableRawBufferPointer
    public private(set) var nextAvailable: UInt16 = 0
    public private(set) var nextUsed: UInt16 = 0
    /// The used index at the last interrupt, for EVENT_IDX suppression.
    private var signalledUsed: UInt16?

    public init(configuration c: VirtqueueConfiguration, memory: GuestMemory) throws(VirtqueueError) {
        guard c.size > 0, c.size <= 32768, c.size & (c.size - 1) == 0 else { throw .ringOutOfMemory("queue size \(c.size)") }
        let n = UInt64(c.size)
        // Alignment per virtio 1.2 §2.7: descriptors 16, available 2, used 4.
        guard c.descriptorTable.raw % 16 == 0, c.availableRing.raw % 2 == 0, c.usedRing.raw % 4 == 0 else {
            throw .ringOutOfMemory("misaligned")
        }
        do {
            descriptors = try memory.slice(at: c.descriptorTable, length: n * Self.descriptorSize)
            avail = try memory.slice(at: c.availableRing, length: 6 + 2 * n)
            used = try memory.slice(at: c.usedRing, length: 6 + 8 * n)
        } catch {
            throw .ringOutOfMemory("descriptor, available or used")
        }
        configuration = c
        self.memory = memory
    }

    private var size: UInt16 { configuration.size }

    private func load16(_ buffer: UnsafeMutableRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    private func store16(_ buffer: UnsafeMutableRawBufferPointer, _ offset: Int, _ value: UInt16) {
        buffer.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    /// The driver's available index, read with acquire ordering so ring entries written before
    /// it are visible.
    private func availableIndex() -> UInt16 {
        let index = load16(avail, 2)
        atomicMemoryFence(ordering: .acquiring)
        return index
    }

    public var hasAvailable: Bool { availableIndex() != nextAvailable }

    /// Takes the next available chain, or nil when the driver has offered nothing new.
    public func popChain() throws(VirtqueueError) -> DescriptorChain? {
        let availIndex = availableIndex()
        guard availIndex != nextAvailable else { return nil }
        guard availIndex &- nextAvailable <= size else { throw .availIndexJumped(from: nextAvailable, to: availIndex) }
        let head = load16(avail, 4 + 2 * Int(nextAvailable % size))
        nextAvailable &+= 1
        return try walk(head: head)
    }

    private func walk(head: UInt16) throws(VirtqueueError) -> DescriptorChain {
        guard head < size else { throw .headOutOfRange(head) }
        var buffers: [VirtqueueBuffer] = []
        var index = head
        var count = 0
        var table = descriptors
        var tableSize = Int(size)
        var inIndirect = false
        var sawWritable = false
        while true {
            count += 1
            guard count <= tableSize else { throw .chainTooLong(count) }
            let base = Int(index) * 16
            let address = UInt64(littleEndian: table.loadUnaligned(fromByteOffset: base, as: UInt64.self))
            let length = UInt32(littleEndian: table.loadUnaligned(fromByteOffset: base + 8, as: UInt32.self))
            let flags = UInt16(littleEndian: table.loadUnaligned(fromByteOffset: base + 12, as: UInt16.self))
            let next = UInt16(littleEndian: table.loadUnaligned(fromByteOffset: base + 14, as: UInt16.self))

            if flags & Self.flagIndirect != 0 {
                guard configuration.indirectDescriptors else { throw .indirectNotNegotiated }
                guard !inIndirect else { throw .nestedIndirect }
                guard flags & Self.flagNext == 0 else { throw .indirectWithNext }
                guard length > 0, length % 16 == 0 else { throw .badIndirectLength(length) }
                guard let slice = try? memory.slice(at: GuestAddress(address), length: UInt64(length)) else {
                    throw .bufferOutOfMemory(address: address, length: length)
                }
                // The chain continues at entry 0 of the indirect table, bounded by its length.
                table = slice
                tableSize = Int(length / 16)
                inIndirect = true
                index = 0
                count = 0
                continue
            }
            guard memory.contains(GuestAddress(address), length: UInt64(length)) else {
                throw .bufferOutOfMemory(address: address, length: length)
            }
            let writable = flags & Self.flagWrite != 0
            if !writable && sawWritable { throw .readableAfterWritable }
            sawWritable = sawWritable || writable
            buffers.append(VirtqueueBuffer(address: GuestAddress(address), length: length, writable: writable))
            guard flags & Self.flagNext != 0 else { break }
            guard Int(next) < tableSize else { throw .nextOutOfRange(next) }
            index = next
        }
        return DescriptorChain(head: head, buffers: buffers)
    }

    /// Returns a chain to the driver with `length` bytes written into its writable buffers.
    public func pushUsed(head: UInt16, length: UInt32) {
        let slot = 4 + 8 * Int(nextUsed % size)
        used.storeBytes(of: UInt32(head).littleEndian, toByteOffset: slot, as: UInt32.self)
        used.storeBytes(of: length.littleEndian, toByteOffset: slot + 4, as: UInt32.self)
        nextUsed &+= 1
        // The element must be visible before the index that publishes it.
        atomicMemoryFence(ordering: .releasing)
        store16(used, 2, nextUsed)
    }

    /// Whether the driver wants an interrupt for the used entries added since the last one
    /// (virtio 1.2 §2.7.7, with VIRTIO_F_EVENT_IDX: vring_need_event).
    public func needsInterrupt() -> Bool {
        // Publishing used.idx must be ordered before reading the driver's suppression state,
        // or both sides can decide the other will act (the classic lost-wakeup race).
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard configuration.eventIndex else {
            return load16(avail, 0) & Self.availFlagNoInterrupt == 0
        }
        let usedEvent = load16(avail, 4 + 2 * Int(size))
        let old = signalledUsed
        signalledUsed = nextUsed
        guard let old else { return true }
        return nextUsed &- usedEvent &- 1 < nextUsed &- old
    }

    /// Re-arms driver notifications after the device drained the queue (with EVENT_IDX: asks to
    /// hear of anything past what it has taken). Returns true when the driver added work in the
    /// meantime, which it may not have notified: the caller must drain again, or the request is
    /// stranded until the next doorbell.
    public func enableNotification() -> Bool {
        guard configuration.eventIndex else { return hasAvailable }
        store16(used, 4 + 8 * Int(size), nextAvailable)
        // The avail_event store must be visible before re-reading avail.idx (store-load order).
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return hasAvailable
    }

    // MARK: Moving bytes between chains and guest memory

    /// Copies up to `count` bytes of the chain's readable buffers, starting `skip` bytes in.
    public func gather(_ chain: DescriptorChain, skip: UInt64 = 0, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        var toSkip = skip
        for buffer in chain.readable where out.count < count {
            if toSkip >= UInt64(buffer.length) { toSkip -= UInt64(buffer.length); continue }
            let take = min(UInt64(buffer.length) - toSkip, UInt64(count - out.count))
            if let bytes = try? memory.read(Int(take), at: GuestAddress(buffer.address.raw + toSkip)) { out += bytes }
            toSkip = 0
        }
        return out
    }

    /// Host views of guest buffers (already bounds-checked by `walk`), for zero-copy I/O.
    public func hostSlices(_ buffers: some Sequence<VirtqueueBuffer>) -> [UnsafeMutableRawBufferPointer] {
        buffers.compactMap { try? memory.slice(at: $0.address, length: UInt64($0.length)) }
    }

    /// Writes `bytes` at a guest address inside one of the chain's (already validated) buffers.
    public func scatter(_ bytes: [UInt8], at address: GuestAddress) {
        try? memory.write(bytes, at: address)
    }

    /// Writes `bytes` into the chain's writable buffers starting `skip` bytes in; returns bytes written.
    @discardableResult
    public func scatter(_ bytes: [UInt8], into chain: DescriptorChain, skip: UInt64 = 0) -> Int {
        var written = 0
        var toSkip = skip
        for buffer in chain.writable where written < bytes.count {
            if toSkip >= UInt64(buffer.length) { toSkip -= UInt64(buffer.length); continue }
            let take = min(Int(UInt64(buffer.length) - toSkip), bytes.count - written)
            try? memory.write(Array(bytes[written..<(written + take)]), at: GuestAddress(buffer.address.raw + toSkip))
            written += take
            toSkip = 0
        }
        return written
    }
}
