import Glibc

/// Reads a kernel or initrd file whole, with errors that say which of the two it was.
public enum ImageFile {
    public enum Role: String, Sendable {
        case kernel, initrd
    }

    public static func read(_ path: String, role: Role) throws(BootError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, errno: errno, role: role) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, errno: errno, role: role) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .unreadable(path: path, errno: EISDIR, role: role) }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, $0.count - done) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .unreadable(path: path, errno: count < 0 ? errno : EIO, role: role) }
            done += count
        }
        return bytes
    }
}
