import Glibc

/// A POSIX thread running a closure: vCPUs need a real thread they own, one that a signal can
/// interrupt inside KVM_RUN.
final class NativeThread: @unchecked Sendable {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    let handle: pthread_t

    init(_ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { context in
            Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw SystemError("pthread_create", errno: result)
        }
        self.handle = handle
    }

    func join() {
        pthread_join(handle, nil)
    }

    func signal(_ number: Int32) {
        pthread_kill(handle, number)
    }
}

/// The signal that knocks a vCPU thread out of KVM_RUN. Its handler does nothing: what matters is
/// that it interrupts the ioctl (no SA_RESTART) so the loop sees the stop request.
enum VCPUKick {
    static let signal = SIGUSR1

    static let installed: Void = {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(signal, &action, nil)
    }()

    /// A thread inherits its creator's signal mask, and test runners or libraries may block
    /// SIGUSR1: the vCPU thread unblocks it for itself.
    static func unblockOnThisThread() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}
