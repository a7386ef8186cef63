import Glibc

/// A virtio-blk disk: a file (or block device) the guest sees as a PCI device.
public struct DiskConfiguration: Sendable, Equatable {
    public var path: String
    public var readOnly: Bool
    /// Reads bypass the host's page cache (O_DIRECT, QEMU's cache=none): what `prefetch`'s
    /// measurement needs so that a read the cache misses costs a device read.
    public var direct: Bool

    public init(path: String, readOnly: Bool = false, direct: Bool = false) {
        self.path = path
        self.readOnly = readOnly
        self.direct = direct
    }
}

/// What a VM is made of. A value: build it, validate it, then hand it to `Machine`.
public struct MachineConfiguration: Sendable {
    public var kernelPath: String
    /// An initial ramdisk: the first PVH module for an ELF kernel, ramdisk_image for a bzImage.
    public var initrdPath: String?
    public var commandLine: String
    public var memorySize: UInt64
    /// vCPUs: the boot processor and vcpuCount - 1 application processors the guest starts.
    public var vcpuCount: Int = 1
    /// How the guest's CPUID differs from what the host's KVM supports.
    public var cpuTemplate: CPUTemplate = .host
    /// xAPIC IDs are 8 bits and 255 is the broadcast ID; the MP table gives the IOAPIC the ID
    /// after the last CPU's. KVM may allow fewer (`KVMSystem.maximumVCPUs`).
    public static let maximumVCPUs = 254
    public var kvmPath: String
    public var disks: [DiskConfiguration] = []
    /// PCIe root ports, each with one empty hot-plug slot, for devices attached while the VM
    /// runs (`Machine.addPCIDevice`, placement `.hotplugSlot`). They take the highest device numbers of bus 0
    /// (31, 30, …), so devices attached at boot keep 00:01.0, 00:02.0, …
    public var hotplugSlots: Int = MachineConfiguration.defaultHotplugSlots
    public static let defaultHotplugSlots = 4
    public static let maximumHotplugSlots = 16
    /// PCI slots 1-31 hold devices; slot 0 is the host bridge.
    public static let maximumDisks = 31

    /// Room for the boot information area (below 1 MiB) and a small kernel above it.
    public static let minimumMemory: UInt64 = 2 << 20
    public static let defaultMemory: UInt64 = 256 << 20

    public init(kernelPath: String, commandLine: String = "", memorySize: UInt64 = MachineConfiguration.defaultMemory,
                kvmPath: String = KVMSystem.defaultPath) {
        self.kernelPath = kernelPath
        self.commandLine = commandLine
        self.memorySize = memorySize
        self.kvmPath = kvmPath
    }

    /// Checks what can be checked without touching KVM, with messages fit for a command line.
    public func validate() throws(HypervisorError) {
        guard memorySize >= Self.minimumMemory else {
            throw .configuration("memory size \(MemorySize.format(memorySize)) is below the minimum of \(MemorySize.format(Self.minimumMemory))")
        }
        guard memorySize % 4096 == 0 else {
            throw .configuration("memory size \(memorySize) bytes is not a multiple of 4 KiB")
        }
        let host = HostResources.physicalMemory
        guard host == 0 || memorySize <= host else {
            throw .configuration("memory size \(MemorySize.format(memorySize)) exceeds this host's \(MemorySize.format(host)) of RAM")
        }
        guard (1...Self.maximumVCPUs).contains(vcpuCount) else {
            throw .configuration("vCPUs must be 1 to \(Self.maximumVCPUs), not \(vcpuCount)")
        }
        guard (0...Self.maximumHotplugSlots).contains(hotplugSlots) else {
            throw .configuration("hot-plug slots must be 0 to \(Self.maximumHotplugSlots), not \(hotplugSlots)")
        }
        guard disks.count <= Self.maximumDisks - hotplugSlots else {
            throw .configuration("at most \(Self.maximumDisks - hotplugSlots) disks fit on the PCI bus beside \(hotplugSlots) hot-plug slots")
        }
        guard commandLine.utf8.count < X86BootLayout.commandLineCapacity else {
            throw .boot(.commandLineTooLong(length: commandLine.utf8.count, limit: X86BootLayout.commandLineCapacity - 1))
        }
    }
}

public enum HostResources {
    /// Physical RAM of this host in bytes (0 if unknown).
    public static var physicalMemory: UInt64 {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return 0 }
        return UInt64(pages) * UInt64(pageSize)
    }
}

/// Memory sizes as people write them: "256M", "1G", "512MiB", "4096K"; a bare number is MiB, as in QEMU's -m.
public enum MemorySize {
    public static func parse(_ text: String) -> UInt64? {
        var digits = Substring(text)
        var unitText = ""
        while let last = digits.last, !last.isNumber {
            unitText.insert(last, at: unitText.startIndex)
            digits.removeLast()
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isNumber), let value = UInt64(digits) else { return nil }
        let shift: UInt64
        switch unitText.uppercased() {
        case "B": shift = 0
        case "K", "KB", "KIB": shift = 10
        case "", "M", "MB", "MIB": shift = 20
        case "G", "GB", "GIB": shift = 30
        case "T", "TB", "TIB": shift = 40
        default: return nil
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : bytes
    }

    /// "256 MiB" for whole units, "23.5 GiB" otherwise.
    public static func format(_ bytes: UInt64) -> String {
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] where bytes >= 1 << shift {
            let whole = bytes >> UInt64(shift)
            if whole << UInt64(shift) == bytes { return "\(whole) \(unit)" }
            let tenths = ((bytes - (whole << UInt64(shift))) * 10) >> UInt64(shift)
            return "\(whole).\(tenths) \(unit)"
        }
        return "\(bytes) bytes"
    }
}
