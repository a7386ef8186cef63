import CKVM

/// Writes what Linux's 64-bit boot protocol hands a bzImage kernel (the zero page
/// `boot_params` with its setup header, e820 table, command line and ramdisk fields; identity
/// page tables; a GDT with __BOOT_CS/__BOOT_DS) and produces the vCPU state at startup_64.
public enum LinuxBoot {
    /// Offsets inside `struct boot_params` (arch/x86/include/uapi/asm/bootparam.h).
    enum Offset {
        static let acpiRSDPAddress: UInt64 = 0x070
        static let extRamdiskImage: UInt64 = 0x0c0
        static let extRamdiskSize: UInt64 = 0x0c4
        static let extCmdLinePointer: UInt64 = 0x0c8
        static let e820Entries: UInt64 = 0x1e8
        static let setupHeader: UInt64 = 0x1f1
        static let e820Table: UInt64 = 0x2d0
    }

    static let zeroPageSize: UInt64 = 4096
    static let e820EntrySize: UInt64 = 20
    /// E820_MAX_ENTRIES_ZEROPAGE.
    static let e820Capacity = 128
    /// type_of_loader 0xff: "undefined", the value for loaders without an assigned ID.
    static let loaderType: UInt8 = 0xff

    /// Selectors the protocol requires: __BOOT_CS and __BOOT_DS; the TSS follows them.
    static let codeSelector: UInt16 = 0x10
    static let dataSelector: UInt16 = 0x18
    static let tssSelector: UInt16 = 0x20
    static let gdtEntries: [UInt64] = [
        0, 0,
        0x00af_9b00_0000_ffff,  // 0x10: 64-bit code, execute/read, accessed
        0x00cf_9300_0000_ffff,  // 0x18: flat 4 GiB data, read/write, accessed
        0x0000_8b00_0000_0067, 0,  // 0x20: 64-bit busy TSS (16 bytes), base 0; KVM wants a TR
    ]

    public struct Parameters: Sendable {
        public var loadAddress: UInt64
        public var setupHeader: [UInt8]
        public var commandLine: String
        public var memoryMap: [MemoryMapEntry]
        public var rsdp: GuestAddress?
        public var initrd: InitrdPlacement.Placed?

        public init(loadAddress: UInt64, setupHeader: [UInt8], commandLine: String, memoryMap: [MemoryMapEntry],
                    rsdp: GuestAddress? = nil, initrd: InitrdPlacement.Placed? = nil) {
            self.loadAddress = loadAddress
            self.setupHeader = setupHeader
            self.commandLine = commandLine
            self.memoryMap = memoryMap
            self.rsdp = rsdp
            self.initrd = initrd
        }
    }

    public static func writeBootInformation(into memory: GuestMemory, _ parameters: Parameters) throws(BootError) {
        let cmdline = Array(parameters.commandLine.utf8)
        // cmdline_size (2.06+) is the kernel's own limit, without the NUL.
        let header = ByteReader(parameters.setupHeader)
        let kernelLimit = Int((try? header.u32(BzImage.Offset.cmdlineSize - Offset.setupHeader)) ?? 255)
        let limit = min(kernelLimit, X86BootLayout.commandLineCapacity - 1)
        guard cmdline.count <= limit else { throw .commandLineTooLong(length: cmdline.count, limit: limit) }
        guard parameters.memoryMap.count <= e820Capacity else {
            throw .memoryMapTooLarge(entries: parameters.memoryMap.count, limit: e820Capacity)
        }
        let base = X86BootLayout.bootParams.raw
        func at(_ offset: UInt64) -> GuestAddress { GuestAddress(base + offset) }
        do {
            try memory.fill(0, at: X86BootLayout.bootParams, length: zeroPageSize)
            try memory.write(parameters.setupHeader, at: at(Offset.setupHeader))
            try memory.write(loaderType, at: at(BzImage.Offset.typeOfLoader))
            // code32_start names where the protected-mode kernel went when not at its default.
            try memory.write(UInt32(truncatingIfNeeded: parameters.loadAddress), at: at(BzImage.Offset.code32Start))
            try memory.write(cmdline + [0], at: X86BootLayout.commandLine)
            try memory.write(UInt32(X86BootLayout.commandLine.raw), at: at(BzImage.Offset.cmdLinePointer))
            if let initrd = parameters.initrd {
                try memory.write(UInt32(truncatingIfNeeded: initrd.address), at: at(BzImage.Offset.ramdiskImage))
                try memory.write(UInt32(truncatingIfNeeded: initrd.size), at: at(BzImage.Offset.ramdiskSize))
                try memory.write(UInt32(truncatingIfNeeded: initrd.address >> 32), at: at(Offset.extRamdiskImage))
                try memory.write(UInt32(truncatingIfNeeded: initrd.size >> 32), at: at(Offset.extRamdiskSize))
            }
            if let rsdp = parameters.rsdp { try memory.write(rsdp.raw, at: at(Offset.acpiRSDPAddress)) }
            try memory.write(UInt8(parameters.memoryMap.count), at: at(Offset.e820Entries))
            for (index, entry) in parameters.memoryMap.enumerated() {
                let slot = Offset.e820Table + UInt64(index) * e820EntrySize
                try memory.write(entry.start, at: at(slot))
                try memory.write(entry.size, at: at(slot + 8))
                try memory.write(entry.kind.rawValue, at: at(slot + 16))
            }
            for (index, descriptor) in gdtEntries.enumerated() {
                try memory.write(descriptor, at: GuestAddress(X86BootLayout.linuxGDT.raw + UInt64(index * 8)))
            }
            try writeIdentityPageTables(into: memory)
        } catch {
            throw .bootAreaOutsideMemory
        }
    }

