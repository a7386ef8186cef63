/// A buffer as the backend's callers name it. Ids are never reused within one backend, so a
/// stale id fails with `unknownBuffer` instead of reaching another client's memory.
public struct BufferID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public var description: String { "buffer#\(rawValue)" }
}

/// Where a buffer's memory lives. `deviceLocal` is what kernels want on a discrete GPU; the
/// host reaches it through a staging copy. `hostVisible` is mapped, for data the host writes
/// or reads every step (inputs, losses).
public enum MemoryPlacement: String, Hashable, Sendable, CaseIterable {
    case deviceLocal
    case hostVisible
}

/// The scalar type of a kernel operand; it fixes how a range's element offset and count turn
/// into bytes.
public enum ElementType: String, Hashable, Sendable {
    case float32
    case uint32
    case uint8

    public var byteSize: Int {
        switch self {
        case .float32, .uint32: return 4
        case .uint8: return 1
        }
    }
}

/// A contiguous run of elements in one buffer. Offsets and counts are in elements of the
/// operand's `ElementType`, so kernels never see byte arithmetic and a misaligned float
/// access cannot be expressed.
public struct BufferRange: Hashable, Sendable, CustomStringConvertible {
    public var buffer: BufferID
    public var offset: Int
    public var count: Int

    public init(_ buffer: BufferID, offset: Int = 0, count: Int) {
        self.buffer = buffer
        self.offset = offset
        self.count = count
    }

    public var description: String { "\(buffer)[\(offset)..<\(offset + count)]" }
}
