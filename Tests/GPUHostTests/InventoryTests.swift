@testable import GPUHost
import Testing

@Suite("Host GPU inventory")
struct InventoryTests {
    static func vulkanDevice(index: Int, name: String, type: DeviceType, vendor: UInt32, device: UInt32,
                             pci: PCIAddress?) -> DeviceInfo {
        DeviceInfo(index: index, name: name, type: type, vendorID: vendor, deviceID: device, apiVersion: "1.3.0",
                   driverName: "drv", driverInfo: nil, pciAddress: pci, memoryHeaps: [], timestampPeriod: 1,
                   maxStorageBufferRange: 1 << 30, maxComputeWorkGroupCount: [65535, 65535, 65535],
                   maxComputeSharedMemorySize: 32768)
    }

    @Test("discovery on this host degrades, never fails")
    func discoverHere() {
        let inventory = GPUInventory.discover()
        let text = inventory.renderTable()
        print(text)
        // This host has no /dev/dri: DRM must say so rather than fail.
        if inventory.drmDevices.isEmpty {
            #expect(text.contains("DRM: no DRM devices"))
        }
        if inventory.pciControllers.isEmpty {
            #expect(text.contains("PCI: "))
        }
        if inventory.vulkanDevices.isEmpty {
            #expect(text.contains("Vulkan: "))
        } else {
            #expect(inventory.gpus.flatMap(\.vulkan).count == inventory.vulkanDevices.count)
        }
    }

    @Test("a missing sysfs PCI directory is reported")
    func missingSysfs() {
        let inventory = GPUInventory.discover(sysfs: "/nonexistent/pci")
        #expect(inventory.pciControllers.isEmpty)
        #expect(inventory.renderTable().contains("PCI: no PCI bus visible"))
    }

    @Test("sources are matched into GPUs by PCI address, then by unique ids")
    func matching() {
        let h100 = PCIAddress(domain: 0, bus: 0x65, device: 0, function: 0)
        let other = PCIAddress(domain: 0, bus: 0xb3, device: 0, function: 0)
        let inventory = GPUInventory(
            vulkanDevices: [
                Self.vulkanDevice(index: 0, name: "NVIDIA H100", type: .discreteGPU, vendor: 0x10de, device: 0x2330, pci: h100),
                Self.vulkanDevice(index: 1, name: "llvmpipe", type: .cpu, vendor: 0x10005, device: 0, pci: nil),
                Self.vulkanDevice(index: 2, name: "AMD thing", type: .discreteGPU, vendor: 0x1002, device: 0x740f, pci: nil),
            ],
            vulkanNote: nil, drmAvailable: true,
            drmDevices: [GPUInventory.DRMDevice(primaryNode: "/dev/dri/card0", renderNode: "/dev/dri/renderD128",
                                                driver: "nvidia-drm", pciAddress: h100, vendorID: 0x10de, deviceID: 0x2330)],
            drmNote: nil,
            pciControllers: [
                GPUInventory.PCIDisplayController(address: h100, vendorID: 0x10de, deviceID: 0x2330, classCode: 0x0302,
                                                  vendorName: "NVIDIA Corporation", deviceName: "GH100 [H100 PCIe]",
                                                  driver: "nvidia", iommuGroup: 12),
                GPUInventory.PCIDisplayController(address: other, vendorID: 0x1002, deviceID: 0x740f, classCode: 0x0380,
                                                  vendorName: "AMD", deviceName: "MI210", driver: "vfio-pci", iommuGroup: 40),
            ],
            pciDevicesScanned: 30, pciNote: nil)
        let gpus = inventory.gpus
        #expect(gpus.count == 3)
        #expect(gpus[0].pciAddress == h100 && gpus[0].drm.count == 1 && gpus[0].vulkan.map(\.index) == [0])
        #expect(gpus[1].pciAddress == other && gpus[1].vulkan.map(\.index) == [2] && gpus[1].pci?.boundToVFIO == true)
        #expect(gpus[2].pci == nil && gpus[2].vulkan.map(\.name) == ["llvmpipe"])
        let text = inventory.renderTable()
        #expect(text.contains("0000:65:00.0"))
        #expect(text.contains("/dev/dri/renderD128"))
        #expect(text.contains("yes"))
        #expect(!text.contains("DRM:"))
    }

    @Test("text tables align columns")
    func textTable() {
        var table = TextTable(header: ["name", "n"], rightAligned: [1])
        table.append(["a", "10"])
        table.append(["bbb", "2"])
        #expect(table.render() == "name   n\n----  --\na     10\nbbb    2")
    }
}
