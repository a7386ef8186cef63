import Synchronization
import Testing
@testable import Hypervisor

/// Records what reaches it; reads return the low byte of the offset.
final class RecordingDevice: BusDevice {
    let writes = Mutex<[(UInt64, [UInt8])]>([])

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        for index in data.indices { data[index] = UInt8(truncatingIfNeeded: offset) &+ UInt8(index) }
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        writes.withLock { $0.append((offset, Array(data))) }
    }
}

@Suite struct IOBusTests {
    @Test func dispatchesByRangeWithOffsets() throws {
        let bus = IOBus(name: "test")
        let a = RecordingDevice(), b = RecordingDevice()
        try bus.insert(a, name: "a", base: 0x100, size: 8)
        try bus.insert(b, name: "b", base: 0x108, size: 8)  // adjacent is fine
        var byte: [UInt8] = [0]
        #expect(byte.withUnsafeMutableBytes { bus.read(0x10a, into: $0) })
        #expect(byte == [2])
        [UInt8(7)].withUnsafeBytes { _ = bus.write(0x103, data: $0) }
        #expect(a.writes.withLock { $0.map(\.0) } == [3])
        #expect(b.writes.withLock { $0.isEmpty })
    }

    @Test func rejectsOverlapsEmptyAndWrappingRanges() throws {
        let bus = IOBus(name: "test")
        try bus.insert(RecordingDevice(), name: "serial", base: 0x3f8, size: 8)
        #expect(throws: BusError.overlap(base: 0x3ff, size: 2, existing: "serial")) {
            try bus.insert(RecordingDevice(), name: "x", base: 0x3ff, size: 2)
        }
        #expect(throws: BusError.overlap(base: 0x3f0, size: 0x100, existing: "serial")) {
            try bus.insert(RecordingDevice(), name: "x", base: 0x3f0, size: 0x100)
        }
        #expect(throws: BusError.emptyRange(base: 0)) { try bus.insert(RecordingDevice(), name: "x", base: 0, size: 0) }
        #expect(throws: BusError.wraps(base: UInt64.max, size: 2)) {
            try bus.insert(RecordingDevice(), name: "x", base: UInt64.max, size: 2)
        }
        try bus.insert(RecordingDevice(), name: "top", base: UInt64.max, size: 1)
    }

    @Test func unmappedAccessesFloatHighAndAreCounted() throws {
        let bus = IOBus(name: "test")
        try bus.insert(RecordingDevice(), name: "a", base: 0x100, size: 4)
        var word: [UInt8] = [0, 0, 0, 0]
        #expect(!word.withUnsafeMutableBytes { bus.read(0x200, into: $0) })
        #expect(word == [0xff, 0xff, 0xff, 0xff])
        // An access that starts inside a device but runs past its end reaches no device.
        #expect(!word.withUnsafeMutableBytes { bus.read(0x102, into: $0) })
        #expect(![UInt8(1)].withUnsafeBytes { bus.write(0x50, data: $0) })
        #expect(bus.unmappedAccesses == 3)
    }

    @Test func removedDevicesStopAnswering() throws {
        let bus = IOBus(name: "test")
        try bus.insert(RecordingDevice(), name: "a", base: 0x100, size: 4)
        bus.remove(name: "a")
        var byte: [UInt8] = [0]
        #expect(!byte.withUnsafeMutableBytes { bus.read(0x100, into: $0) })
        try bus.insert(RecordingDevice(), name: "b", base: 0x100, size: 4)
    }
}
