import CFDPassing
import Foundation
import Glibc
import Hypervisor
import Platform
import Synchronization

public struct ChannelError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
    init(_ call: String, errno code: Int32) { description = "\(call): \(String(cString: strerror(code)))" }
}

/// One end of a SOCK_SEQPACKET Unix socket carrying JSON messages, each with the file
/// descriptors it hands over (SCM_RIGHTS). Message boundaries are the socket's, so a message
/// is never split or merged, and descriptors always arrive with the message they belong to.
final class MessageChannel: @unchecked Sendable {
    static let maxMessageBytes = 64 << 10
    let fileDescriptor: Int32
    private let sendLock = Monitor()

    init(adopting fileDescriptor: Int32) { self.fileDescriptor = fileDescriptor }

    deinit { close(fileDescriptor) }

    /// Connects to a listening socket at `path`.
    static func connect(to path: String) throws(ChannelError) -> MessageChannel {
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ChannelError("socket", errno: errno) }
        let channel = MessageChannel(adopting: fd)
        var address = try socketAddress(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { throw ChannelError("cannot connect to '\(path)': \(String(cString: strerror(errno)))") }
        return channel
    }

    static func socketAddress(_ path: String) throws(ChannelError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ChannelError("socket path '\(path)' is empty or longer than 107 bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    func send<Message: Encodable>(_ message: Message, fds: [Int32] = []) throws(ChannelError) {
        let data: Data
        do { data = try JSONEncoder().encode(message) } catch { throw ChannelError("cannot encode \(Message.self): \(error)") }
        guard data.count <= Self.maxMessageBytes else { throw ChannelError("message of \(data.count) bytes is too large") }
        let sent = sendLock.withLock {
            data.withUnsafeBytes { bytes in fds.withUnsafeBufferPointer { fdpass_send(fileDescriptor, bytes.baseAddress, bytes.count, $0.baseAddress, Int32(fds.count)) } }
        }
        guard sent == data.count else { throw ChannelError("sendmsg", errno: sent < 0 ? Int32(-sent) : EMSGSIZE) }
    }

    /// The next message and its descriptors (the caller owns them); nil at end of stream.
    /// A message that does not decode closes its descriptors and throws.
    func receive<Message: Decodable>(_: Message.Type) throws(ChannelError) -> (Message, [Int32])? {
        var buffer = [UInt8](repeating: 0, count: Self.maxMessageBytes)
        var fds = [Int32](repeating: -1, count: Int(FDPASS_MAX_FDS))
        var count: Int32 = 0
        let received = buffer.withUnsafeMutableBytes { bytes in
            fdpass_receive(fileDescriptor, bytes.baseAddress, bytes.count, &fds, Int32(fds.count), &count)
        }
        if received == 0 { return nil }
        guard received > 0 else { throw ChannelError("recvmsg", errno: Int32(-received)) }
        let descriptors = Array(fds.prefix(Int(count)))
        do {
            return (try JSONDecoder().decode(Message.self, from: Data(buffer.prefix(received))), descriptors)
        } catch {
            descriptors.forEach { close($0) }
            throw ChannelError("malformed \(Message.self) message: \(error)")
        }
    }

    /// Bounds how long `receive` waits (0: for ever); past it `receive` throws `timedOut`.
    func setReceiveTimeout(seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        _ = setsockopt(fileDescriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Wakes a thread blocked in `receive` on this channel (it sees end of stream).
    func shutDown() { Glibc.shutdown(fileDescriptor, Int32(SHUT_RDWR)) }
}

/// A listening SOCK_SEQPACKET socket at a path: created 0600, or adopted from systemd's
/// socket activation (its owner, group and mode are the .socket unit's).
final class MessageListener: @unchecked Sendable {
    let path: String
    let fileDescriptor: Int32
    /// Whether this listener made the socket file (and so removes it when shut down); an
    /// adopted one belongs to the service manager, which keeps listening after we exit.
    private let ownsPath: Bool
    /// Wakes `accept` at shutdown. A shutdown(2) of the socket itself would also end the
    /// service manager's copy of an adopted one, and no daemon could be activated on it again.
    private let wakeup: EventFD
    private let isShutDown = Atomic<Bool>(false)

    init(path: String) throws(ChannelError) {
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ChannelError("socket", errno: errno) }
        var address: sockaddr_un
        do { address = try MessageChannel.socketAddress(path) } catch {
            close(fd)
            throw error
        }
        // The socket is created with the umask's bits: none but ours from the start.
        let previous = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(previous)
        guard bound == 0, listen(fd, 64) == 0 else {
            let error = errno
            close(fd)
            throw ChannelError("cannot listen on '\(path)': \(String(cString: strerror(error)))")
        }
        let wakeup: EventFD
        do { wakeup = try EventFD() } catch {
            close(fd)
            unlink(path)
            throw ChannelError("\(error)")
        }
        self.path = path
        self.fileDescriptor = Self.listening(fd)
        self.ownsPath = true
        self.wakeup = wakeup
    }

    /// Serves the socket systemd passed.
    init(adopting socket: ActivatedSocket) throws(ChannelError) {
        do { wakeup = try EventFD() } catch { throw ChannelError("\(error)") }
        path = socket.path
        fileDescriptor = Self.listening(socket.fileDescriptor)
        ownsPath = false
    }

    /// `fd`, made non-blocking for `accept` (accepted connections do not inherit it). On an
    /// adopted socket the flag is the service manager's too, which polls it anyway.
    private static func listening(_ fd: Int32) -> Int32 {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    deinit { close(fileDescriptor) }

    enum Accepted {
        case connection(MessageChannel)
        /// The listener was shut down.
        case closed
        /// The process or system is out of descriptors or memory for now (EMFILE, ENFILE,
        /// ENOBUFS, ENOMEM): the connection waits in the backlog; try again later.
        case outOfResources(Int32)
    }

    /// The next connection, or why there is none now.
    func accept() -> Accepted {
        while true {
            var waits = [pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0),
                         pollfd(fd: wakeup.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            if poll(&waits, 2, -1) < 0, errno == EINTR { continue }
            if isShutDown.load(ordering: .acquiring) { return .closed }
            guard waits[0].revents != 0 else { continue }
            // The listener is non-blocking (`Self.listening`): if the connection poll saw is
            // gone (the peer gave up, or a daemon before us on an adopted socket took it),
            // accept says EAGAIN instead of blocking where the wake-up cannot reach it.
            let fd = fdpass_accept(fileDescriptor)
            if fd >= 0 { return .connection(MessageChannel(adopting: fd)) }
            let code = -fd
            if isShutDown.load(ordering: .acquiring) { return .closed }
            switch code {
            case EINTR, ECONNABORTED, EPROTO, EAGAIN: continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM: return .outOfResources(code)
            default: return .closed
            }
        }
    }

    func shutDown() {
        isShutDown.store(true, ordering: .releasing)
        wakeup.signal()
        guard ownsPath else { return }
        // Ours alone: refuse connections from now on, not only stop taking them.
        Glibc.shutdown(fileDescriptor, Int32(SHUT_RDWR))
        unlink(path)
    }
}
