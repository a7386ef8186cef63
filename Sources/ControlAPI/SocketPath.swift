import Foundation

/// Where API sockets live and how one is claimed.
public enum SocketPath {
    /// `$XDG_RUNTIME_DIR/malvvm`, else `/run/malvvm` for root, else `/tmp/malvvm-UID`.
    public static var defaultDirectory: String {
        if let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return runtime + "/malvvm"
        }
        return getuid() == 0 ? "/run/malvvm" : "/tmp/malvvm-\(getuid())"
    }

    /// The API socket of the VM called `name` in the default directory.
    public static func forVM(named name: String) -> String { "\(defaultDirectory)/\(name).sock" }

    /// A VM name is a file name in the socket directory: keep it to a safe alphabet.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.first != "." && name.first != "-"
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    /// Makes the socket's directory (0700 when we create it), and removes a socket left by a
    /// VM that is gone. A socket that still answers belongs to a running VM: that is an error,
    /// not something to take over.
    static func claim(_ path: String) throws(APIError) {
        let directory = (path as NSString).deletingLastPathComponent
        do { try prepareDirectory(directory) } catch { throw .failed(error.description) }
        guard path.utf8.count < 108 else { throw .badRequest("API socket path '\(path)' is longer than 107 bytes") }
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        guard status.st_mode & S_IFMT == S_IFSOCK else {
            throw .conflict("'\(path)' exists and is not a socket")
        }
        if isLive(path) { throw .conflict("a VM is already serving '\(path)' (choose another --name or --api-socket)") }
        unlink(path)
    }

    /// A socket directory that is ours: created 0700 when missing. The default directory, which
    /// anyone could have made first (/tmp/malvvm-UID), must also be a real directory owned by us
    /// that nobody else can write or enter: otherwise another user could read our sockets'
    /// names, replace them, or make us serve theirs.
    public static func prepareDirectory(_ directory: String) throws(SocketDirectoryError) {
        guard !directory.isEmpty else { return }
        var status = stat()
        if lstat(directory, &status) != 0 {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch { throw SocketDirectoryError("cannot create '\(directory)': \(error.localizedDescription)") }
            guard lstat(directory, &status) == 0 else { throw SocketDirectoryError("cannot create '\(directory)'") }
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw SocketDirectoryError("'\(directory)' is not a directory (a link or file there is refused)")
        }
        let standardised = (directory as NSString).standardizingPath
        let isDefault = standardised == (defaultDirectory as NSString).standardizingPath
        guard isDefault else { return }
        guard status.st_uid == geteuid() else {
            throw SocketDirectoryError("'\(directory)' belongs to user \(status.st_uid), not to us: remove it or choose a socket elsewhere")
        }
        guard status.st_mode & 0o077 == 0 else {
            throw SocketDirectoryError(String(format: "'%@' has mode %o: others may reach our sockets; 'chmod 700' it or remove it",
                                              directory, Int(status.st_mode & 0o777)))
        }
    }

    /// The id of group `name`, or nil when the host has no such group.
    public static func groupID(named name: String) -> gid_t? {
        guard let entry = getgrnam(name) else { return nil }
        return entry.pointee.gr_gid
    }

    /// Lets group `group` connect to the socket at `path`: owner ours, that group, mode 0660.
    /// Sockets are created 0600, so before this call they were only more private.
    public static func share(_ path: String, withGroup group: gid_t) throws(SocketDirectoryError) {
        guard chown(path, uid_t.max, group) == 0 else {
            throw SocketDirectoryError("cannot give '\(path)' to group \(group): \(String(cString: strerror(errno)))")
        }
        guard chmod(path, 0o660) == 0 else {
            throw SocketDirectoryError("cannot chmod 660 '\(path)': \(String(cString: strerror(errno)))")
        }
    }

    /// Whether something accepts connections on the socket.
    public static func isLive(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0
    }

    /// The API sockets in the default directory, sorted by name.
    public static func sockets(in directory: String = defaultDirectory) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".sock") }.sorted().map { "\(directory)/\($0)" }
    }
}

/// A socket directory we will not serve in, in one line.
public struct SocketDirectoryError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
