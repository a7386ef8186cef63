import Synchronization

/// A device reachable at a range of port or MMIO addresses. Offsets are relative to the range base.
/// Called from vCPU threads: a device shared by several vCPUs guards its own state.
public protocol BusDevice: AnyObject, Sendable {
    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, data: UnsafeRawBufferPointer)
}

public enum BusError: Error, Equatable, CustomStringConvertible, Sendable {
    case emptyRange(base: UInt64)
    case wraps(base: UInt64, size: UInt64)
    case overlap(base: UInt64, size: UInt64, existing: String)

    public var description: String {
        switch self {
        case let .emptyRange(base): return "bus range at 0x\(String(base, radix: 16)) is empty"
        case let .wraps(base, size): return "bus range 0x\(String(base, radix: 16))+0x\(String(size, radix: 16)) wraps the address space"
        case let .overlap(base, size, existing):
            return "bus range 0x\(String(base, radix: 16))+0x\(String(size, radix: 16)) overlaps \(existing)"
        }
    }
}

/// Dispatches port I/O or MMIO exits to devices by address range.
///
/// Unmapped reads return all ones, as a floating bus does on real hardware, and unmapped
/// writes are dropped; both are counted so a misbehaving guest shows up in statistics.
public final class IOBus: Sendable {
    struct Mapping: Sendable {
        let base: UInt64
        let size: UInt64
        let name: String
        let device: any BusDevice
        var last: UInt64 { base + (size - 1) }
    }

    public let name: String
    private let mappings = Mutex<[Mapping]>([])
    private let unmapped = Atomic<UInt64>(0)

    public init(name: String) { self.name = name }

    /// Accesses that found no device.
    public var unmappedAccesses: UInt64 { unmapped.load(ordering: .relaxed) }

    public func insert(_ device: any BusDevice, name: String, base: UInt64, size: UInt64) throws(BusError) {
        guard size > 0 else { throw .emptyRange(base: base) }
        guard !base.addingReportingOverflow(size - 1).overflow else { throw .wraps(base: base, size: size) }
        let new = Mapping(base: base, size: size, name: name, device: device)
        let clash: Mapping? = mappings.withLock { list in
            if let existing = list.first(where: { $0.base <= new.last && new.base <= $0.last }) { return existing }
            list.append(new)
            list.sort { $0.base < $1.base }
            return nil
        }
        if let clash { throw .overlap(base: base, size: size, existing: clash.name) }
    }

    public func remove(name: String) {
        mappings.withLock { $0.removeAll { $0.name == name } }
    }

    /// The device and offset for an access of `length` bytes; it must fit inside one mapping.
    private func resolve(_ address: UInt64, length: Int) -> (any BusDevice, UInt64)? {
        mappings.withLock { list in
            // Few mappings per bus (tens): a linear scan beats a tree here.
            for mapping in list where mapping.base <= address && address <= mapping.last {
                let offset = address - mapping.base
                guard length == 0 || offset + UInt64(length - 1) <= mapping.size - 1 else { return nil }
                return (mapping.device, offset)
            }
            return nil
        }
    }

    /// Returns false when no device answered (the buffer is then filled with 0xff).
    @discardableResult
    public func read(_ address: UInt64, into data: UnsafeMutableRawBufferPointer) -> Bool {
        guard let (device, offset) = resolve(address, length: data.count) else {
            unmapped.add(1, ordering: .relaxed)
            for index in data.indices { data[index] = 0xff }
            return false
        }
        device.read(offset: offset, data: data)
        return true
    }

    @discardableResult
    public func write(_ address: UInt64, data: UnsafeRawBufferPointer) -> Bool {
        guard let (device, offset) = resolve(address, length: data.count) else {
            unmapped.add(1, ordering: .relaxed)
            return false
        }
        device.write(offset: offset, data: data)
        return true
    }
}
