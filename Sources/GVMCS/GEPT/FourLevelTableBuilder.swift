/// Builds four-level, 4 KiB-page tables in a `GPUMemory`: the G-EPT for the hypervisor, and the
/// guest's GPU page tables for tests and the guest-side client. Both formats share the radix
/// layout (9 bits a level); they differ only in how an entry is encoded, which the caller's
/// `Format` supplies.
public struct FourLevelTableBuilder {
    public struct Format: Sendable {
        /// Encodes a pointer from one table to the next level.
        public var table: @Sendable (_ address: UInt64) -> UInt64
        public var isPresent: @Sendable (_ raw: UInt64) -> Bool
        public var nextTable: @Sendable (_ raw: UInt64) -> UInt64

        public init(table: @escaping @Sendable (UInt64) -> UInt64,
                    isPresent: @escaping @Sendable (UInt64) -> Bool,
                    nextTable: @escaping @Sendable (UInt64) -> UInt64) {
            self.table = table
            self.isPresent = isPresent
            self.nextTable = nextTable
        }

        /// G-EPT non-leaf entries grant everything; leaves restrict (VMX does the same).
        public static let gept = Format(
            table: { GEPTEntry(address: $0, permissions: .all).rawValue },
            isPresent: { GEPTEntry(rawValue: $0).isPresent },
            nextTable: { GEPTEntry(rawValue: $0).address })

        public static let guestGPU = Format(
            table: { GuestGPUPageTableEntry(address: $0, writable: true, executable: true).rawValue },
            isPresent: { GuestGPUPageTableEntry(rawValue: $0).isPresent },
            nextTable: { GuestGPUPageTableEntry(rawValue: $0).address })
    }

    public let memory: any GPUMemory
    public let root: UInt64
    public let format: Format
    private let allocateTable: () -> UInt64

    /// `allocateTable` returns a zeroed, 4 KiB-aligned address in `memory` for each new table.
    public init(memory: any GPUMemory, root: UInt64, format: Format,
                allocateTable: @escaping () -> UInt64) {
        self.memory = memory
        self.root = root
        self.format = format
        self.allocateTable = allocateTable
    }

    /// Writes `leaf` as the level-1 entry for the 4 KiB page holding `address`, creating the
    /// tables on the way.
    public func setLeaf(for address: UInt64, to leaf: UInt64) throws(GPUMemoryFault) {
        try memory.store64(try leafSlot(for: address), leaf)
    }

    /// Address of the level-1 entry for `address`.
    public func leafSlot(for address: UInt64) throws(GPUMemoryFault) -> UInt64 {
        var table = root
        for level in stride(from: 3, through: 1, by: -1) {
            let slot = table + ((address >> UInt64(12 + 9 * level)) & 0x1FF) * 8
            var raw = try memory.load64(slot)
            if !format.isPresent(raw) {
                raw = format.table(allocateTable())
                try memory.store64(slot, raw)
            }
            table = format.nextTable(raw)
        }
        return table + ((address >> 12) & 0x1FF) * 8
    }
}
