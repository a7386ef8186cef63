/// The host memory the unit reaches: G-VMCS regions' revision words, G-EPT tables, the MMIO
/// bitmap, posted-completion descriptors and, through the G-EPT, the guest's own memory
/// (command ring, guest GPU page tables, buffers).
///
/// Abstract so the device slice can back it with guest RAM (bounds-checked) while tests use
/// `SparseGPUMemory`. Accesses are naturally aligned 64-bit little-endian words: everything the
/// unit itself reads is a table entry or a command word, and data commands move words too.
public protocol GPUMemory: AnyObject {
    func load64(_ address: UInt64) throws(GPUMemoryFault) -> UInt64
    func store64(_ address: UInt64, _ value: UInt64) throws(GPUMemoryFault)
}

/// An address the backing memory does not hold (or an unaligned one).
public struct GPUMemoryFault: Error, Hashable, Sendable {
    public let address: UInt64
    public init(address: UInt64) { self.address = address }
}
