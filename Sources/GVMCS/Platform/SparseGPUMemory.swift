/// A `GPUMemory` made of 4 KiB pages created on demand within `[0, size)`: enough to lay out
/// page tables, rings and descriptors in tests without allocating the whole range.
public final class SparseGPUMemory: GPUMemory {
    public let size: UInt64
    private var pages: [UInt64: [UInt64]] = [:]

    public init(size: UInt64) { self.size = size }

    public func load64(_ address: UInt64) throws(GPUMemoryFault) -> UInt64 {
        let (page, word) = try locate(address)
        return pages[page]?[word] ?? 0
    }

    public func store64(_ address: UInt64, _ value: UInt64) throws(GPUMemoryFault) {
        let (page, word) = try locate(address)
        pages[page, default: [UInt64](repeating: 0, count: 512)][word] = value
    }

    private func locate(_ address: UInt64) throws(GPUMemoryFault) -> (UInt64, Int) {
        guard address & 7 == 0, address < size, size - address >= 8 else {
            throw GPUMemoryFault(address: address)
        }
        return (address >> 12, Int((address & 0xFFF) >> 3))
    }
}
