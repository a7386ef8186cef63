import Glibc
import Synchronization

/// Collects the guest's console bytes and hands them on in lines (or when flushed), so a guest
/// that writes one byte per exit doesn't cost one write(2) per byte.
public final class ConsoleWriter: Sendable {
    private let pending = Mutex<[UInt8]>([])
    private let sink: @Sendable ([UInt8]) -> Void
    private static let flushThreshold = 4096

    public init(sink: @escaping @Sendable ([UInt8]) -> Void) {
        self.sink = sink
    }

    /// Writes to a file descriptor (stdout for `malvvm run`), retrying short writes.
    public static func fileDescriptor(_ fd: Int32) -> ConsoleWriter {
        ConsoleWriter { bytes in
            var done = 0
            while done < bytes.count {
                let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return }  // a closed stdout must not stop the guest
                done += count
            }
        }
    }

    public func append(_ byte: UInt8) {
        let ready: [UInt8]? = pending.withLock { buffer in
            buffer.append(byte)
            guard byte == 0x0a || buffer.count >= Self.flushThreshold else { return nil }
            defer { buffer.removeAll(keepingCapacity: true) }
            return buffer
        }
        if let ready { sink(ready) }
    }

    public func flush() {
        let ready: [UInt8] = pending.withLock { buffer in
            defer { buffer.removeAll(keepingCapacity: true) }
            return buffer
        }
        if !ready.isEmpty { sink(ready) }
    }
}
