/// How a caller picks the device the backend will own.
public enum DeviceSelector: Hashable, Sendable, CustomStringConvertible {
    /// The first discrete GPU, else integrated, virtual, then CPU (lavapipe); falls back to the
    /// CPU reference backend when there is no Vulkan device at all.
    case automatic
    /// The device at this position in `VulkanBackend.listDevices()`.
    case index(Int)
    /// The first device whose name contains this text, compared case-insensitively.
    case nameContains(String)
    /// The plain-Swift reference backend, no Vulkan.
    case cpuReference

    public var description: String {
        switch self {
        case .automatic: return "automatic"
        case let .index(i): return "index \(i)"
        case let .nameContains(text): return "name containing \"\(text)\""
        case .cpuReference: return "cpu reference"
        }
    }
}

public enum DeviceType: String, Hashable, Sendable, Encodable {
    case discreteGPU, integratedGPU, virtualGPU, cpu, other
}

/// PCI location as the kernel prints it (`0000:65:00.0`), from VK_EXT_pci_bus_info.
public struct PCIAddress: Hashable, Sendable, CustomStringConvertible, Encodable {
    public var domain: UInt32
    public var bus: UInt32
    public var device: UInt32
    public var function: UInt32

    public init(domain: UInt32, bus: UInt32, device: UInt32, function: UInt32) {
        self.domain = domain
        self.bus = bus
        self.device = device
        self.function = function
    }

    public var description: String {
        func hex(_ value: UInt32, _ width: Int) -> String {
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(hex(domain, 4)):\(hex(bus, 2)):\(hex(device, 2)).\(hex(function, 1))"
    }

    /// In JSON as the kernel prints it: "0000:65:00.0".
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

public struct MemoryHeapInfo: Hashable, Sendable, Encodable {
    public var size: UInt64
    public var deviceLocal: Bool

    public init(size: UInt64, deviceLocal: Bool) {
        self.size = size
        self.deviceLocal = deviceLocal
    }
}

/// What a device is, for listing, selection and logs. Everything is read from the driver,
/// nothing assumed.
public struct DeviceInfo: Hashable, Sendable, Encodable {
    /// Position in the Vulkan enumeration (stable for one boot of one driver set).
    public var index: Int
    public var name: String
    public var type: DeviceType
    public var vendorID: UInt32
    public var deviceID: UInt32
    /// "major.minor.patch" of the Vulkan API the device supports.
    public var apiVersion: String
    public var driverName: String?
    public var driverInfo: String?
    public var pciAddress: PCIAddress?
    public var memoryHeaps: [MemoryHeapInfo]
    /// Nanoseconds per timestamp tick; nil when the compute queue cannot write timestamps.
    public var timestampPeriod: Double?
    public var maxStorageBufferRange: UInt64
    /// Per-dimension workgroup-count limits (x, y, z).
    public var maxComputeWorkGroupCount: [UInt32]
    public var maxComputeSharedMemorySize: UInt32

    public init(
        index: Int, name: String, type: DeviceType, vendorID: UInt32, deviceID: UInt32,
        apiVersion: String, driverName: String?, driverInfo: String?, pciAddress: PCIAddress?,
        memoryHeaps: [MemoryHeapInfo], timestampPeriod: Double?, maxStorageBufferRange: UInt64,
        maxComputeWorkGroupCount: [UInt32], maxComputeSharedMemorySize: UInt32
    ) {
        self.index = index
        self.name = name
        self.type = type
        self.vendorID = vendorID
        self.deviceID = deviceID
        self.apiVersion = apiVersion
        self.driverName = driverName
        self.driverInfo = driverInfo
        self.pciAddress = pciAddress
        self.memoryHeaps = memoryHeaps
        self.timestampPeriod = timestampPeriod
        self.maxStorageBufferRange = maxStorageBufferRange
        self.maxComputeWorkGroupCount = maxComputeWorkGroupCount
        self.maxComputeSharedMemorySize = maxComputeSharedMemorySize
    }

    /// One line for logs and `malvvm gpu list`.
    public var summary: String {
        var parts = ["[\(index)] \(name)", type.rawValue,
                     "vendor 0x\(String(vendorID, radix: 16)) device 0x\(String(deviceID, radix: 16))",
                     "Vulkan \(apiVersion)"]
        if let driverName {
            parts.append("driver \(driverName)\(driverInfo.map { " (\($0))" } ?? "")")
        }
        if let pciAddress {
            parts.append("pci \(pciAddress)")
        }
        let heaps = memoryHeaps.map { "\($0.size >> 20) MiB\($0.deviceLocal ? " local" : "")" }
        parts.append("heaps [\(heaps.joined(separator: ", "))]")
        return parts.joined(separator: ", ")
    }
}
