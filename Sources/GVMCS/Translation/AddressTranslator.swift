/// The two-stage translation the virtual GPU does for every access: guest GPU virtual address
/// → guest-physical (the guest's page tables, `gpuPageTableRoot`) → host (the G-EPT when
/// nested paging is on, identity otherwise).
///
/// Like a VMX walk with EPT, each read of a guest page-table entry is itself a guest-physical
/// access and goes through the G-EPT, so a hypervisor that has not mapped the guest's tables
/// sees a G-EPT violation with qualification bit 8 clear.
struct AddressTranslator {
    let memory: any GPUMemory
    let guestRoot: UInt64
    /// `nil` when nested paging is off.
    let gept: GEPTWalker?

    func translate(_ gva: UInt64, access: GEPTPermissions) throws(TranslationFault) -> UInt64 {
        guard gva >> 48 == 0 else {
            throw .guestPageFault(guestGPUAddress: gva, code: .init(present: false, access: access))
        }
        var table = guestRoot
        var writable = true
        var executable = true
        for level in stride(from: 3, through: 0, by: -1) {
            let slot = table + ((gva >> UInt64(12 + 9 * level)) & 0x1FF) * 8
            let host = try toHost(slot, access: .read, gva: gva, translatedAccess: false)
            let entry: GuestGPUPageTableEntry
            do {
                entry = GuestGPUPageTableEntry(rawValue: try memory.load64(host))
            } catch {
                throw .unbackedAddress(slot)
            }
            guard entry.isPresent else {
                throw .guestPageFault(guestGPUAddress: gva, code: .init(present: false, access: access))
            }
            writable = writable && entry.isWritable
            executable = executable && entry.isExecutable
            table = entry.address
        }
        if (access.contains(.write) && !writable) || (access.contains(.execute) && !executable) {
            throw .guestPageFault(guestGPUAddress: gva, code: .init(present: true, access: access))
        }
        return try toHost(table | (gva & 0xFFF), access: access, gva: gva, translatedAccess: true)
    }

    /// Translates `[address, address + length)` page by page into host ranges, merging ranges
    /// that turn out to be contiguous in host memory.
    func ranges(_ address: UInt64, _ length: UInt64,
                _ access: GEPTPermissions) throws(TranslationFault) -> [GVMHostRange] {
        var result: [GVMHostRange] = []
        var cursor = address
        var left = length
        while left > 0 {
            let chunk = min(left, 4096 - (cursor & 0xFFF))
            let host = try translate(cursor, access: access)
            if let last = result.last, last.address + last.length == host {
                result[result.count - 1].length += chunk
            } else {
                result.append(GVMHostRange(address: host, length: chunk))
            }
            // A buffer that would wrap past 2^64 faults at the top of the address space,
            // because translate() rejects any address at or above 2^48 first.
            cursor &+= chunk
            left -= chunk
        }
        return result
    }

    private func toHost(_ gpa: UInt64, access: GEPTPermissions, gva: UInt64,
                        translatedAccess: Bool) throws(TranslationFault) -> UInt64 {
        guard let gept else { return gpa }
        switch gept.translate(gpa, access: access) {
        case .translated(let host):
            return host
        case .violation(let allowed):
            throw .geptViolation(
                guestPhysical: gpa, guestGPUAddress: gva,
                qualification: .init(access: access, allowed: allowed,
                                     guestGPUAddressValid: true, translatedAccess: translatedAccess))
        case .misconfiguration:
            throw .geptMisconfiguration(guestPhysical: gpa, guestGPUAddress: gva)
        }
    }
}
