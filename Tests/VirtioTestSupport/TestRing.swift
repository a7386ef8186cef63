import Hypervisor

/// Test support shared by the device test targets (a library target, not a test target).
///
/// Lays out a split virtqueue in guest memory and plays the driver: writes descriptors, offers
/// chains, reads used entries. Lets tests hand the device any chain, malformed ones included.
public struct TestRing {
    public let memory: GuestMemory
    public let size: UInt16
    public let descriptors = GuestAddress(0x1000)
    public let available = GuestAddress(0x3000)
    public let used = GuestAddress(0x4000)
    public var availableIndex: UInt16 = 0

    public init(size: UInt16 = 16, memorySize: UInt64 = 1 << 20) throws {
        memory = try GuestMemory(layout: [(start: GuestAddress(0), size: memorySize)])
        self.size = size
    }

    public func configuration(eventIndex: Bool = false, indirect: Bool = false) -> VirtqueueConfiguration {
        VirtqueueConfiguration(size: size, descriptorTable: descriptors, availableRing: available, usedRing: used,
                               eventIndex: eventIndex, indirectDescriptors: indirect)
    }

    public func queue(eventIndex: Bool = false, indirect: Bool = false) throws -> Virtqueue {
        try Virtqueue(configuration: configuration(eventIndex: eventIndex, indirect: indirect), memory: memory)
    }

    /// Writes descriptor `index` of the table at `table` (the main one by default).
    public func setDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0,
                       table: GuestAddress? = nil) throws {
        let base = (table ?? descriptors).raw + UInt64(index) * 16
        try memory.write(address, at: GuestAddress(base))
        try memory.write(length, at: GuestAddress(base + 8))
        try memory.write(flags, at: GuestAddress(base + 12))
        try memory.write(next, at: GuestAddress(base + 14))
    }

    /// Offers the chain starting at `head` to the device.
    public mutating func offer(_ head: UInt16) throws {
        try memory.write(head, at: GuestAddress(available.raw + 4 + 2 * UInt64(availableIndex % size)))
        availableIndex &+= 1
        try memory.write(availableIndex, at: GuestAddress(available.raw + 2))
    }

    public func usedIndex() throws -> UInt16 { try memory.read(UInt16.self, at: GuestAddress(used.raw + 2)) }

    public func usedEntry(_ slot: UInt16) throws -> (id: UInt32, length: UInt32) {
        let base = used.raw + 4 + 8 * UInt64(slot % size)
        return (try memory.read(UInt32.self, at: GuestAddress(base)), try memory.read(UInt32.self, at: GuestAddress(base + 4)))
    }

    /// Sets the driver's used_event (EVENT_IDX) or its NO_INTERRUPT flag.
    public func setUsedEvent(_ value: UInt16) throws {
        try memory.write(value, at: GuestAddress(available.raw + 4 + 2 * UInt64(size)))
    }

    public func setNoInterrupt(_ on: Bool) throws {
        try memory.write(UInt16(on ? 1 : 0), at: available)
    }
}

public enum Flag {
    public static let next: UInt16 = 1
    public static let write: UInt16 = 2
    public static let indirect: UInt16 = 4
}
