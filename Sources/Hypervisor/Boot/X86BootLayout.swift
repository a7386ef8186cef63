/// Where boot-time structures live in guest-physical memory, and the x86 address-space holes.
///
/// Everything the VMM writes for the guest sits below 1 MiB, where kernels are never linked;
/// the 32-bit MMIO hole (3-4 GiB) holds the LAPIC, IOAPIC and, later, PCI BARs.
public enum X86BootLayout {
    /// The GDT the vCPU's segment registers are loaded from at entry (null, code, data, TSS).
    public static let bootGDT = GuestAddress(0x500)
    /// The GDT of the Linux 64-bit entry (its __BOOT_CS is 0x10 and __BOOT_DS 0x18).
    public static let linuxGDT = GuestAddress(0x540)
    /// The stack pointer at the Linux 64-bit entry, growing down towards the GDTs.
    public static let bootStackTop = GuestAddress(0x5ff0)
    public static let startInfo = GuestAddress(0x6000)
    public static let memoryMap = GuestAddress(0x6040)
    public static let memoryMapCapacity = 128
    /// PVH's module list (hvm_modlist_entry), after the memory map's 128 entries.
    public static let moduleList = GuestAddress(0x6f00)
    public static let commandLine = GuestAddress(0x7000)
    /// Including the terminating NUL; Linux's x86 COMMAND_LINE_SIZE is 2048, we allow a page.
    public static let commandLineCapacity = 4096
    /// Linux's zero page, `struct boot_params`.
    public static let bootParams = GuestAddress(0x8000)
    /// Identity-mapped page tables for the Linux 64-bit entry: PML4, PDPT, four page directories
    /// of 2 MiB pages (the first 4 GiB), up to 0xf000.
    public static let pageTables = GuestAddress(0x9000)
    /// Kernels load at or above this address.
    public static let kernelAreaStart: UInt64 = 0x10_0000

    public static let mmioHoleStart: UInt64 = 0xC000_0000
    /// PCI: 32-bit BARs below the ECAM window; 64-bit BARs far above any RAM size we allow.
    public static let pciWindow32Start: UInt64 = 0xC000_0000
    public static let pciWindow32Size: UInt64 = 0x2000_0000
    /// PCIe ECAM for buses 0-255 (1 MiB each), described to the guest by the ACPI MCFG table.
    public static let ecamStart: UInt64 = 0xE000_0000
    public static let ecamSize: UInt64 = 0x1000_0000
    public static let pciWindow64Start: UInt64 = 0x80_0000_0000
    public static let pciWindow64Size: UInt64 = 0x80_0000_0000
    public static let mmioHoleEnd: UInt64 = 0x1_0000_0000
    /// KVM on VMX needs an identity-map page and three TSS pages for real-mode emulation; they sit
    /// where QEMU puts them, in the MMIO hole, and the memory map marks them reserved.
    public static let kvmIdentityMap: UInt64 = 0xfeff_c000
    public static let kvmTSS: UInt64 = 0xfeff_d000
    public static let kvmPrivateSize: UInt64 = 0x4000
    /// The top of conventional memory: the EBDA follows, then VGA and the BIOS area up to 1 MiB.
    public static let ebdaStart: UInt64 = 0x9_fc00
    public static let conventionalEnd: UInt64 = 0xa_0000
    public static let biosAreaStart: UInt64 = 0xf_0000

    /// Guest RAM ranges for a VM of `size` bytes: below the MMIO hole, and the rest above 4 GiB.
    public static func ramLayout(size: UInt64) -> [(start: GuestAddress, size: UInt64)] {
        let low = min(size, mmioHoleStart)
        var layout = [(start: GuestAddress(0), size: low)]
        if size > low { layout.append((start: GuestAddress(mmioHoleEnd), size: size - low)) }
        return layout
    }
}

extension X86BootLayout {
    /// The E820 map a PC guest expects: conventional memory, the EBDA and BIOS area reserved,
    /// RAM above 1 MiB, the KVM private pages, and RAM above 4 GiB.
    public static func memoryMap(ram: [GuestMemoryRegion]) -> [MemoryMapEntry] {
        var map: [MemoryMapEntry] = []
        for region in ram {
            let start = region.start.raw, end = region.end
            if start < kernelAreaStart {
                // The legacy hole below 1 MiB is never RAM to a PC guest.
                map.append(MemoryMapEntry(start: start, size: min(end, ebdaStart) - start, kind: .ram))
                map.append(MemoryMapEntry(start: ebdaStart, size: conventionalEnd - ebdaStart, kind: .reserved))
                map.append(MemoryMapEntry(start: biosAreaStart, size: kernelAreaStart - biosAreaStart, kind: .reserved))
                if end > kernelAreaStart {
                    map.append(MemoryMapEntry(start: kernelAreaStart, size: end - kernelAreaStart, kind: .ram))
                }
            } else {
                if start >= mmioHoleEnd {
                    map.append(MemoryMapEntry(start: kvmIdentityMap, size: kvmPrivateSize, kind: .reserved))
                }
                map.append(MemoryMapEntry(start: start, size: end - start, kind: .ram))
            }
        }
        if !map.contains(where: { $0.start == kvmIdentityMap }) {
            map.append(MemoryMapEntry(start: kvmIdentityMap, size: kvmPrivateSize, kind: .reserved))
        }
        // Linux uses MMCONFIG only where the memory map reserves it.
        let ecam = MemoryMapEntry(start: ecamStart, size: ecamSize, kind: .reserved)
        map.insert(ecam, at: map.firstIndex { $0.start > ecamStart } ?? map.endIndex)
        return map
    }
}

/// An entry of the E820-style memory map handed to the guest.
public struct MemoryMapEntry: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        case ram = 1, reserved = 2, acpi = 3, nvs = 4, unusable = 5
    }

    public let start: UInt64
    public let size: UInt64
    public let kind: Kind

    public init(start: UInt64, size: UInt64, kind: Kind) {
        self.start = start
        self.size = size
        self.kind = kind
    }
}
