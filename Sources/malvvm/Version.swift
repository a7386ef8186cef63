import ControlAPI

/// What `malvvm --version` prints: the semantic version and the commit the binary was built
/// from, "0.1.0 (1a2b3c4)".
///
/// The commit comes from `Generated/BuildInfo.swift`, which `scripts/build-info` writes from
/// `git describe` (scripts/setup and scripts/gpu-check run it before building). That folder is
/// not tracked, and the package builds without it: the file only adds `BuildInfo.commit` on the
/// concrete type, which outranks the protocol extension's default below when present; with no
/// file, the default answers. No manifest logic, no build plugin, no network.
enum MalvvmVersion {
    static let semantic = "0.1.0"

    /// "1a2b3c4", "1a2b3c4-dirty" (uncommitted changes to tracked files), or "unknown commit"
    /// (built without scripts/build-info, e.g. from a tarball).
    static var commit: String { BuildInfo.commit ?? "unknown commit" }

    static var description: String { "\(semantic) (\(commit))" }

    /// What both APIs answer `GET /v1/version` with.
    static var api: APIVersion { APIVersion(version: semantic, commit: commit) }
}

/// The values a build writes in Generated/BuildInfo.swift, as `extension BuildInfo`.
enum BuildInfo: BuildInfoValues {}

protocol BuildInfoValues {
    static var commit: String? { get }
}

extension BuildInfoValues {
    static var commit: String? { nil }
}
