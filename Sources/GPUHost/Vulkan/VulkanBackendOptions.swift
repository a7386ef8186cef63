#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a `VulkanBackend` behaves where devices differ. The defaults are what production
/// wants; the rest exists so the paths a discrete GPU takes can be run and measured on a
/// unified-memory device such as lavapipe.
public struct VulkanBackendOptions: Hashable, Sendable {
    public enum Staging: String, Hashable, Sendable, CaseIterable {
        /// Host transfers memcpy straight into buffers whose memory is host-mapped (lavapipe's
        /// and integrated GPUs' device-local memory, every `hostVisible` buffer) and go
        /// through staging only where it is not (a discrete GPU's VRAM).
        case automatic = "auto"
        /// Device-local memory is treated as if the host could not map it, so every transfer
        /// to or from a `deviceLocal` buffer goes through staging, as on a discrete GPU.
        case always
    }

    public enum HostImport: String, Hashable, Sendable, CaseIterable {
        /// Host memory a client shares (`ComputeBackend.shareHostMemory`: a VM's RAM) is
        /// imported where the device can (VK_EXT_external_memory_host), and transfers that
        /// would go through staging become device copies out of and into it.
        case automatic = "auto"
        /// Never imported: every such transfer goes through staging (to measure the difference).
        case off
    }

    /// The environment variable `BackendFactory` reads `staging` from: `always` or `auto`.
    public static let stagingEnvironmentVariable = "MALVVM_VULKAN_STAGING"
    /// The environment variable `BackendFactory` reads `hostImport` from: `auto` or `off`.
    public static let hostImportEnvironmentVariable = "MALVVM_VULKAN_HOST_IMPORT"

    public var staging: Staging
    public var hostImport: HostImport
    /// The largest staging buffer a standalone `write`/`read` keeps; bigger transfers are cut
    /// into pieces of this size, so one huge transfer does not pin that much host memory for
    /// the backend's life.
    var standaloneStagingLimit: Int = 8 << 20
    /// A submission slot keeps a staging buffer up to this size for its next batch; a bigger
    /// one (an unusually large batch) is freed when its batch retires.
    var slotStagingRetainLimit: Int = 64 << 20

    public init(staging: Staging = .automatic, hostImport: HostImport = .automatic) {
        self.staging = staging
        self.hostImport = hostImport
    }

    /// The options the process environment asks for. An unknown value is returned as an
    /// error message so the caller can say so instead of silently measuring another path.
    public static func fromEnvironment() -> (options: VulkanBackendOptions, problem: String?) {
        fromEnvironment(stagingValue: getenv(stagingEnvironmentVariable).map { String(cString: $0) },
                        hostImportValue: getenv(hostImportEnvironmentVariable).map { String(cString: $0) })
    }

    /// As `fromEnvironment()`, with the variables' values (nil when unset) passed in.
    static func fromEnvironment(stagingValue: String?, hostImportValue: String? = nil)
        -> (options: VulkanBackendOptions, problem: String?) {
        var problems: [String] = []
        func parse<Choice: RawRepresentable & CaseIterable>(_ value: String?, _ variable: String, default fallback: Choice)
            -> Choice where Choice.RawValue == String {
            guard let value, !value.isEmpty else { return fallback }
            if let choice = Choice(rawValue: value.lowercased()) { return choice }
            let accepted = Choice.allCases.map(\.rawValue).joined(separator: ", ")
            problems.append("\(variable)=\(value) is not one of \(accepted); using \(fallback.rawValue)")
            return fallback
        }
        let options = VulkanBackendOptions(
            staging: parse(stagingValue, stagingEnvironmentVariable, default: Staging.automatic),
            hostImport: parse(hostImportValue, hostImportEnvironmentVariable, default: HostImport.automatic))
        return (options, problems.isEmpty ? nil : problems.joined(separator: "; "))
    }
}
