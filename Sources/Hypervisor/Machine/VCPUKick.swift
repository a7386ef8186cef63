import Glibc

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
