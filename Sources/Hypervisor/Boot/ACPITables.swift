/// The few ACPI tables a guest needs to find the platform: RSDP → XSDT → FADT (hardware-reduced
/// ACPI: the sleep and reset registers of `ACPIPowerControl`, and the DSDT with `_S5`), MCFG
/// (where PCIe ECAM lives) and MADT (every CPU's LAPIC, the IOAPIC, IRQ 0's override to
/// pin 2, NMI on LINT1). They sit in the reserved BIOS area, and start_info's rsdp_paddr (or boot_params'
/// acpi_rsdp_addr) points at the RSDP.
public enum ACPITables {
    public static let rsdpAddress = GuestAddress(0xf_0000)
    static let oemID = Array("MALVVM".utf8)
    static let oemTableID = Array("MALVVM  ".utf8)
    static let creatorID = Array("MLVM".utf8)

    public static let localAPICAddress: UInt32 = 0xfee0_0000
    public static let ioapicAddress: UInt32 = 0xfec0_0000

    /// Writes the tables; returns the RSDP's address.
    @discardableResult
    public static func write(into memory: GuestMemory, vcpuCount: Int) throws(GuestMemoryError) -> GuestAddress {
        var cursor = rsdpAddress.raw + 64
        func place(_ table: [UInt8]) throws(GuestMemoryError) -> UInt64 {
            let address = cursor
            try memory.write(table, at: GuestAddress(address))
            cursor = (cursor + UInt64(table.count) + 15) & ~15
            return address
        }
        let dsdt = try place(self.dsdt())
        let fadt = try place(self.fadt(dsdt: dsdt))
        let mcfg = try place(self.mcfg())
        let madt = try place(self.madt(vcpuCount: vcpuCount))
        let xsdt = try place(self.xsdt(entries: [fadt, mcfg, madt]))
        try memory.write(rsdp(xsdt: xsdt), at: rsdpAddress)
        return rsdpAddress
    }

    static func rsdp(xsdt: UInt64) -> [UInt8] {
        var t = Array("RSD PTR ".utf8)
        t.append(0)  // checksum of the first 20 bytes
        t += oemID
        t.append(2)  // revision: ACPI 2.0+, with an XSDT
        t.appendLittleEndian(UInt32(0))  // no RSDT
        t.appendLittleEndian(UInt32(36))
        t.appendLittleEndian(xsdt)
        t.append(0)  // extended checksum
        t += [0, 0, 0]
        t[8] = checksum(t[0..<20])
        t[32] = checksum(t[0..<36])
        return t
    }

    static func header(_ signature: String, length: Int, revision: UInt8) -> [UInt8] {
        var h = Array(signature.utf8)
        h.appendLittleEndian(UInt32(length))
        h.append(revision)
        h.append(0)  // checksum, filled by `finish`
        h += oemID
        h += oemTableID
        h.appendLittleEndian(UInt32(1))
        h += creatorID
        h.appendLittleEndian(UInt32(1))
        return h
    }

    static func finish(_ table: [UInt8]) -> [UInt8] {
        var t = table
        t[9] = checksum(t[...])
        return t
    }

    static func xsdt(entries: [UInt64]) -> [UInt8] {
        var t = header("XSDT", length: 36 + 8 * entries.count, revision: 1)
        for entry in entries { t.appendLittleEndian(entry) }
        return finish(t)
    }

    /// A Generic Address Structure for one byte in I/O space.
    static func ioPortAddress(_ port: UInt64) -> [UInt8] {
        var g: [UInt8] = [1, 8, 0, 1]  // System I/O, 8 bits wide, offset 0, byte access
        g.appendLittleEndian(port)
        return g
    }

