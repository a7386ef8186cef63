import CKVM
import Glibc

public enum GuestMemoryError: Error, Equatable, CustomStringConvertible, Sendable {
    /// [address, address + length) is not wholly inside one RAM region.
    case outOfRange(address: GuestAddress, length: UInt64)
    case invalidLayout(String)
    case allocationFailed(size: UInt64, SystemError)

    public var description: String {
        switch self {
        case let .outOfRange(address, length):
            return "guest access of \(length) bytes at \(address) is outside guest RAM"
        case let .invalidLayout(why):
            return "invalid guest memory layout: \(why)"
        case let .allocationFailed(size, error):
            return "cannot allocate \(size >> 20) MiB of guest memory: \(error)"
        }
    }
}

/// One contiguous range of guest RAM and where it lives in this process and in the memfd.
public struct GuestMemoryRegion: @unchecked Sendable {
    public let start: GuestAddress
    public let size: UInt64
    /// Offset of this region inside the backing memfd, for sharing it with another process.
    public let fileOffset: UInt64
    let host: UnsafeMutableRawPointer

    public var end: UInt64 { start.raw + size }

    func contains(_ address: GuestAddress, length: UInt64) -> Bool {
        guard address.raw >= start.raw, let last = address.adding(length) else { return false }
        return last.raw <= end
    }
}

/// Guest RAM: one memfd mapped MAP_SHARED, cut into regions at guest-physical addresses.
///
/// memfd backing lets a later process (the GPU daemon) map the same pages. Every accessor is
/// bounds-checked and throws instead of trapping: guest-supplied addresses reach these calls.
public final class GuestMemory: @unchecked Sendable {
    public let regions: [GuestMemoryRegion]
    /// The memfd holding all regions back to back.
    public let fileDescriptor: Int32
    /// Guest RAM in all (the sum of the regions).
    public let totalSize: UInt64
    private let mappings: [UnsafeMutableRawBufferPointer]

    /// - Parameter layout: (start, size) pairs, sorted, non-overlapping, page-aligned.
    public convenience init(layout: [(start: GuestAddress, size: UInt64)]) throws(GuestMemoryError) {
        let pageSize: UInt64 = 4096
        var previousEnd: UInt64 = 0
        var total: UInt64 = 0
        for (index, range) in layout.enumerated() {
            guard range.size > 0, range.size % pageSize == 0, range.start.raw % pageSize == 0 else {
                throw .invalidLayout("region \(index) at \(range.start) of \(range.size) bytes is empty or not page-aligned")
            }
            guard range.start.raw >= previousEnd, let end = range.start.adding(range.size) else {
                throw .invalidLayout("region \(index) at \(range.start) overlaps or wraps")
            }
            previousEnd = end.raw
            total += range.size
        }
        guard total > 0 else { throw .invalidLayout("no RAM") }

        let fd = ckvm_memfd_create("malvvm-guest-ram", CKVM_MFD_CLOEXEC | CKVM_MFD_ALLOW_SEALING)
        guard fd >= 0 else { throw .allocationFailed(size: total, SystemError("memfd_create", errno: -fd)) }
        guard ftruncate(fd, off_t(total)) == 0 else {
            let error = errno
            close(fd)
            throw .allocationFailed(size: total, SystemError("ftruncate", errno: error))
        }
        // Sealed at its size: a process we share it with (the GPU daemon) can trust its
        // mapping never to be cut short under it.
        let sealed = ckvm_memfd_seal_size(fd)
        guard sealed == 0 else {
            close(fd)
            throw .allocationFailed(size: total, SystemError("F_ADD_SEALS", errno: -sealed))
        }
        var regions: [(GuestAddress, UInt64, UInt64)] = []
        var offset: UInt64 = 0
        for range in layout {
            regions.append((range.start, range.size, offset))
            offset += range.size
        }
        try self.init(mapping: fd, regions: regions)
    }

    /// The most guest RAM one shared mapping may cover. Another process chooses the regions of
    /// a shared memfd, so without a bound a few sparse memfds of tens of TiB would use up this
    /// process's address space and starve every other VM it serves.
    public static let defaultSharingLimit: UInt64 = 1 << 40

