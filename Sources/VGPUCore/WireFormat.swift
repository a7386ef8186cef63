/// The little-endian wire primitives every vGPU protocol shares: virtio-gpu's control
/// messages and the compute stream both para- and full-vGPUs carry.

/// Bounds-checked little-endian decoding of guest bytes: running off the end is an error,
/// never a trap.
package struct WireReader {
    package struct Truncated: Error, Equatable {
        package init() {}
    }

    package let bytes: [UInt8]
    package private(set) var position: Int

    package init(_ bytes: [UInt8], at position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    package var remaining: Int { bytes.count - position }

    package mutating func skip(_ count: Int) throws(Truncated) {
        guard count >= 0, count <= remaining else { throw Truncated() }
        position += count
    }

    package mutating func u8() throws(Truncated) -> UInt8 {
        guard remaining >= 1 else { throw Truncated() }
        defer { position += 1 }
        return bytes[position]
    }

    package mutating func u16() throws(Truncated) -> UInt16 {
        guard remaining >= 2 else { throw Truncated() }
        defer { position += 2 }
        return UInt16(bytes[position]) | UInt16(bytes[position + 1]) << 8
    }

    package mutating func u32() throws(Truncated) -> UInt32 {
        guard remaining >= 4 else { throw Truncated() }
        var value: UInt32 = 0
        for i in 0 ..< 4 { value |= UInt32(bytes[position + i]) << (8 * UInt32(i)) }
        position += 4
        return value
    }

    package mutating func u64() throws(Truncated) -> UInt64 {
        let low = try u32()
        let high = try u32()
        return UInt64(low) | UInt64(high) << 32
    }

    package mutating func f32() throws(Truncated) -> Float { Float(bitPattern: try u32()) }
}

/// Little-endian encoding of responses.
package struct WireWriter {
    package private(set) var bytes: [UInt8] = []

    package init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    package mutating func u8(_ value: UInt8) { bytes.append(value) }
    package mutating func u32(_ value: UInt32) { for i in 0 ..< 4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) } }
    package mutating func u64(_ value: UInt64) { u32(UInt32(truncatingIfNeeded: value)); u32(UInt32(truncatingIfNeeded: value >> 32)) }
    package mutating func zeros(_ count: Int) { bytes += [UInt8](repeating: 0, count: count) }
    package mutating func append(_ more: [UInt8]) { bytes += more }
}

