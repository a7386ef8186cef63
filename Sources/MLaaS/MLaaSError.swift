/// Why a service could not be loaded, attached, asked or unloaded: one line each, naming the
/// module or service and the reason, for the CLI and the API's `{"error": ...}`.
public enum MLaaSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The module directory itself is missing or not safe to load from.
    case moduleDirectory(String)
    /// A path that is not inside the module directory (directly, or through a symlink).
    case notInModuleDirectory(path: String, reason: String)
    /// A module (or a directory on its way) that someone other than the operator could change.
    case insecureModule(path: String, reason: String)
    case noSuchModule(String)
    /// dlopen refused the file (not a shared library, a missing dependency).
    case cannotLoad(path: String, reason: String)
    /// A shared library without the entry symbol `malv_mlaas_service_v1`.
    case notAService(path: String)
    case wrongABIVersion(path: String, module: UInt32, host: UInt32)
    /// The descriptor's fields are malformed (bad magic, size, name, kind, a NULL entry point).
    case invalidDescriptor(path: String, reason: String)
    /// A module whose service name differs from the name it was loaded as (`--mlaas NAME`).
    case nameMismatch(path: String, expected: String, declared: String)
    /// A different build of a module file is still mapped from an earlier load.
    case staleImage(path: String)
    case duplicateName(name: String, loadedFrom: String)
    case unknownService(String)
    /// Not a service name ([a-z0-9][a-z0-9-]*, at most 32 characters).
    case invalidName(String)
    case initFailed(name: String, status: Int32)
    case attachFailed(service: String, vm: String, reason: String)
    case alreadyAttached(service: String, vm: String)
    case notAttached(service: String, vm: String)
    /// A request on a binding whose service was unloaded (the VM was detached first).
    case serviceUnloaded(service: String, vm: String)
    /// The service refused a request, with its own one-line reason.
    case refused(service: String, reason: String)
    case badGrant(String)

    public var description: String {
        switch self {
        case let .moduleDirectory(message): message
        case let .notInModuleDirectory(path, reason): "'\(path)' is not in the module directory: \(reason)"
        case let .insecureModule(path, reason): "refusing '\(path)': \(reason)"
        case let .noSuchModule(path): "no module '\(path)'"
        case let .cannotLoad(path, reason): "cannot load '\(path)': \(reason)"
        case let .notAService(path): "'\(path)' is not an MLaaS service: it does not export \(ServiceABI.entrySymbol)"
        case let .wrongABIVersion(path, module, host):
            "'\(path)' was built for MLaaS ABI \(module); this malvvm speaks ABI \(host)\(module > host ? " (a newer module)" : " (an older module)")"
        case let .invalidDescriptor(path, reason): "'\(path)' has a malformed service descriptor: \(reason)"
        case let .nameMismatch(path, expected, declared): "'\(path)' provides service '\(declared)', not '\(expected)'"
        case let .staleImage(path):
            "'\(path)' changed since an earlier load that is still mapped (modules stay mapped after unload); restart to load the new build"
        case let .duplicateName(name, loadedFrom): "a service named '\(name)' is already loaded (from '\(loadedFrom)')"
        case let .unknownService(name): "no service '\(name)' is loaded"
        case let .invalidName(name): "'\(name)' is not a service name (a-z, 0-9 and '-', at most 32 characters)"
        case let .initFailed(name, status): "service '\(name)' failed to initialise: \(ServiceABI.statusString(status))"
        case let .attachFailed(service, vm, reason): "service '\(service)' refused VM '\(vm)': \(reason)"
        case let .alreadyAttached(service, vm): "VM '\(vm)' is already attached to service '\(service)'"
        case let .notAttached(service, vm): "VM '\(vm)' is not attached to service '\(service)'"
        case let .serviceUnloaded(service, vm): "service '\(service)' was unloaded; VM '\(vm)' is no longer attached to it"
        case let .refused(service, reason): "\(service): \(reason)"
        case let .badGrant(message): message
        }
    }
}
