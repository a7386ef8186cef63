import CGPUInventory
#if canImport(Glibc)
import Glibc
#endif

/// The host's GPUs as three sources see them: Vulkan devices, DRM nodes (libdrm) and PCI
/// display controllers (libpci, class 0x03xx, with driver, IOMMU group and vfio-pci binding
/// from sysfs), matched up by PCI address where the source knows it. What `malvvm gpus`
/// prints. A host without some kind of device gets a note saying so, never an error: an
/// inventory must work on any host.
public struct GPUInventory: Hashable, Sendable, Encodable {
    public struct DRMDevice: Hashable, Sendable, Encodable {
        public var primaryNode: String?
        public var renderNode: String?
        /// Kernel driver name from DRM_IOCTL_VERSION, when the node could be opened.
        public var driver: String?
        public var pciAddress: PCIAddress?
        public var vendorID: UInt32?
        public var deviceID: UInt32?
    }

    public struct PCIDisplayController: Hashable, Sendable, Encodable {
        public var address: PCIAddress
        public var vendorID: UInt32
        public var deviceID: UInt32
        /// Class and subclass, e.g. 0x0300 VGA, 0x0302 3D controller (most compute GPUs).
        public var classCode: UInt32
        public var vendorName: String?
        public var deviceName: String?
        /// The bound kernel driver (`/sys/bus/pci/devices/*/driver`), nil when unbound.
        public var driver: String?
        /// `/sys/bus/pci/devices/*/iommu_group`; nil when there is no IOMMU.
        public var iommuGroup: Int?
        public var boundToVFIO: Bool { driver == "vfio-pci" }

        private enum CodingKeys: String, CodingKey {
            case address, vendorID, deviceID, classCode, vendorName, deviceName, driver, iommuGroup, boundToVFIO
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(address, forKey: .address)
            try container.encode(vendorID, forKey: .vendorID)
            try container.encode(deviceID, forKey: .deviceID)
            try container.encode(classCode, forKey: .classCode)
            try container.encodeIfPresent(vendorName, forKey: .vendorName)
            try container.encodeIfPresent(deviceName, forKey: .deviceName)
            try container.encodeIfPresent(driver, forKey: .driver)
            try container.encodeIfPresent(iommuGroup, forKey: .iommuGroup)
            try container.encode(boundToVFIO, forKey: .boundToVFIO)
        }
    }

    /// One physical GPU as far as the sources agree; a source that does not see it, or
    /// could not be matched to it, leaves its part empty.
    public struct GPU: Hashable, Sendable, Encodable {
        public var pciAddress: PCIAddress?
        public var pci: PCIDisplayController?
        public var drm: [DRMDevice]
        public var vulkan: [DeviceInfo]
    }

    public var vulkanDevices: [DeviceInfo]
    /// Why the Vulkan list is empty, when it is.
    public var vulkanNote: String?
    /// drmAvailable(): whether the DRM kernel interface is reachable from here.
    public var drmAvailable: Bool
    public var drmDevices: [DRMDevice]
    public var drmNote: String?
    public var pciControllers: [PCIDisplayController]
    public var pciDevicesScanned: Int
    public var pciNote: String?

    public init(vulkanDevices: [DeviceInfo], vulkanNote: String?, drmAvailable: Bool, drmDevices: [DRMDevice],
                drmNote: String?, pciControllers: [PCIDisplayController], pciDevicesScanned: Int, pciNote: String?) {
        self.vulkanDevices = vulkanDevices
        self.vulkanNote = vulkanNote
        self.drmAvailable = drmAvailable
        self.drmDevices = drmDevices
        self.drmNote = drmNote
        self.pciControllers = pciControllers
        self.pciDevicesScanned = pciDevicesScanned
        self.pciNote = pciNote
    }

