/// Hands out naturally aligned address ranges from a window, as firmware does for BARs.
struct PCIAddressAllocator: Sendable {
    let start: UInt64
    let end: UInt64
    private var next: UInt64

    init(start: UInt64, size: UInt64) {
        self.start = start
        self.end = start + size
        self.next = start
    }

    /// `size` must be a power of two; the range is aligned to it.
    mutating func allocate(size: UInt64) -> UInt64? {
        let aligned = (next + size - 1) & ~(size - 1)
        guard aligned >= next, aligned + size <= end else { return nil }
        next = aligned + size
        return aligned
    }
}