    /// Maps guest RAM another process created and shared (its memfd and its regions'
    /// `start`, `size`, `fileOffset`), as the GPU daemon does for each VM. Takes ownership of
    /// `fileDescriptor`, closed on failure too. The memfd must be an ordinary (shmem) memfd,
    /// sealed against shrinking, holding every region, so no peer-chosen layout or backing can
    /// make an access fault; only the regions are mapped, at most `limit` bytes in all.
    public convenience init(sharing fileDescriptor: Int32,
                            regions layout: [(start: GuestAddress, size: UInt64, fileOffset: UInt64)],
                            limit: UInt64 = GuestMemory.defaultSharingLimit) throws(GuestMemoryError) {
        func fail(_ error: GuestMemoryError) -> GuestMemoryError {
            close(fileDescriptor)
            return error
        }
        var status = stat()
        guard fstat(fileDescriptor, &status) == 0 else {
            throw fail(.invalidLayout("the shared memory is not a file (\(SystemError("fstat", errno: errno)))"))
        }
        // A hugetlbfs memfd passes the seal check but faults with SIGBUS whenever its pool has
        // no page left; only shmem pages are there on every access.
        guard ckvm_memfd_is_shmem(fileDescriptor) == 1 else {
            throw fail(.invalidLayout("the shared memory is not an ordinary memfd (huge-page and file-backed memory are refused)"))
        }
        guard ckvm_memfd_is_size_sealed(fileDescriptor) == 1 else {
            throw fail(.invalidLayout("the shared memory is not a memfd sealed against shrinking"))
        }
        let fileSize = UInt64(status.st_size)
        var previousEnd: UInt64 = 0
        var mapped: UInt64 = 0
        for (index, region) in layout.enumerated() {
            guard region.size > 0, region.size % 4096 == 0, region.start.raw % 4096 == 0, region.fileOffset % 4096 == 0,
                  region.start.raw >= previousEnd, let end = region.start.adding(region.size),
                  region.fileOffset <= fileSize, region.size <= fileSize - region.fileOffset else {
                throw fail(.invalidLayout("shared region \(index) at \(region.start) of \(region.size) bytes does not fit the memfd"))
            }
            previousEnd = end.raw
            // No overflow: each size is below the file size, and the sum is checked as it grows.
            mapped += region.size
            guard mapped <= limit else {
                throw fail(.invalidLayout("the shared regions cover more than \(limit >> 30) GiB of guest RAM"))
            }
        }
        guard !layout.isEmpty, fileSize > 0 else { throw fail(.invalidLayout("no RAM")) }
        try self.init(mapping: fileDescriptor, regions: layout.map { ($0.start, $0.size, $0.fileOffset) })
    }

    /// Maps each region from its place in `fd`; owns `fd` from here on.
    private init(mapping fd: Int32, regions layout: [(GuestAddress, UInt64, UInt64)]) throws(GuestMemoryError) {
        var mappings: [UnsafeMutableRawBufferPointer] = []
        var regions: [GuestMemoryRegion] = []
        for (start, size, offset) in layout {
            // MAP_NORESERVE: pages are allocated when the guest touches them, as with any VMM.
            guard let base = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, off_t(offset)),
                  base != MAP_FAILED else {
                let error = errno
                mappings.forEach { munmap($0.baseAddress, $0.count) }
                close(fd)
                throw .allocationFailed(size: size, SystemError("mmap", errno: error))
            }
            mappings.append(UnsafeMutableRawBufferPointer(start: base, count: Int(size)))
            regions.append(GuestMemoryRegion(start: start, size: size, fileOffset: offset, host: base))
        }
        self.regions = regions
        self.fileDescriptor = fd
        self.totalSize = layout.reduce(0) { $0 + $1.1 }
        self.mappings = mappings
    }

    deinit {
        mappings.forEach { munmap($0.baseAddress, $0.count) }
        close(fileDescriptor)
    }

    /// Where each region is mapped in this process: for a device that reads and writes guest
    /// RAM in place (the GPU's host-memory import). Valid while this object lives.
    public var hostMappings: [UnsafeMutableRawBufferPointer] { mappings }

    /// The host bytes behind [address, address + length), which must lie in one region.
    public func slice(at address: GuestAddress, length: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        for region in regions where region.contains(address, length: length) {
            return UnsafeMutableRawBufferPointer(start: region.host + Int(address.raw - region.start.raw), count: Int(length))
        }
        throw .outOfRange(address: address, length: length)
    }

    public func contains(_ address: GuestAddress, length: UInt64) -> Bool {
        regions.contains { $0.contains(address, length: length) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at address: GuestAddress) throws(GuestMemoryError) {
        let target = try slice(at: address, length: UInt64(bytes.count))
        if !bytes.isEmpty { target.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
    }

    public func write(_ bytes: [UInt8], at address: GuestAddress) throws(GuestMemoryError) {
        let target = try slice(at: address, length: UInt64(bytes.count))
        bytes.withUnsafeBytes { source in
            if !source.isEmpty { target.baseAddress!.copyMemory(from: source.baseAddress!, byteCount: source.count) }
        }
    }

    public func read(_ length: Int, at address: GuestAddress) throws(GuestMemoryError) -> [UInt8] {
        Array(try slice(at: address, length: UInt64(length)))
    }

    /// Little-endian integer load; unaligned addresses are fine.
    public func read<T: FixedWidthInteger>(_: T.Type, at address: GuestAddress) throws(GuestMemoryError) -> T {
        let source = try slice(at: address, length: UInt64(MemoryLayout<T>.size))
        return T(littleEndian: source.loadUnaligned(as: T.self))
    }

    public func write<T: FixedWidthInteger>(_ value: T, at address: GuestAddress) throws(GuestMemoryError) {
        let target = try slice(at: address, length: UInt64(MemoryLayout<T>.size))
        target.storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Zero-fills a range (for the part of an ELF segment past its file bytes).
    public func fill(_ byte: UInt8, at address: GuestAddress, length: UInt64) throws(GuestMemoryError) {
        let target = try slice(at: address, length: length)
        if length > 0 { memset(target.baseAddress!, Int32(byte), Int(length)) }
    }
}