    /// Reads all three sources now. `sysfs` is the PCI devices directory (a parameter so
    /// tests can point it at a fixture).
    public static func discover(sysfs: String = "/sys/bus/pci/devices") -> GPUInventory {
        var vulkan: [DeviceInfo] = []
        var vulkanNote: String?
        do throws(GPUError) {
            vulkan = try VulkanBackend.listDevices()
            if vulkan.isEmpty { vulkanNote = "no Vulkan devices" }
        } catch {
            vulkanNote = "no Vulkan devices (\(error))"
        }

        let drmUp = malv_drm_available() != 0
        var drm: [DRMDevice] = []
        var drmNote: String?
        var raw = [malv_drm_device](repeating: malv_drm_device(), count: 64)
        var drmCount = malv_drm_list(&raw, Int32(raw.count))
        // No /dev/dri at all is simply "none here", not a failure.
        if drmCount == -ENOENT { drmCount = 0 }
        if drmCount < 0 {
            drmNote = "no DRM devices (drmGetDevices2: \(String(cString: strerror(-drmCount))))"
        } else {
            drm = raw.prefix(Int(drmCount)).map { device in
                DRMDevice(
                    primaryNode: nonEmpty(stringFromCArray(device.primary)),
                    renderNode: nonEmpty(stringFromCArray(device.render)),
                    driver: nonEmpty(stringFromCArray(device.driver)),
                    pciAddress: device.is_pci != 0
                        ? PCIAddress(domain: UInt32(device.domain), bus: UInt32(device.bus),
                                     device: UInt32(device.dev), function: UInt32(device.func))
                        : nil,
                    vendorID: device.is_pci != 0 ? UInt32(device.vendor_id) : nil,
                    deviceID: device.is_pci != 0 ? UInt32(device.device_id) : nil)
            }
            if drm.isEmpty {
                drmNote = "no DRM devices" + (drmUp ? "" : " (drmAvailable() = 0"
                    + (access("/dev/dri", F_OK) == 0 ? ")" : ", no /dev/dri)"))
            }
        }

        var pci: [PCIDisplayController] = []
        var scanned: Int32 = 0
        var pciNote: String?
        if access(sysfs, F_OK) != 0 {
            pciNote = "no PCI bus visible (\(sysfs) missing)"
        } else {
            var found = [malv_pci_device](repeating: malv_pci_device(), count: 64)
            var message = [CChar](repeating: 0, count: 256)
            let count = malv_pci_list(0x03, &found, Int32(found.count), &scanned, &message, message.count)
            if count < 0 {
                pciNote = "PCI scan failed: \(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))"
            } else {
                pci = found.prefix(Int(min(count, Int32(found.count)))).map { device in
                    let address = PCIAddress(domain: UInt32(device.domain), bus: UInt32(device.bus),
                                             device: UInt32(device.dev), function: UInt32(device.func))
                    let directory = "\(sysfs)/\(address)"
                    return PCIDisplayController(
                        address: address, vendorID: UInt32(device.vendor_id), deviceID: UInt32(device.device_id),
                        classCode: UInt32(device.device_class),
                        vendorName: nonEmpty(stringFromCArray(device.vendor_name)),
                        deviceName: nonEmpty(stringFromCArray(device.device_name)),
                        driver: linkBasename("\(directory)/driver"),
                        iommuGroup: linkBasename("\(directory)/iommu_group").flatMap { Int($0) })
                }
                if pci.isEmpty {
                    pciNote = "no PCI display controllers (class 0x03xx) among \(scanned) PCI devices"
                }
            }
        }
        return GPUInventory(vulkanDevices: vulkan, vulkanNote: vulkanNote, drmAvailable: drmUp, drmDevices: drm,
                            drmNote: drmNote, pciControllers: pci, pciDevicesScanned: Int(scanned), pciNote: pciNote)
    }

    /// Groups the three sources into GPUs: by PCI address first; a Vulkan device without one
    /// (no VK_EXT_pci_bus_info) joins the only PCI controller with its vendor and device ids,
    /// if exactly one has them; whatever stays unmatched is a GPU row of its own.
    public var gpus: [GPU] {
        var result = pciControllers.sorted { $0.address.description < $1.address.description }
            .map { GPU(pciAddress: $0.address, pci: $0, drm: [], vulkan: []) }
        func index(of address: PCIAddress?) -> Int? {
            guard let address else { return nil }
            return result.firstIndex { $0.pciAddress == address }
        }
        for device in drmDevices {
            if let i = index(of: device.pciAddress) {
                result[i].drm.append(device)
            } else {
                result.append(GPU(pciAddress: device.pciAddress, pci: nil, drm: [device], vulkan: []))
            }
        }
        for device in vulkanDevices {
            if let i = index(of: device.pciAddress) {
                result[i].vulkan.append(device)
                continue
            }
            if device.pciAddress == nil {
                let candidates = result.indices.filter {
                    result[$0].pci.map { $0.vendorID == device.vendorID && $0.deviceID == device.deviceID } ?? false
                }
                if candidates.count == 1, let i = candidates.first {
                    result[i].vulkan.append(device)
                    continue
                }
            }
            result.append(GPU(pciAddress: device.pciAddress, pci: nil, drm: [], vulkan: [device]))
        }
        return result
    }

