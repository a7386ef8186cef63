/// The few ACPI tables a guest needs to find the platform: RSDP → XSDT → MCFG (where PCIe ECAM
/// lives) and MADT (the LAPIC, the IOAPIC and IRQ 0's override to pin 2). They sit in the
/// reserved BIOS area, and start_info's rsdp_paddr points at the RSDP.
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
        let mcfg = try place(self.mcfg())
        let madt = try place(self.madt(vcpuCount: vcpuCount))
        let xsdt = try place(self.xsdt(entries: [mcfg, madt]))
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
        return finish(header("APIC", length: 36 + body.count, revision: 3) + body)
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }
}
