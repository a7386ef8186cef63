/// Little-endian packing of the byte strings that cross the guest boundary (port and MMIO
/// data, device registers, request headers, firmware tables). One place for it, so no device
/// hand-rolls its own shifts.
extension Collection where Element == UInt8 {
    /// The first up-to-eight bytes as a little-endian integer (shorter data zero-extends).
    public var littleEndianValue: UInt64 {
        var value: UInt64 = 0
        for (index, byte) in prefix(8).enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
        return value
    }
}

extension Array where Element == UInt8 {
    /// The little-endian `T` at `offset`; the caller has checked the bounds.
    public func littleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(truncatingIfNeeded: self[offset..<(offset + MemoryLayout<T>.size)].littleEndianValue)
    }

    public mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Fills the buffer with the low bytes of `value`, little-endian (a register read).
    public func storeLittleEndian(_ value: UInt64) {
        for index in indices { self[index] = index < 8 ? UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) : 0 }
    }
}
