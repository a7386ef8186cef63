/// The MMIO register bitmap: one 4 KiB page in host memory, laid out as VMX's MSR bitmap is,
/// read bitmap in bytes 0-2047, write bitmap in bytes 2048-4095. Bit n covers the 32-bit
/// register at offset 4n, so the two halves span the 64 KiB register BAR. A set bit traps.
public struct MMIOBitmap {
    public static let writeBitmapOffset: UInt64 = 2048

    public let memory: any GPUMemory
    public let address: UInt64

    public init(memory: any GPUMemory, address: UInt64) {
        self.memory = memory
        self.address = address
    }

    /// True when any 32-bit register the access touches has its bit set. An unreadable bitmap
    /// traps: when in doubt, the hypervisor decides.
    public func traps(_ access: GVMRegisterAccess) -> Bool {
        let first = access.offset / 4
        let last = (access.offset + UInt32(access.size) - 1) / 4
        return (first...last).contains { bit(register: $0, write: access.isWrite) ?? true }
    }

    /// Sets or clears the trap bit for the register at `offset` (hypervisor side).
    public func setTrap(offset: UInt32, write: Bool, _ trap: Bool) throws(GPUMemoryFault) {
        let (word, mask) = locate(register: offset / 4, write: write)
        let old = try memory.load64(word)
        try memory.store64(word, trap ? old | mask : old & ~mask)
    }

    private func bit(register: UInt32, write: Bool) -> Bool? {
        let (word, mask) = locate(register: register, write: write)
        guard let value = try? memory.load64(word) else { return nil }
        return value & mask != 0
    }

    private func locate(register: UInt32, write: Bool) -> (UInt64, UInt64) {
        let bitIndex = UInt64(register)
        let base = address + (write ? Self.writeBitmapOffset : 0)
        return (base + (bitIndex / 64) * 8, 1 << (bitIndex % 64))
    }
}
