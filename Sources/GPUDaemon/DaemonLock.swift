import Glibc
import Synchronization

/// `SOCKET.lock`, held with `flock` for as long as one daemon serves `SOCKET`. The kernel
/// drops the lock when the process dies however it dies, so a stale lock file is never in the
/// way; two daemons started at once cannot both pass (a `connect()` probe of the socket could:
/// both see nothing listening, and the second unlinks the first's socket). The file holds the
/// owner's pid, for the error a second daemon prints and for an operator's `cat`.
final class DaemonLock: Sendable {
    let path: String
    /// The locked file; nil once released.
    private let fileDescriptor: Mutex<Int32?>

    static func path(forSocket socketPath: String) -> String { socketPath + ".lock" }

    /// Takes the lock for `socketPath`, or says who holds it.
    init(socketPath: String) throws(ChannelError) {
        path = Self.path(forSocket: socketPath)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw ChannelError("cannot open the lock file '\(path)': \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            let owner = Self.readPID(fd)
            close(fd)
            guard code == EWOULDBLOCK else {
                throw ChannelError("cannot lock '\(path)': \(String(cString: strerror(code)))")
            }
            throw ChannelError("a GPU daemon\(owner.map { " (pid \($0))" } ?? "") is already serving '\(socketPath)'")
        }
        var text = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeMutableBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        fileDescriptor = Mutex(fd)
    }

    /// Lets go of the lock and removes the file (only its holder does); once.
    func release() {
        guard let fd = fileDescriptor.withLock({ fd in defer { fd = nil }; return fd }) else { return }
        unlink(path)
        close(fd)
    }

    deinit { release() }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[..<count].prefix { (0x30 ... 0x39).contains($0) }, as: UTF8.self))
    }
}