    /// FADT revision 6 (276 bytes) for hardware-reduced ACPI: no PM1 blocks, no SCI, no FACS;
    /// power-off and reset through the sleep control and reset registers.
    static func fadt(dsdt: UInt64) -> [UInt8] {
        var t = header("FACP", length: 276, revision: 6)
        t.appendLittleEndian(UInt32(0))  // FIRMWARE_CTRL: no FACS, as hardware-reduced ACPI allows
        t.appendLittleEndian(UInt32(dsdt))
        t += [UInt8](repeating: 0, count: 109 - 44)  // reserved, PM profile, SCI, SMI, PM blocks, latencies: none
        // IAPC_BOOT_ARCH: no VGA, no CMOS RTC; no 8042 (bit 1 clear), so Linux probes neither.
        t.appendLittleEndian(UInt16(1 << 2 | 1 << 5))
        t.append(0)
        // Flags: WBINVD, PWR_BUTTON and SLP_BUTTON (no fixed buttons), RESET_REG_SUP, HW_REDUCED_ACPI.
        t.appendLittleEndian(UInt32(1 << 0 | 1 << 4 | 1 << 5 | 1 << 10 | 1 << 20))
        t += ioPortAddress(ACPIPowerControl.basePort + ACPIPowerControl.reset)  // RESET_REG
        t.append(ACPIPowerControl.resetValue)
        t.appendLittleEndian(UInt16(0))  // ARM_BOOT_ARCH
        t.append(0)  // FADT minor version
        t.appendLittleEndian(UInt64(0))  // X_FIRMWARE_CTRL
        t.appendLittleEndian(dsdt)  // X_DSDT
        t += [UInt8](repeating: 0, count: 8 * 12)  // X_PM1a_EVT_BLK … X_GPE1_BLK: none
        t += ioPortAddress(ACPIPowerControl.basePort + ACPIPowerControl.sleepControl)
        t += ioPortAddress(ACPIPowerControl.basePort + ACPIPowerControl.sleepStatus)
        t += Array("MALVVM\0\0".utf8)  // hypervisor vendor identity
        precondition(t.count == 276)
        return finish(t)
    }

    /// The DSDT: `Name (_S5, Package () { 5, 0, 0, 0 })`, the sleep type a guest writes to
    /// power off. AML: NameOp "_S5_" PackageOp PkgLength(7) NumElements(4) BytePrefix 5 Zero Zero Zero.
    static func dsdt() -> [UInt8] {
        let aml: [UInt8] = [0x08] + Array("_S5_".utf8) + [0x12, 0x07, 0x04, 0x0a, ACPIPowerControl.softOffSleepType, 0, 0, 0]
        return finish(header("DSDT", length: 36 + aml.count, revision: 2) + aml)
    }

    static func mcfg() -> [UInt8] {
        var t = header("MCFG", length: 36 + 8 + 16, revision: 1)
        t += [UInt8](repeating: 0, count: 8)
        t.appendLittleEndian(X86BootLayout.ecamStart)
        t.appendLittleEndian(UInt16(0))  // segment
        t.append(0)  // first bus
        t.append(UInt8((X86BootLayout.ecamSize >> 20) - 1))  // last bus
        t.appendLittleEndian(UInt32(0))
        return finish(t)
    }

    static func madt(vcpuCount: Int) -> [UInt8] {
        var body: [UInt8] = []
        body.appendLittleEndian(localAPICAddress)
        body.appendLittleEndian(UInt32(1))  // PCAT_COMPAT: the 8259s exist
        for id in 0..<vcpuCount {
            body += [0, 8, UInt8(id), UInt8(id)]  // processor local APIC
            body.appendLittleEndian(UInt32(1))  // enabled
        }
        body += [1, 12, 0, 0]  // I/O APIC 0
        body.appendLittleEndian(ioapicAddress)
        body.appendLittleEndian(UInt32(0))  // GSI base
        body += [2, 10, 0, 0]  // interrupt source override: ISA IRQ 0 → GSI 2
        body.appendLittleEndian(UInt32(2))
        body.appendLittleEndian(UInt16(0))  // conforming polarity and trigger
        // Local APIC NMI: every processor (UID 0xff), conforming, on LINT1, as the MP table
        // and QEMU's MADT say.
        body += [4, 6, 0xff, 0, 0, 1]
        return finish(header("APIC", length: 36 + body.count, revision: 3) + body)
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }
}
