#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Host memory standing in for a device buffer. The memory stays raw (never bound to a
/// Swift type); kernels copy operands out into arrays and results back with memcpy, which
/// also makes in-place kernels trivially correct.
final class CPUBuffer: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let byteCount: Int
    let placement: MemoryPlacement

    init(byteCount: Int, placement: MemoryPlacement) {
        self.byteCount = byteCount
        self.placement = placement
        base = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
        // Zeroed so nothing of a previous allocation is ever visible to a new owner.
        memset(base, 0, byteCount)
    }

    deinit {
        base.deallocate()
    }

    /// Copies `count` elements of `T` starting at element `offset`. Callers have validated
    /// the range against `byteCount`.
    func load<T: BitwiseCopyable>(_ range: BufferRange, as type: T.Type) -> [T] {
        [T](unsafeUninitializedCapacity: range.count) { storage, initialized in
            if let destination = storage.baseAddress {
                memcpy(destination, base + range.offset * MemoryLayout<T>.stride, range.count * MemoryLayout<T>.stride)
            }
            initialized = range.count
        }
    }

    func store<T: BitwiseCopyable>(_ values: [T], at range: BufferRange) {
        precondition(values.count == range.count, "kernel produced a result of the wrong length")
        values.withUnsafeBytes { raw in
            if let source = raw.baseAddress {
                memcpy(base + range.offset * MemoryLayout<T>.stride, source, raw.count)
            }
        }
    }
}
