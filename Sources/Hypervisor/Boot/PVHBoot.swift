import CKVM

/// Writes what the PVH boot ABI hands a kernel (hvm_start_info v1, its memory map and command
/// line) and produces the vCPU state for the 32-bit entry.
public enum PVHBoot {
    static let startInfoMagic: UInt32 = 0x336e_c578
    static let startInfoVersion: UInt32 = 1
    static let memoryMapEntrySize: UInt64 = 24

    /// Segment selectors within the boot GDT written at `X86BootLayout.bootGDT`.
    static let codeSelector: UInt16 = 0x08
    static let dataSelector: UInt16 = 0x10
    static let tssSelector: UInt16 = 0x18

    public static func writeBootInformation(into memory: GuestMemory, commandLine: String,
                                            memoryMap: [MemoryMapEntry], rsdp: GuestAddress? = nil,
                                            initrd: InitrdPlacement.Placed? = nil) throws(BootError) {
        let cmdline = Array(commandLine.utf8)
        guard cmdline.count < X86BootLayout.commandLineCapacity else {
            throw .commandLineTooLong(length: cmdline.count, limit: X86BootLayout.commandLineCapacity - 1)
        }
        guard memoryMap.count <= X86BootLayout.memoryMapCapacity else {
            throw .memoryMapTooLarge(entries: memoryMap.count, limit: X86BootLayout.memoryMapCapacity)
        }
        do {
            try memory.write(cmdline + [0], at: X86BootLayout.commandLine)
            for (index, entry) in memoryMap.enumerated() {
                let base = X86BootLayout.memoryMap.raw + UInt64(index) * memoryMapEntrySize
                try memory.write(entry.start, at: GuestAddress(base))
                try memory.write(entry.size, at: GuestAddress(base + 8))
                try memory.write(entry.kind.rawValue, at: GuestAddress(base + 16))
                try memory.write(UInt32(0), at: GuestAddress(base + 20))
            }
            let info = X86BootLayout.startInfo.raw
            try memory.fill(0, at: X86BootLayout.startInfo, length: 56)
            try memory.write(startInfoMagic, at: GuestAddress(info))
            try memory.write(startInfoVersion, at: GuestAddress(info + 4))
            if let initrd {
                // Linux takes the first module as its initrd (hvm_modlist_entry: paddr, size,
                // cmdline_paddr, reserved).
                let entry = X86BootLayout.moduleList
                try memory.fill(0, at: entry, length: 32)
                try memory.write(initrd.address, at: entry)
                try memory.write(initrd.size, at: GuestAddress(entry.raw + 8))
                try memory.write(UInt32(1), at: GuestAddress(info + 12))
                try memory.write(entry.raw, at: GuestAddress(info + 16))
            }
            try memory.write(X86BootLayout.commandLine.raw, at: GuestAddress(info + 24))
            try memory.write(rsdp?.raw ?? 0, at: GuestAddress(info + 32))
            try memory.write(X86BootLayout.memoryMap.raw, at: GuestAddress(info + 40))
            try memory.write(UInt32(memoryMap.count), at: GuestAddress(info + 48))
            try writeBootGDT(into: memory)
        } catch {
            throw .bootAreaOutsideMemory
        }
    }

    /// Flat 4 GiB code and data descriptors and a 32-bit TSS, matching the hidden segment
    /// state set below, so a kernel that reloads a selector before its own lgdt keeps working.
    static let bootGDTEntries: [UInt64] = [
        0,
        0x00cf_9b00_0000_ffff,  // code: base 0, limit 4 GiB, 32-bit, execute/read, accessed
        0x00cf_9300_0000_ffff,  // data: base 0, limit 4 GiB, read/write, accessed
        0x0000_8b00_0000_0067,  // TSS: base 0, limit 0x67, 32-bit busy
    ]

    static func writeBootGDT(into memory: GuestMemory) throws(GuestMemoryError) {
        for (index, descriptor) in bootGDTEntries.enumerated() {
            try memory.write(descriptor, at: GuestAddress(X86BootLayout.bootGDT.raw + UInt64(index * 8)))
        }
    }

    /// Register state at the PVH entry: protected mode, paging off, ebx = start_info.
    public static func initialRegisters(entry: UInt32) -> kvm_regs {
        var regs = kvm_regs()
        regs.rip = UInt64(entry)
        regs.rbx = X86BootLayout.startInfo.raw
        regs.rflags = 0x2  // bit 1 is reserved and always set
        return regs
    }

    public static func initialSpecialRegisters(from current: kvm_sregs) -> kvm_sregs {
        var sregs = current
        func segment(_ selector: UInt16, type: UInt8, limit: UInt32 = 0xffff_ffff, s: UInt8 = 1) -> kvm_segment {
            var seg = kvm_segment()
            seg.base = 0
            seg.limit = limit
            seg.selector = selector
            seg.type = type
            seg.present = 1
            seg.dpl = 0
            seg.db = s == 1 ? 1 : 0
            seg.s = s
            seg.l = 0
            seg.g = limit == 0xffff_ffff ? 1 : 0
            return seg
        }
        sregs.cs = segment(codeSelector, type: 0xb)
        let data = segment(dataSelector, type: 0x3)
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        sregs.tr = segment(tssSelector, type: 0xb, limit: 0x67, s: 0)
        sregs.gdt.base = X86BootLayout.bootGDT.raw
        sregs.gdt.limit = UInt16(bootGDTEntries.count * 8 - 1)
        sregs.idt.base = 0
        sregs.idt.limit = 0
        sregs.cr0 = 0x11  // PE | ET
        sregs.cr3 = 0
        sregs.cr4 = 0
        sregs.efer = 0
        return sregs
    }
}
