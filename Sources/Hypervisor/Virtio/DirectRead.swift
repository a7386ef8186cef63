import Glibc

/// Reads of a disk's backing file that bypass the host's page cache (O_DIRECT), as QEMU's
/// `cache=none` does: `--disk PATH,direct` and the read-ahead cache of such a disk.
///
/// Why: a guest's reads of a file the host has read before are served from the host's page
/// cache in microseconds, so read-ahead (`prefetch`, docs/mlaas.md) would have nothing to hide
/// and its measurement would say nothing. O_DIRECT makes every read that misses malvvm's own
/// cache cost a real device read, every epoch, without dropping the host's caches for anyone
/// else (posix_fadvise DONTNEED would, and only until the next read fills them again).
///
/// O_DIRECT wants the file offset, the length and the memory address aligned to the device's
/// logical block size; guest buffers are sector-aligned at best, so reads go through an aligned
/// bounce buffer (one per reading thread) and are widened to whole aligned blocks.
///
/// Not thread-safe: each reading thread owns its reader (VirtioBlock's device thread, a read-ahead
/// cache's thread), which is what makes the unchecked Sendable true.
final class DirectReader: @unchecked Sendable {
    /// Linux's O_DIRECT: Glibc's module does not export it (glibc defines it only under
    /// _GNU_SOURCE), and its value differs between architectures.
    #if arch(arm64)
    static let openFlag: Int32 = 0o200000
    #else
    static let openFlag: Int32 = 0o40000
    #endif
    /// 4 KiB covers every logical block size Linux block devices use.
    static let alignment = 4096
    let fd: Int32
    private let bounce: UnsafeMutableRawPointer
    private let capacity: Int

    /// `capacity`: the largest aligned window read at once (rounded up to the alignment).
    init(fd: Int32, capacity: Int) {
        self.fd = fd
        self.capacity = (max(capacity, Self.alignment) + Self.alignment - 1) / Self.alignment * Self.alignment
        var memory: UnsafeMutableRawPointer?
        precondition(posix_memalign(&memory, Self.alignment, self.capacity) == 0, "cannot allocate a bounce buffer")
        bounce = memory!
    }

    deinit { free(bounce) }

    /// Opens `path` for direct reads: a descriptor, or nil with errno set (a file system without
    /// O_DIRECT, such as tmpfs, says EINVAL).
    static func open(path: String) -> Int32? {
        let fd = Glibc.open(path, O_RDONLY | openFlag | O_CLOEXEC)
        return fd >= 0 ? fd : nil
    }

    /// Fills `slices` (in order) with the file's bytes from `offset` on; false on an I/O error
    /// or when the file ends first.
    func read(into slices: [UnsafeMutableRawBufferPointer], offset: UInt64) -> Bool {
        var position = offset
        for slice in slices where slice.count > 0 {
            guard let base = slice.baseAddress, read(into: base, offset: position, length: slice.count) else { return false }
            position += UInt64(slice.count)
        }
        return true
    }

    /// Fills `length` bytes at `destination` from `offset`; false on an error or an early end.
    func read(into destination: UnsafeMutableRawPointer, offset: UInt64, length: Int) -> Bool {
        let alignment = UInt64(Self.alignment)
        var done = 0
        while done < length {
            let start = offset + UInt64(done)
            let alignedStart = start / alignment * alignment
            let skip = Int(start - alignedStart)
            let wanted = min(capacity, (skip + length - done + Self.alignment - 1) / Self.alignment * Self.alignment)
            let count = pread(fd, bounce, wanted, off_t(alignedStart))
            if count < 0 && errno == EINTR { continue }
            guard count > skip else { return false }
            let useful = min(count - skip, length - done)
            (destination + done).copyMemory(from: bounce + skip, byteCount: useful)
            done += useful
        }
        return true
    }
}
