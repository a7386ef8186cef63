import CPlatform
import Glibc

/// A POSIX thread running a closure, the one way every module starts a thread of its own.
///
/// Unlike Foundation's `Thread`, creating one reports failure (EAGAIN when the process is out
/// of threads or address space for a stack) instead of never running the closure, so a caller
/// that waits for the thread to end can never wait forever; and a vCPU gets a real thread it
/// owns, one that a signal can interrupt inside KVM_RUN.
public final class NativeThread: @unchecked Sendable {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    public let handle: pthread_t

    /// Starts `body` on a new thread named `name` (the kernel keeps 15 bytes of it, shown by
    /// `top -H` and in core dumps). Throws the errno of a thread that could not be created.
    public init(name: String? = nil, detached: Bool = false, _ body: @escaping @Sendable () -> Void) throws(ThreadStartError) {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { context in
            Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw ThreadStartError(name: name ?? "thread", errno: result)
        }
        if let name { _ = cplatform_set_thread_name(handle, name) }
        if detached { pthread_detach(handle) }
        self.handle = handle
    }

    /// Waits for the thread to end (never for a detached one).
    public func join() {
        pthread_join(handle, nil)
    }

    public func signal(_ number: Int32) {
        pthread_kill(handle, number)
    }
}

/// A thread that could not be created, with the reason pthread_create gave.
public struct ThreadStartError: Error, Sendable, CustomStringConvertible {
    public let name: String
    public let errno: Int32
    public var description: String { "cannot start thread '\(name)': \(String(cString: strerror(errno)))" }
}
