/// Why a kernel description was rejected before it reached a device. Each case names the
/// kernel and the operand or dimension at fault so a guest-facing layer can report it.
public enum KernelValidationError: Error, Hashable, Sendable, CustomStringConvertible {
    case zeroDimension(kernel: String, dimension: String)
    case negativeValue(kernel: String, name: String, value: Int)
    /// A dimension, or a product of dimensions, above `Kernel.maxElements`: shaders index in
    /// 32 bits.
    case dimensionTooLarge(kernel: String, dimension: String, value: Int, limit: Int)
    case rangeCountMismatch(kernel: String, operand: String, expected: Int, actual: Int)
    case unknownBuffer(kernel: String, operand: String, buffer: BufferID)
    case rangeOutOfBounds(kernel: String, operand: String, range: BufferRange, endByte: Int, capacity: Int)
    /// Two operands share memory in a way the kernel cannot compute correctly.
    case overlappingOperands(kernel: String, first: String, second: String)
    case invalidParameter(kernel: String, name: String, reason: String)

    public var description: String {
        switch self {
        case let .zeroDimension(kernel, dimension):
            return "\(kernel): \(dimension) is zero"
        case let .negativeValue(kernel, name, value):
            return "\(kernel): \(name) is negative (\(value))"
        case let .dimensionTooLarge(kernel, dimension, value, limit):
            return "\(kernel): \(dimension) = \(value) exceeds \(limit)"
        case let .rangeCountMismatch(kernel, operand, expected, actual):
            return "\(kernel): \(operand) has \(actual) elements, shape needs \(expected)"
        case let .unknownBuffer(kernel, operand, buffer):
            return "\(kernel): \(operand) names unknown \(buffer)"
        case let .rangeOutOfBounds(kernel, operand, range, endByte, capacity):
            return "\(kernel): \(operand) \(range) ends at byte \(endByte), buffer holds \(capacity)"
        case let .overlappingOperands(kernel, first, second):
            return "\(kernel): \(first) and \(second) overlap"
        case let .invalidParameter(kernel, name, reason):
            return "\(kernel): \(name) \(reason)"
        }
    }
}
