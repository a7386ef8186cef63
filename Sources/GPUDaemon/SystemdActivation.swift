import Glibc

/// The listening socket systemd hands a socket-activated daemon (sd_listen_fds(3)): with
/// `LISTEN_PID` naming this process and `LISTEN_FDS=1`, descriptor 3 is the vgpu-user socket
/// the `.socket` unit (contrib/systemd/malvvm-gpud.socket) bound, with the owner, group and
/// mode the operator gave it there. Written by hand because the protocol is two environment
/// variables and a descriptor number; libsystemd is not something every host has.
public struct ActivatedSocket: Sendable {
    /// SD_LISTEN_FDS_START.
    static let firstDescriptor: Int32 = 3

    public let fileDescriptor: Int32
    /// Where it is bound (getsockname), so the lock file and the API socket sit beside it.
    public let path: String

    /// The socket systemd passed, nil when the process was not socket-activated, or why the
    /// passed descriptors cannot be served (not exactly one listening SOCK_SEQPACKET Unix
    /// socket at a path). Clears the variables either way, so no child inherits them.
    public static func take() throws(ChannelError) -> ActivatedSocket? {
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pid = getenv("LISTEN_PID").flatMap({ Int32(String(cString: $0)) }), pid == getpid() else { return nil }
        guard let count = getenv("LISTEN_FDS").flatMap({ Int(String(cString: $0)) }) else { return nil }
        guard count == 1 else {
            throw ChannelError("socket activation passed \(count) sockets; the GPU daemon serves exactly one (ListenSequentialPacket=)")
        }
        let fd = firstDescriptor
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard option(SO_DOMAIN) == AF_UNIX, option(SO_TYPE) == Int32(SOCK_SEQPACKET.rawValue) else {
            throw ChannelError("the socket-activated descriptor is not a Unix SOCK_SEQPACKET socket (ListenSequentialPacket= in the .socket unit)")
        }
        guard option(SO_ACCEPTCONN) == 1 else { throw ChannelError("the socket-activated descriptor is not listening") }
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let path = withUnsafeBytes(of: address.sun_path) { raw in
            String(decoding: raw.prefix(max(0, Int(length) - MemoryLayout<sa_family_t>.size)).prefix { $0 != 0 }, as: UTF8.self)
        }
        guard named == 0, path.hasPrefix("/") else {
            throw ChannelError("the socket-activated socket has no filesystem path (abstract sockets are not served)")
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return ActivatedSocket(fileDescriptor: fd, path: path)
    }
}

/// Tells the service manager how the daemon is doing (sd_notify(3)): one datagram to the
/// Unix socket `NOTIFY_SOCKET` names (a path, or an abstract name written with a leading @).
/// A `Type=notify` unit counts the daemon started only on `READY=1`, so VMs ordered after it
/// find both its sockets up. Without `NOTIFY_SOCKET` every call does nothing.
public enum ServiceNotifier {
    /// Sends `state` ("READY=1\nSTATUS=…"); false when there is no manager to tell or it
    /// could not be reached (a daemon goes on serving either way).
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        guard let raw = getenv("NOTIFY_SOCKET") else { return false }
        var name = Array(String(cString: raw).utf8)
        guard !name.isEmpty else { return false }
        if name[0] == UInt8(ascii: "@") { name[0] = 0 }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard name.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: name) }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + name.count)
        let sent = Array(state.utf8).withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, length)
                }
            }
        }
        return sent == state.utf8.count
    }
}
