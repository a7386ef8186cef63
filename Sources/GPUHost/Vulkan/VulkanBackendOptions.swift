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

    /// The environment variable `BackendFactory` reads `staging` from: `always` or `auto`.
    public static let stagingEnvironmentVariable = "MALVVM_VULKAN_STAGING"

    public var staging: Staging
    /// The largest staging buffer a standalone `write`/`read` keeps; bigger transfers are cut
    /// into pieces of this size, so one huge transfer does not pin that much host memory for
    /// the backend's life.
    var standaloneStagingLimit: Int = 8 << 20
    /// A submission slot keeps a staging buffer up to this size for its next batch; a bigger
    /// one (an unusually large batch) is freed when its batch retires.
    var slotStagingRetainLimit: Int = 64 << 20

    public init(staging: Staging = .automatic) {
        self.staging = staging
    }

    /// The options the process environment asks for. An unknown value is returned as an
    /// error message so the caller can say so instead of silently measuring another path.
    public static func fromEnvironment() -> (options: VulkanBackendOptions, problem: String?) {
        fromEnvironment(stagingValue: getenv(stagingEnvironmentVariable).map { String(cString: $0) })
    }

    /// As `fromEnvironment()`, with the variable's value (nil when unset) passed in.
    static func fromEnvironment(stagingValue value: String?) -> (options: VulkanBackendOptions, problem: String?) {
        guard let value, !value.isEmpty else { return (VulkanBackendOptions(), nil) }
        guard let staging = Staging(rawValue: value.lowercased()) else {
            let accepted = Staging.allCases.map(\.rawValue).joined(separator: ", ")
            return (VulkanBackendOptions(),
                    "\(stagingEnvironmentVariable)=\(value) is not one of \(accepted); using \(Staging.automatic.rawValue)")
        }
        return (VulkanBackendOptions(staging: staging), nil)
    }
}
