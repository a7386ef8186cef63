import Glibc

/// The one directory service modules are loaded from, and the checks that keep anyone but its
/// operator from choosing what code malvvm runs: a module must resolve (symlinks followed) to
/// a regular file inside the directory, and the file, every directory from it up to the module
/// directory, and the module directory's ancestors must be owned by the operator (this
/// process's effective user) or root and writable by no one else (an ancestor writable by
/// others is accepted only with the sticky bit, as /tmp). Guests never name a module: only the
/// operator's CLI and API do.
public struct ModuleDirectory: Sendable, Equatable {
    /// As configured (`--mlaas-dir`), for messages.
    public let path: String

    public init(_ path: String) { self.path = path }

    /// The directory holding the running malvvm binary: where SwiftPM puts the service
    /// libraries (`libpreprocess.so`) of the same build.
    public static var besideExecutable: ModuleDirectory {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return ModuleDirectory(".") }
        let executable = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return ModuleDirectory(parent(of: executable))
    }

    /// The file a service name is loaded from: `lib<NAME>.so` in the directory (SwiftPM's name
    /// for a dynamic library product called NAME).
    public static func fileName(forService name: String) -> String { "lib\(name).so" }

    /// The canonical path of the directory, after checking it and its ancestors.
    public func validate() throws(MLaaSError) -> String {
        guard let canonical = Self.realPath(path) else {
            throw .moduleDirectory("module directory '\(path)': \(Self.errnoString())")
        }
        var info = stat()
        guard stat(canonical, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw .moduleDirectory("module directory '\(path)' is not a directory")
        }
        if let reason = Self.unsafeReason(info) {
            throw .moduleDirectory("refusing module directory '\(path)': it \(reason)")
        }
        var ancestor = Self.parent(of: canonical)
        while true {
            var above = stat()
            guard stat(ancestor, &above) == 0 else { throw .moduleDirectory("module directory '\(path)': cannot inspect '\(ancestor)'") }
            // A sticky directory (/tmp) lets others add entries but not rename or remove ours.
            if let reason = Self.unsafeReason(above, sharedWriteAllowed: above.st_mode & S_ISVTX != 0) {
                throw .moduleDirectory("refusing module directory '\(path)': its ancestor '\(ancestor)' \(reason)")
            }
            if ancestor == "/" { break }
            ancestor = Self.parent(of: ancestor)
        }
        return canonical
    }

    /// Resolves what a client named — an absolute path, or a bare file name in the directory
    /// (`libpreprocess.so`, or the service name `preprocess` for `libpreprocess.so`) — to the
    /// canonical path of a module file that passed every check.
    public func resolve(_ request: String) throws(MLaaSError) -> String {
        let directory = try validate()
        guard !request.isEmpty, !request.utf8.contains(0) else { throw .noSuchModule(request) }
        let candidate: String
        if request.hasPrefix("/") {
            candidate = request
        } else if !request.contains("/") {
            let direct = directory + "/" + request
            let byName = directory + "/" + Self.fileName(forService: request)
            candidate = access(direct, F_OK) != 0 && access(byName, F_OK) == 0 ? byName : direct
        } else {
            throw .notInModuleDirectory(path: request, reason: "name a module by absolute path or by its file name in '\(path)'")
        }
        guard let canonical = Self.realPath(candidate) else {
            if errno == ENOENT { throw .noSuchModule(candidate) }
            throw .cannotLoad(path: candidate, reason: Self.errnoString())
        }
        guard canonical.hasPrefix(directory == "/" ? "/" : directory + "/") else {
            throw .notInModuleDirectory(path: request, reason: canonical == candidate
                ? "it is outside '\(directory)'" : "it resolves (through a symlink) to '\(canonical)', outside '\(directory)'")
        }
        var info = stat()
        guard stat(canonical, &info) == 0 else { throw .cannotLoad(path: canonical, reason: Self.errnoString()) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .insecureModule(path: canonical, reason: "it is not a regular file") }
        if let reason = Self.unsafeReason(info) { throw .insecureModule(path: canonical, reason: "it \(reason)") }
        // Every directory between the module and the module directory (itself checked above).
        var inner = Self.parent(of: canonical)
        while inner != directory {
            var above = stat()
            guard stat(inner, &above) == 0 else { throw .cannotLoad(path: canonical, reason: "cannot inspect '\(inner)'") }
            if let reason = Self.unsafeReason(above) {
                throw .insecureModule(path: canonical, reason: "the directory '\(inner)' \(reason)")
            }
            inner = Self.parent(of: inner)
        }
        return canonical
    }

    /// Why a file or directory is unsafe to trust, or nil.
    static func unsafeReason(_ info: stat, sharedWriteAllowed: Bool = false) -> String? {
        let owner = info.st_uid
        if owner != geteuid() && owner != 0 {
            return "is owned by uid \(owner), neither the operator (uid \(geteuid())) nor root"
        }
        if sharedWriteAllowed { return nil }
        if info.st_mode & S_IWOTH != 0 { return "is writable by every user (mode \(String(info.st_mode & 0o7777, radix: 8)))" }
        if info.st_mode & S_IWGRP != 0 { return "is writable by its group (mode \(String(info.st_mode & 0o7777, radix: 8)))" }
        return nil
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func errnoString() -> String { String(cString: strerror(errno)) }
}
