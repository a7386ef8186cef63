/// Bits 7:0 of an invalid-command exit's qualification. `exitCommandIndex` names the ring
/// slot and `exitCommandOffset` the byte offset of the offending word within the command.
public enum GVMInvalidCommandCause: UInt8, CaseIterable, Sendable {
    case unknownOpcode = 1
    /// A reserved bit or an operand the opcode does not use is not zero.
    case reservedBitsSet = 2
    case misalignedAddress = 3
    case lengthOutOfRange = 4
    case vectorOutOfRange = 5
    /// The executor does not know the kernel.
    case unknownKernel = 6
    /// With nested paging off, the guest named a guest-physical address host memory lacks.
    case unbackedAddress = 7
    /// The executor refused the work: an `execute` stream that does not decode, or a kernel's
    /// shape or operands; nothing of it ran.
    case invalidWork = 8
}
