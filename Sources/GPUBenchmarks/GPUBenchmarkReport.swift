/// What `malvvm bench gpu run` writes to bench/results/gpu.json.
public struct GPUBenchmarkReport: Codable, Sendable {
    public var device: String
    public var driver: String?
    public var kernels: [KernelResult]
    public var sharing: [SharingResult]

    public init(device: String, driver: String?, kernels: [KernelResult], sharing: [SharingResult]) {
        self.device = device
        self.driver = driver
        self.kernels = kernels
        self.sharing = sharing
    }
}