    private enum CodingKeys: String, CodingKey {
        case gpus, vulkanNote, drmAvailable, drmNote, pciDevicesScanned, pciNote
    }

    /// What `malvvm gpus --json` prints: the matched-up GPUs (each with what every source
    /// says of it, so the per-source lists add nothing), and the notes of sources that found
    /// nothing.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(gpus, forKey: .gpus)
        try container.encodeIfPresent(vulkanNote, forKey: .vulkanNote)
        try container.encode(drmAvailable, forKey: .drmAvailable)
        try container.encodeIfPresent(drmNote, forKey: .drmNote)
        try container.encode(pciDevicesScanned, forKey: .pciDevicesScanned)
        try container.encodeIfPresent(pciNote, forKey: .pciNote)
    }

    /// One table, a row per GPU, then a line for each source that found nothing.
    public func renderTable() -> String {
        var table = TextTable(header: ["#", "PCI", "IDS", "NAME", "DRIVER", "MEMORY", "IOMMU", "VFIO", "DRM", "VULKAN"])
        for (number, gpu) in gpus.enumerated() {
            let ids = gpu.pci.map { hexID($0.vendorID, $0.deviceID) }
                ?? gpu.vulkan.first.map { hexID($0.vendorID, $0.deviceID) }
                ?? gpu.drm.first.flatMap { device in device.vendorID.map { hexID($0, device.deviceID ?? 0) } }
                ?? "-"
            let name = gpu.pci.map { [$0.vendorName, $0.deviceName].compactMap { $0 }.joined(separator: " ") }
                .flatMap(nonEmpty) ?? gpu.vulkan.first?.name ?? "-"
            let driver = gpu.pci?.driver ?? gpu.drm.first?.driver ?? gpu.vulkan.first?.driverName ?? "-"
            let drm = gpu.drm.compactMap { $0.renderNode ?? $0.primaryNode }.joined(separator: ",")
            let vulkan = gpu.vulkan.map { "[\($0.index)] \($0.type.rawValue)" }.joined(separator: ",")
            // Device-local heaps are the GPU's own memory; a CPU device has only host heaps.
            let heaps = gpu.vulkan.first?.memoryHeaps ?? []
            let local = heaps.filter(\.deviceLocal).reduce(UInt64(0)) { $0 + $1.size }
            let memory = heaps.isEmpty ? "-" : "\((local > 0 ? local : heaps.reduce(0) { $0 + $1.size }) >> 20) MiB"
            table.append([
                "\(number)", gpu.pciAddress?.description ?? "-", ids, name, driver, memory,
                gpu.pci?.iommuGroup.map(String.init) ?? "-",
                gpu.pci.map { $0.boundToVFIO ? "yes" : "no" } ?? "-",
                drm.isEmpty ? "-" : drm, vulkan.isEmpty ? "-" : vulkan,
            ])
        }
        var lines = gpus.isEmpty ? ["no GPUs found"] : [table.render()]
        for note in [pciNote.map { "PCI: \($0)" }, drmNote.map { "DRM: \($0)" }, vulkanNote.map { "Vulkan: \($0)" }] {
            if let note { lines.append(note) }
        }
        if !pciControllers.isEmpty, pciControllers.allSatisfy({ $0.iommuGroup == nil }) {
            lines.append("IOMMU: no IOMMU groups: PCI passthrough (vfio-pci) is not possible on this host")
        }
        return lines.joined(separator: "\n")
    }
}

private func nonEmpty(_ text: String) -> String? {
    text.isEmpty ? nil : text
}

private func hexID(_ vendor: UInt32, _ device: UInt32) -> String {
    func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
    return "\(hex(vendor)):\(hex(device))"
}

/// The last path component of a symlink's target (`../../../bus/pci/drivers/nvidia` →
/// `nvidia`), or nil when the link is absent.
func linkBasename(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let length = readlink(path, &buffer, buffer.count - 1)
    guard length > 0 else { return nil }
    let target = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return target.split(separator: "/").last.map(String.init)
}
