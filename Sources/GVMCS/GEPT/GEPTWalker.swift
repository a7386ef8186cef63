/// Walks the G-EPT: guest-physical address → host address, four levels of 512 entries,
/// 4 KiB pages, 48-bit guest-physical addresses, as a VMX EPT walk.
public struct GEPTWalker {
    public enum Outcome: Hashable, Sendable {
        case translated(host: UInt64)
        /// Not present, or present without the right to this access.
        case violation(allowed: GEPTPermissions)
        /// A malformed entry, or a table the host memory does not hold: the hypervisor's error.
        case misconfiguration
    }

    public let memory: any GPUMemory
    public let pointer: GEPTPointer
    public let memoryTypes: Set<UInt8>

    public init(memory: any GPUMemory, pointer: GEPTPointer, memoryTypes: Set<UInt8>) {
        self.memory = memory
        self.pointer = pointer
        self.memoryTypes = memoryTypes
    }

    public func translate(_ guestPhysical: UInt64, access: GEPTPermissions) -> Outcome {
        // Beyond 48 bits nothing can be mapped: a violation, as an unmapped address is.
        guard guestPhysical >> 48 == 0 else { return .violation(allowed: []) }
        var table = pointer.root
        var allowed = GEPTPermissions.all
        for level in stride(from: 3, through: 0, by: -1) {
            let index = (guestPhysical >> UInt64(12 + 9 * level)) & 0x1FF
            guard let raw = try? memory.load64(table + index * 8) else { return .misconfiguration }
            let entry = GEPTEntry(rawValue: raw)
            // VMX reports bits 5:3 as zero when an entry on the way is not present.
            guard entry.isPresent else { return .violation(allowed: []) }
            if entry.isMisconfigured(leaf: level == 0, memoryTypes: memoryTypes) {
                return .misconfiguration
            }
            allowed.formIntersection(entry.permissions)
            table = entry.address
        }
        guard allowed.isSuperset(of: access) else { return .violation(allowed: allowed) }
        return .translated(host: table | (guestPhysical & 0xFFF))
    }
}
