import Glibc

/// A failed system call, with the call's name and errno, for one-line error messages.
public struct SystemError: Error, Equatable, CustomStringConvertible, Sendable {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// Wraps a CKVM result (non-negative value or -errno).
    static func check(_ result: Int32, _ operation: @autoclosure () -> String) throws(SystemError) -> Int32 {
        if result < 0 { throw SystemError(operation(), errno: -result) }
        return result
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno)))"
    }
}
