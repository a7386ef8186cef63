/// The command format the virtual GPU's front end fetches from the ring: 32 bytes, four
/// little-endian 64-bit words. Deliberately minimal: the device slice maps `dispatch` onto
/// real GPU kernels; the others are what any GPU command processor has (a no-op, a memory
/// write used as a semaphore release, and a fence that signals completion).
///
/// | word | bits  | contents                                                        |
/// |------|-------|-----------------------------------------------------------------|
/// | 0    | 7:0   | opcode                                                          |
/// | 0    | 31:8  | reserved, 0                                                     |
/// | 0    | 63:32 | immediate: kernel id (dispatch), completion vector (fence)      |
/// | 1-3  |       | operands, per opcode; unused operands must be 0                 |
///
/// | opcode | name     | word 1                    | word 2                     | word 3          |
/// |--------|----------|---------------------------|----------------------------|-----------------|
/// | 0x00   | nop      | 0                         | 0                          | 0               |
/// | 0x01   | write64  | GPU address (8-aligned)   | value                      | 0               |
/// | 0x02   | fence    | fence value               | 0                          | 0               |
/// | 0x03   | dispatch | input buffer GPU address  | output buffer GPU address  | length in bytes |
/// | 0x04   | execute  | command stream GPU address| stream length in bytes     | 0               |
///
/// A fence's completion vector (immediate) must be below the unit's completion-vector count.
/// A dispatch's buffers are 8-aligned and `length` is 1 byte to 16 MiB; the input needs read
/// permission and the output write permission on every page, in both translation stages.
/// `execute` is an indirect buffer (AMD's INDIRECT_BUFFER, NVIDIA's pushbuffer segment): the
/// executor runs the kernel stream at that address as one GPU batch, translating the buffers it
/// names through the same two stages; the stream is 8-aligned and 16 B to 1 MiB.
public enum GVMCommand: Hashable, Sendable {
    case nop
    case write64(address: UInt64, value: UInt64)
    case fence(value: UInt64, vector: UInt8)
    case dispatch(kernel: UInt32, input: UInt64, output: UInt64, length: UInt64)
    case execute(stream: UInt64, length: UInt64)

    public static let size: UInt64 = 32
    public static let maxDispatchLength: UInt64 = 16 << 20
    public static let streamLengthRange: ClosedRange<UInt64> = 16...(1 << 20)

    public enum Opcode: UInt8, Sendable {
        case nop = 0, write64 = 1, fence = 2, dispatch = 3, execute = 4
    }

    /// Why a command's words do not decode, and which word (byte offset) is at fault.
    public struct DecodeError: Error, Hashable, Sendable {
        public let cause: GVMInvalidCommandCause
        public let offset: UInt32
    }

    /// The four words of the command, as `encode` writes them.
    public var words: [UInt64] {
        switch self {
        case .nop:
            [0, 0, 0, 0]
        case .write64(let address, let value):
            [UInt64(Opcode.write64.rawValue), address, value, 0]
        case .fence(let value, let vector):
            [UInt64(vector) << 32 | UInt64(Opcode.fence.rawValue), value, 0, 0]
        case .dispatch(let kernel, let input, let output, let length):
            [UInt64(kernel) << 32 | UInt64(Opcode.dispatch.rawValue), input, output, length]
        case .execute(let stream, let length):
            [UInt64(Opcode.execute.rawValue), stream, length, 0]
        }
    }

    public static func decode(_ words: [UInt64], vectorCount: Int) throws(DecodeError) -> GVMCommand {
        precondition(words.count == 4)
        let head = words[0]
        guard let opcode = Opcode(rawValue: UInt8(truncatingIfNeeded: head)) else {
            throw DecodeError(cause: .unknownOpcode, offset: 0)
        }
        if head & 0xFFFF_FF00 != 0 { throw DecodeError(cause: .reservedBitsSet, offset: 0) }
        let immediate = UInt32(truncatingIfNeeded: head >> 32)
        func requireZero(_ words: ArraySlice<UInt64>) throws(DecodeError) {
            for (index, word) in zip(words.indices, words) where word != 0 {
                throw DecodeError(cause: .reservedBitsSet, offset: UInt32(index * 8))
            }
        }
        func requireAligned(_ word: Int) throws(DecodeError) {
            if words[word] & 7 != 0 {
                throw DecodeError(cause: .misalignedAddress, offset: UInt32(word * 8))
            }
        }
        switch opcode {
        case .nop:
            if immediate != 0 { throw DecodeError(cause: .reservedBitsSet, offset: 0) }
            try requireZero(words[1...3])
            return .nop
        case .write64:
            if immediate != 0 { throw DecodeError(cause: .reservedBitsSet, offset: 0) }
            try requireAligned(1)
            try requireZero(words[3...3])
            return .write64(address: words[1], value: words[2])
        case .fence:
            guard immediate < vectorCount, immediate <= UInt8.max else {
                throw DecodeError(cause: .vectorOutOfRange, offset: 0)
            }
            try requireZero(words[2...3])
            return .fence(value: words[1], vector: UInt8(immediate))
        case .dispatch:
            try requireAligned(1)
            try requireAligned(2)
            guard (1...maxDispatchLength).contains(words[3]) else {
                throw DecodeError(cause: .lengthOutOfRange, offset: 24)
            }
            return .dispatch(kernel: immediate, input: words[1], output: words[2], length: words[3])
        case .execute:
            if immediate != 0 { throw DecodeError(cause: .reservedBitsSet, offset: 0) }
            try requireAligned(1)
            guard streamLengthRange.contains(words[2]) else {
                throw DecodeError(cause: .lengthOutOfRange, offset: 16)
            }
            try requireZero(words[3...3])
            return .execute(stream: words[1], length: words[2])
        }
    }
}
