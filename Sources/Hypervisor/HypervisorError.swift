import Glibc

/// Everything that can stop a VM from being built or run, each with a one-line description.
public enum HypervisorError: Error, CustomStringConvertible, Sendable {
    case kvmUnavailable(path: String, errno: Int32)
    case kvmAPIVersion(Int)
    case system(SystemError)
    case memory(GuestMemoryError)
    case boot(BootError)
    case bus(BusError)
    case configuration(String)
    /// The request does not fit the VM's state (pause a paused VM, resume a running one).
    case state(String)
    case hotplug(HotplugError)

    public var description: String {
        switch self {
        case let .kvmUnavailable(path, errno):
            let hint = errno == EACCES ? " (add yourself to the 'kvm' group or run as root)"
                : errno == ENOENT ? " (is KVM enabled in this kernel and the BIOS?)" : ""
            return "cannot open \(path): \(String(cString: strerror(errno)))\(hint)"
        case let .kvmAPIVersion(version):
            return "unsupported KVM API version \(version) (expected \(KVMSystem.expectedAPIVersion))"
        case let .system(error): return error.description
        case let .memory(error): return error.description
        case let .boot(error): return error.description
        case let .bus(error): return error.description
        case let .configuration(message): return message
        case let .state(message): return message
        case let .hotplug(error): return error.description
        }
    }
}
