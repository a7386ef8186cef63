/// The Intel MultiProcessor Specification 1.4 table: a floating pointer ("_MP_") in the BIOS
/// area and a configuration table ("PCMP") listing each CPU, the ISA bus, the IOAPIC and how
/// ISA IRQs reach its pins. Linux reads it when ACPI is off (`acpi=off`) and prints what it
/// found either way, as it does on QEMU; the routing matches the MADT's (IRQ 0 → pin 2).
public enum MPTable {
    /// The floating pointer opens the EBDA (the last KiB of base memory, reserved in the E820
    /// map), the second place Linux searches, as QEMU puts it: found there at once, where a
    /// pointer in the BIOS area cost Debian's kernel 5 s of emulated ring-0 scanning here
    /// (docs/linux.md). The configuration table, up to 5 KiB for 254 CPUs, does not fit the
    /// EBDA's 1 KiB and goes to the reserved BIOS area, clear of the ACPI tables below it.
    public static let floatingPointerAddress = GuestAddress(X86BootLayout.ebdaStart)
    public static let configurationAddress = GuestAddress(0xf_8000)
    static let localAPICVersion: UInt8 = 0x14
    static let ioapicVersion: UInt8 = 0x11
    /// Family 6, as QEMU reports it: the signature is informational to Linux.
    static let cpuSignature: UInt32 = 0x600
    static let cpuFeatures: UInt32 = 0x201  // FPU | APIC
    static let isaBus: UInt8 = 0

    public static func write(into memory: GuestMemory, vcpuCount: Int) throws(GuestMemoryError) {
        let table = configurationTable(vcpuCount: vcpuCount)
        try memory.write(table, at: configurationAddress)
        try memory.write(floatingPointer(), at: floatingPointerAddress)
    }

    static func floatingPointer() -> [UInt8] {
        var p = Array("_MP_".utf8)
        p.appendLittleEndian(UInt32(configurationAddress.raw))
        p.append(1)  // length in 16-byte units
        p.append(4)  // specification revision 1.4
        p.append(0)  // checksum
        p += [0, 0, 0, 0, 0]  // feature bytes: 0 = a configuration table follows; no IMCR
        p[10] = ACPITables.checksum(p[...])
        return p
    }

    static func configurationTable(vcpuCount: Int) -> [UInt8] {
        var entries: [UInt8] = []
        var count: UInt16 = 0
        for id in 0..<vcpuCount {
            entries += [0, UInt8(id), localAPICVersion, id == 0 ? 0x03 : 0x01]  // enabled, BSP for 0
            entries.appendLittleEndian(cpuSignature)
            entries.appendLittleEndian(cpuFeatures)
            entries += [UInt8](repeating: 0, count: 8)
            count += 1
        }
        entries += [1, isaBus] + Array("ISA   ".utf8)
        count += 1
        // The IOAPIC's ID follows the CPUs' so no APIC ID is used twice.
        let ioapicID = UInt8(vcpuCount)
        entries += [2, ioapicID, ioapicVersion, 1]
        entries.appendLittleEndian(ACPITables.ioapicAddress)
        count += 1
        for irq: UInt8 in 0..<16 where irq != 2 {
            // I/O interrupt, INT, conforming polarity and trigger, ISA bus; IRQ 0 arrives on pin 2.
            entries += [3, 0, 0, 0, isaBus, irq, ioapicID, irq == 0 ? 2 : irq]
            count += 1
        }
        // Local interrupts: ExtINT on every LAPIC's LINT0, NMI on LINT1.
        entries += [4, 3, 0, 0, isaBus, 0, 0xff, 0]
        entries += [4, 1, 0, 0, isaBus, 0, 0xff, 1]
        count += 2

        var t = Array("PCMP".utf8)
        t.appendLittleEndian(UInt16(44 + entries.count))
        t.append(4)  // revision 1.4
        t.append(0)  // checksum
        t += Array("MALVVM  ".utf8)  // OEM ID, 8 bytes
        t += Array("MALVVM VM   ".utf8)  // product ID, 12 bytes
        t.appendLittleEndian(UInt32(0))  // no OEM table
        t.appendLittleEndian(UInt16(0))
        t.appendLittleEndian(count)
        t.appendLittleEndian(ACPITables.localAPICAddress)
        t.appendLittleEndian(UInt16(0))  // no extended entries
        t.append(0)
        t.append(0)
        t += entries
        t[7] = ACPITables.checksum(t[...])
        return t
    }
}