    /// PML4 → one PDPT → four page directories of 2 MiB pages: the first 4 GiB identity-mapped,
    /// which covers the kernel, boot_params, the command line and the initrd, as the protocol asks.
    static func writeIdentityPageTables(into memory: GuestMemory) throws(GuestMemoryError) {
        let present: UInt64 = 0x3  // present | writable
        let largePage: UInt64 = 0x83  // present | writable | 2 MiB
        let pml4 = X86BootLayout.pageTables.raw
        let pdpt = pml4 + 0x1000
        let directories = pdpt + 0x1000
        try memory.fill(0, at: GuestAddress(pml4), length: 0x2000)
        try memory.write(pdpt | present, at: GuestAddress(pml4))
        var table = [UInt8]()
        table.reserveCapacity(4 * 4096)
        for directory in 0..<UInt64(4) {
            try memory.write((directories + directory * 0x1000) | present, at: GuestAddress(pdpt + directory * 8))
            for entry in 0..<UInt64(512) { table.appendLittleEndian(((directory * 512 + entry) << 21) | largePage) }
        }
        try memory.write(table, at: GuestAddress(directories))
    }

    /// rip = startup_64, rsi = boot_params, interrupts off.
    public static func initialRegisters(entry: UInt64) -> kvm_regs {
        var regs = kvm_regs()
        regs.rip = entry
        regs.rsi = X86BootLayout.bootParams.raw
        regs.rsp = X86BootLayout.bootStackTop.raw
        regs.rflags = 0x2  // bit 1 is reserved and always set; IF clear
        return regs
    }

    /// Long mode with paging on the identity tables; CS = __BOOT_CS, the data segments __BOOT_DS.
    public static func initialSpecialRegisters(from current: kvm_sregs) -> kvm_sregs {
        var sregs = current
        func segment(_ selector: UInt16, type: UInt8, long: Bool, limit: UInt32 = 0xffff_ffff, system: Bool = false) -> kvm_segment {
            var seg = kvm_segment()
            seg.base = 0
            seg.limit = limit
            seg.selector = selector
            seg.type = type
            seg.present = 1
            seg.dpl = 0
            seg.s = system ? 0 : 1
            seg.l = long ? 1 : 0
            seg.db = long || system ? 0 : 1
            seg.g = limit == 0xffff_ffff ? 1 : 0
            return seg
        }
        sregs.cs = segment(codeSelector, type: 0xb, long: true)
        let data = segment(dataSelector, type: 0x3, long: false)
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        sregs.tr = segment(tssSelector, type: 0xb, long: false, limit: 0x67, system: true)
        sregs.gdt.base = X86BootLayout.linuxGDT.raw
        sregs.gdt.limit = UInt16(gdtEntries.count * 8 - 1)
        sregs.idt.base = 0
        sregs.idt.limit = 0
        sregs.cr0 = 0x8000_0033  // PG | NE | ET | MP | PE
        sregs.cr3 = X86BootLayout.pageTables.raw
        sregs.cr4 = 0x20  // PAE
        sregs.efer = 0x500  // LMA | LME
        return sregs
    }
}
