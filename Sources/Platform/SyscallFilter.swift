import CSeccomp

/// The VMM's system-call filter (issue #14, README "Hardening: confinement"): once `malvvm run`
/// or `malvvm gpud` has set everything up, the calls a subverted VMM would make to get out —
/// running a program, tracing another process, mounting, loading a module or a BPF program,
/// changing namespaces, keys or the clock — are trapped on every thread, and the process ends
/// with one line naming the call.
public enum SyscallFilter {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Installs the filter on every thread of the process. A trapped call ends the process with
    /// `exitStatus` after one line on stderr.
    public static func confine(exitStatus: Int32) throws(Failure) {
        var error = [CChar](repeating: 0, count: 256)
        guard malv_seccomp_confine(exitStatus, &error, error.count) == 0 else {
            throw Failure(description: String(cString: error))
        }
    }

    /// The calls the filter forbids, by name.
    public static var forbiddenCalls: [String] {
        (0 ..< malv_seccomp_forbidden_count()).compactMap { malv_seccomp_forbidden_name($0).map { String(cString: $0) } }
    }

    /// Makes one forbidden (and otherwise harmless) call: with the filter in, the process ends.
    public static func makeForbiddenCall() {
        malv_seccomp_make_forbidden_call()
    }
}
