import CKVM
import Glibc

/// A Linux eventfd: the doorbell (ioeventfd) and interrupt (irqfd) wire between KVM and a device
/// thread. Non-blocking: `drain` never waits.
public final class EventFD: @unchecked Sendable {
    public let fileDescriptor: Int32

    public init() throws(SystemError) {
        let fd = ckvm_eventfd(0)
        guard fd >= 0 else { throw SystemError("eventfd", errno: -fd) }
        fileDescriptor = fd
    }

    /// Takes ownership of an eventfd another process shared with us (SCM_RIGHTS).
    public init(adopting fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    deinit { close(fileDescriptor) }

    public func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(fileDescriptor, $0.baseAddress, 8) }
    }

    /// Reads and clears the counter; returns how many signals arrived since the last drain.
    @discardableResult
    public func drain() -> UInt64 {
        var value: UInt64 = 0
        let count = withUnsafeMutableBytes(of: &value) { read(fileDescriptor, $0.baseAddress, 8) }
        return count == 8 ? value : 0
    }
}
