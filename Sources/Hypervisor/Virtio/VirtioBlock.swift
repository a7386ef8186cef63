import Glibc
import Synchronization

/// A virtio block device (virtio 1.2 §5.2) backed by a file: read, write, flush, get-id,
/// discard (a validated hint that leaves data in place, as QEMU's default discard=ignore does)
/// and write-zeroes.
///
/// Data moves between the file and guest memory with preadv/pwritev on the guest's own
/// buffers (no copies). Every request is checked: a bad sector, size or layout gets
/// VIRTIO_BLK_S_IOERR (or UNSUPP), never a crash.
///
/// A `direct` disk reads with O_DIRECT (through a bounce buffer; `DirectReader` says why), as
/// QEMU's cache=none. A read hook (`watchReads`, MLaaS's block capability) sees every read before
/// it is served and gives the disk a read-ahead cache (`BlockReadAhead`) that serves the reads
/// it covers whole; writes drop what they overlap from it.
public final class VirtioBlock: VirtioQueueHandler {
    public static let sectorSize: UInt64 = 512
    static let queueSize: UInt16 = 256
    static let idBytes = 20
    /// Linux's IOV_MAX; a chain never has more buffers than the queue has descriptors anyway.
    static let iovecLimit = 1024

    enum Feature {
        static let segmentMaximum: UInt64 = 1 << 2
        static let readOnly: UInt64 = 1 << 5
        static let blockSize: UInt64 = 1 << 6
        static let flush: UInt64 = 1 << 9
        static let discard: UInt64 = 1 << 13
        static let writeZeroes: UInt64 = 1 << 14
    }

    /// One discard or write-zeroes range per request; the largest range, in sectors.
    static let maximumRangeSectors: UInt32 = 0x3f_ffff
    static let rangeSize = 16

    enum RequestType: UInt32 {
        case read = 0, write = 1, flush = 4, getID = 8, discard = 11, writeZeroes = 13
    }

    enum Status: UInt8 {
        case ok = 0, ioError = 1, unsupported = 2
    }

    public let path: String
    public let readOnly: Bool
    public let direct: Bool
    public let capacitySectors: UInt64
    private let fd: Int32
    /// Reads of a `direct` disk (its own O_DIRECT descriptor and bounce buffer; device thread only).
    private let directReader: DirectReader?
    private let hook = Mutex<ReadHook?>(nil)
    private let counters = Counters()
    private let serial: [UInt8]

    public let deviceType: UInt16 = 2
    public let queueMaximumSizes: [UInt16] = [VirtioBlock.queueSize]
    public let configurationSize = 60
    public let pciClass: (UInt8, UInt8, UInt8) = (0x01, 0x00, 0x00)  // mass storage, as QEMU's

    public var offeredFeatures: UInt64 {
        Feature.segmentMaximum | Feature.blockSize | Feature.flush | (readOnly ? Feature.readOnly : 0)
            | Feature.discard | Feature.writeZeroes
            | VirtioFeature.indirectDescriptors | VirtioFeature.eventIndex
    }

    public init(path: String, readOnly: Bool, direct: Bool = false) throws(HypervisorError) {
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw .configuration("cannot open disk '\(path)': \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG || info.st_mode & S_IFMT == S_IFBLK else {
            close(fd)
            throw .configuration("disk '\(path)' is not a regular file or block device")
        }
        var size = UInt64(info.st_size)
        if info.st_mode & S_IFMT == S_IFBLK {
            let end = lseek(fd, 0, SEEK_END)
            size = end > 0 ? UInt64(end) : 0
        }
        guard size >= Self.sectorSize else {
            close(fd)
            throw .configuration("disk '\(path)' is smaller than one 512-byte sector")
        }
        var directReader: DirectReader?
        if direct {
            guard let directFD = DirectReader.open(path: path) else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw .configuration("disk '\(path)' cannot be read with O_DIRECT (',direct'): \(reason)")
            }
            directReader = DirectReader(fd: directFD, capacity: Int(Self.mergeLimitBytes) + DirectReader.alignment)
        }
        self.fd = fd
        self.directReader = directReader
        self.path = path
        self.readOnly = readOnly
        self.direct = direct
        capacitySectors = size / Self.sectorSize
        let base = path.split(separator: "/").last.map(String.init) ?? "disk"
        serial = Array(("malvvm-" + base).utf8.prefix(Self.idBytes))
    }

    deinit {
        close(fd)
        if let directReader { close(directReader.fd) }
        hook.withLock { $0?.cache.stop() }
    }

    // MARK: Read hook and read-ahead cache

    /// Sees each guest read, as byte offset and length on the disk, before it is served.
    public typealias ReadObserver = @Sendable (_ offset: UInt64, _ length: UInt64) -> Void

    private struct ReadHook {
        let observer: ReadObserver
        let cache: BlockReadAhead
    }

    /// Calls `observer` for every guest read from now on and gives the disk a read-ahead cache
    /// of `cacheBytes` (returned: ask it for read-ahead). One hook at a time.
    public func watchReads(cacheBytes: UInt64, observer: @escaping ReadObserver) throws(HypervisorError) -> BlockReadAhead {
        let cache = try BlockReadAhead(path: path, diskBytes: capacitySectors * Self.sectorSize, direct: direct, budgetBytes: cacheBytes)
        let taken = hook.withLock { current -> Bool in
            guard current == nil else { return false }
            current = ReadHook(observer: observer, cache: cache)
            return true
        }
        guard taken else {
            cache.stop()
            throw .configuration("disk '\(path)' already has a read hook")
        }
        return cache
    }

    /// Removes the hook whose cache is `cache` (another's is left alone) and drops the cache:
    /// reads go on uncached. When it returns no observer call is running or will start (the
    /// device thread calls the observer under the same lock).
    public func unwatchReads(_ cache: BlockReadAhead) {
        let removed = hook.withLock { current -> BlockReadAhead? in
            guard let hook = current, hook.cache === cache else { return nil }
            current = nil
            return hook.cache
        }
        guard let removed else { return }
        removed.stop()
        counters.retire(removed.statistics)
    }

    /// What the guest's reads cost: how many, how many the read-ahead cache served whole, the
    /// bytes read from the backing file for them and ahead of them.
    public struct ReadStatistics: Sendable, Equatable, Codable {
        public var reads: UInt64 = 0
        public var bytes: UInt64 = 0
        public var cacheHits: UInt64 = 0
        public var cacheHitBytes: UInt64 = 0
        /// Bytes the guest's reads (those the cache did not serve) read from the file.
        public var fileBytes: UInt64 = 0
        /// Bytes and granules read ahead from the file, over every cache this disk had.
        public var readAheadBytes: UInt64 = 0
        public var readAheadDropped: UInt64 = 0
        public var readAheadEvicted: UInt64 = 0
    }

    public var readStatistics: ReadStatistics {
        var statistics = counters.snapshot()
        if let live = hook.withLock({ $0?.cache.statistics }) {
            statistics.readAheadBytes += live.bytesRead
            statistics.readAheadDropped += live.granulesDropped
            statistics.readAheadEvicted += live.granulesEvicted
        }
        return statistics
    }

    /// The counters behind `readStatistics` (device thread writes, anyone reads).
    private final class Counters: Sendable {
        private let state = Mutex(ReadStatistics())
        func read(bytes: UInt64, hit: Bool) {
            state.withLock {
                $0.reads += 1
                $0.bytes += bytes
                if hit { $0.cacheHits += 1; $0.cacheHitBytes += bytes } else { $0.fileBytes += bytes }
            }
        }
        func retire(_ cache: BlockReadAhead.Statistics) {
            state.withLock {
                $0.readAheadBytes += cache.bytesRead
                $0.readAheadDropped += cache.granulesDropped
                $0.readAheadEvicted += cache.granulesEvicted
            }
        }
        func snapshot() -> ReadStatistics { state.withLock { $0 } }
    }

    /// Drops what a write changed from the read-ahead cache (after the write: see `invalidate`).
    private func invalidateCache(sector: UInt64, length: UInt64) {
        hook.withLock { $0?.cache.invalidate(offset: sector &* Self.sectorSize, length: length) }
    }

    // MARK: Configuration (struct virtio_blk_config)

    private var configurationImage: [UInt8] {
        var c: [UInt8] = []
        c.appendLittleEndian(capacitySectors)  // 0: capacity
        c.appendLittleEndian(UInt32(0))  // 8: size_max (not offered)
        c.appendLittleEndian(UInt32(Self.queueSize - 2))  // 12: seg_max: header and status take two
        c.appendLittleEndian(UInt32(0))  // 16: geometry
        c.appendLittleEndian(UInt32(Self.sectorSize))  // 20: blk_size
        c += [UInt8](repeating: 0, count: 8)  // 24: topology
        c += [0, 0]  // 32: writeback, unused
        c.appendLittleEndian(UInt16(1))  // 34: num_queues
        c.appendLittleEndian(Self.maximumRangeSectors)  // 36: max_discard_sectors
        c.appendLittleEndian(UInt32(1))  // 40: max_discard_seg
        c.appendLittleEndian(UInt32(1))  // 44: discard_sector_alignment
        c.appendLittleEndian(Self.maximumRangeSectors)  // 48: max_write_zeroes_sectors
        c.appendLittleEndian(UInt32(1))  // 52: max_write_zeroes_seg
        c.append(0)  // 56: write_zeroes_may_unmap
        while c.count < configurationSize { c.append(0) }
        return c
    }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        let image = configurationImage
        for i in data.indices { data[i] = offset + i < image.count ? image[offset + i] : 0 }
    }

    public func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {
        // Nothing here is writable without CONFIG_WCE, which is not offered.
    }

    public func reset() {}

    // MARK: Requests

    /// A read or write that passed every check, ready to merge with its neighbours.
    struct Transfer {
        let chain: DescriptorChain
        let write: Bool
        let sector: UInt64
        let length: UInt64
        let slices: [UnsafeMutableRawBufferPointer]
        let status: GuestAddress
        var sectors: UInt64 { length / VirtioBlock.sectorSize }
    }

    /// A merged transfer stays within these, as Linux's IOV_MAX and a sane request size.
    static let mergeLimitBytes: UInt64 = 4 << 20

    /// Serves everything the driver queued. Reads or writes that continue each other in the
    /// order the driver queued them run as one preadv/pwritev (QEMU merges the same way), and
    /// their used entries go out together, with one interrupt decision for the lot.
    public func process(queue index: Int, context: VirtioQueueContext) throws(VirtqueueError) {
        // The transfers waiting to run as one; the drain's batch ends (and the run with it)
        // whenever the queue is found empty.
        var run: [Transfer] = []
        try context.drain(queue: index) { chain, queue in
            guard let transfer = validTransfer(chain, queue: queue) else {
                // Anything else is served alone, after the run before it, in queue order.
                finish(run, queue: queue)
                run = []
                return .used(length: serve(chain, queue: queue))
            }
            if let last = run.last, !(last.write == transfer.write && last.sector + last.sectors == transfer.sector
                && run.reduce(transfer.length, { $0 + $1.length }) <= Self.mergeLimitBytes
                && run.reduce(transfer.slices.count, { $0 + $1.slices.count }) <= Self.iovecLimit) {
                finish(run, queue: queue)
                run = []
            }
            run.append(transfer)
            return .kept
        } endOfBatch: { queue in
            finish(run, queue: queue)
            run = []
        }
    }

    /// A read or write whose layout, size and range are valid; nil for anything else (served alone).
    private func validTransfer(_ chain: DescriptorChain, queue: Virtqueue) -> Transfer? {
        guard chain.readableLength >= 16, let statusBuffer = chain.writable.last, statusBuffer.length >= 1 else { return nil }
        let header = queue.gather(chain, count: 16)
        let write: Bool
        switch RequestType(rawValue: header.littleEndian(UInt32.self, at: 0)) {
        case .read: write = false
        case .write where !readOnly: write = true
        default: return nil
        }
        let sector = header.littleEndian(UInt64.self, at: 8)
        let buffers = write ? skipping(16, of: chain.readable) : trimmingStatus(chain.writable)
        let length = buffers.reduce(UInt64(0)) { $0 + UInt64($1.length) }
        guard isWithinDisk(sector: sector, length: length) else { return nil }
        return Transfer(chain: chain, write: write, sector: sector, length: length, slices: queue.hostSlices(buffers),
                        status: GuestAddress(statusBuffer.address.raw + UInt64(statusBuffer.length) - 1))
    }

    /// Runs a run of contiguous transfers as one, and completes each.
    private func finish(_ run: [Transfer], queue: Virtqueue) {
        guard let first = run.first else { return }
        if !first.write {
            // With a read hook: each read is observed (in queue order) and served from the
            // cache where it can be; the rest run as before.
            let misses = hook.withLock { current -> [Int]? in
                guard let current else { return nil }
                var misses: [Int] = []
                for (index, item) in run.enumerated() {
                    current.observer(item.sector * Self.sectorSize, item.length)
                    if current.cache.copy(offset: item.sector * Self.sectorSize, into: item.slices) {
                        counters.read(bytes: item.length, hit: true)
                        complete(item, status: .ok, queue: queue)
                    } else {
                        misses.append(index)
                    }
                }
                return misses
            }
            if let misses {
                for index in misses { finishUncached([run[index]], queue: queue) }
                return
            }
        }
        finishUncached(run, queue: queue)
    }

    private func finishUncached(_ run: [Transfer], queue: Virtqueue) {
        guard let first = run.first else { return }
        let length = run.reduce(UInt64(0)) { $0 + $1.length }
        let status = transfer(run.flatMap(\.slices), length: length, sector: first.sector, write: first.write)
        for item in run {
            // A merged transfer that failed is retried request by request, so one bad sector
            // does not fail its neighbours.
            let own = status == .ok || run.count == 1 ? status
                : transfer(item.slices, length: item.length, sector: item.sector, write: item.write)
            if !item.write { counters.read(bytes: item.length, hit: false) }
            complete(item, status: own, queue: queue)
        }
        // The run is contiguous: its span covers every write in it, done or failed half-way.
        if first.write { invalidateCache(sector: first.sector, length: length) }
    }

    private func complete(_ item: Transfer, status: Status, queue: Virtqueue) {
        queue.scatter([status.rawValue], at: item.status)
        let written = !item.write && status == .ok ? item.length : 0
        queue.pushUsed(head: item.chain.head, length: UInt32(truncatingIfNeeded: written + 1))
    }

    private func isWithinDisk(sector: UInt64, length: UInt64) -> Bool {
        guard length % Self.sectorSize == 0 else { return false }
        let (end, overflow) = sector.addingReportingOverflow(length / Self.sectorSize)
        return !overflow && end <= capacitySectors
    }

    /// Carries out one request; returns how many bytes it wrote into the chain.
    private func serve(_ chain: DescriptorChain, queue: Virtqueue) -> UInt32 {
        // The status byte is the last byte of the last writable buffer.
        guard chain.readableLength >= 16, let statusBuffer = chain.writable.last, statusBuffer.length >= 1 else {
            return 0  // no header or nowhere to put a status: nothing sensible to answer
        }
        let header = queue.gather(chain, count: 16)
        let type = header.littleEndian(UInt32.self, at: 0)
        let sector = header.littleEndian(UInt64.self, at: 8)

        var written: UInt64 = 0
        let status: Status
        switch RequestType(rawValue: type) {
        case .read:
            let buffers = trimmingStatus(chain.writable)
            let length = buffers.reduce(UInt64(0)) { $0 + UInt64($1.length) }
            status = transfer(queue.hostSlices(buffers), length: length, sector: sector, write: false)
            if status == .ok { written = length }
        case .write:
            let buffers = skipping(16, of: chain.readable)
            let length = buffers.reduce(UInt64(0)) { $0 + UInt64($1.length) }
            status = readOnly ? .ioError : transfer(queue.hostSlices(buffers), length: length, sector: sector, write: true)
            if !readOnly { invalidateCache(sector: sector, length: length) }
        case .flush:
            status = readOnly || fdatasync(fd) == 0 ? .ok : .ioError
        case .getID:
            let room = Int(min(chain.writableLength - 1, UInt64(Self.idBytes)))
            var id = Array(serial.prefix(room))
            id += [UInt8](repeating: 0, count: room - id.count)
            written = UInt64(queue.scatter(id, into: chain))
            status = .ok
        case .discard, .writeZeroes:
            let ranges = queue.gather(chain, skip: 16, count: Int(min(chain.readableLength - 16, 4096)))
            status = readOnly ? .ioError : zeroOrDiscard(ranges, zero: type == RequestType.writeZeroes.rawValue)
        case nil:
            status = .unsupported
        }
        let statusAddress = GuestAddress(statusBuffer.address.raw + UInt64(statusBuffer.length) - 1)
        queue.scatter([status.rawValue], at: statusAddress)
        return UInt32(truncatingIfNeeded: written + 1)
    }

    /// Serves a discard or write-zeroes payload: one {sector, sectors, flags} range, as advertised.
    private func zeroOrDiscard(_ payload: [UInt8], zero: Bool) -> Status {
        guard payload.count == Self.rangeSize else { return payload.isEmpty ? .ioError : .unsupported }
        let sector = payload.littleEndian(UInt64.self, at: 0)
        let count = payload.littleEndian(UInt32.self, at: 8)
        let flags = payload.littleEndian(UInt32.self, at: 12)
        // Only the unmap flag (bit 0) exists, and only for write-zeroes.
        guard flags & ~(zero ? 1 : 0) == 0 else { return .unsupported }
        guard count > 0, count <= Self.maximumRangeSectors else { return .ioError }
        let (end, overflow) = sector.addingReportingOverflow(UInt64(count))
        guard !overflow, end <= capacitySectors else { return .ioError }
        guard zero else { return .ok }
        // What is cached from here is stale once the zeroes land (or half of them do).
        defer { invalidateCache(sector: sector, length: UInt64(count) * Self.sectorSize) }
        let chunk = [UInt8](repeating: 0, count: 64 << 10)
        var offset = sector * Self.sectorSize
        var remaining = UInt64(count) * Self.sectorSize
        while remaining > 0 {
            let length = Int(min(remaining, UInt64(chunk.count)))
            let written = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, length, off_t(offset)) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return .ioError }
            offset += UInt64(written)
            remaining -= UInt64(written)
        }
        return .ok
    }

    /// The writable buffers without the final status byte.
    private func trimmingStatus(_ buffers: ArraySlice<VirtqueueBuffer>) -> [VirtqueueBuffer] {
        var list = Array(buffers)
        guard let last = list.popLast() else { return [] }
        if last.length > 1 { list.append(VirtqueueBuffer(address: last.address, length: last.length - 1, writable: true)) }
        return list
    }

    /// The readable buffers past the 16-byte request header.
    private func skipping(_ count: UInt64, of buffers: ArraySlice<VirtqueueBuffer>) -> [VirtqueueBuffer] {
        var toSkip = count
        var list: [VirtqueueBuffer] = []
        for buffer in buffers {
            if toSkip >= UInt64(buffer.length) { toSkip -= UInt64(buffer.length); continue }
            list.append(VirtqueueBuffer(address: GuestAddress(buffer.address.raw + toSkip),
                                        length: buffer.length - UInt32(toSkip), writable: buffer.writable))
            toSkip = 0
        }
        return list
    }

    private func transfer(_ slices: [UnsafeMutableRawBufferPointer], length: UInt64, sector: UInt64, write: Bool) -> Status {
        // Whole sectors only, and wholly inside the disk (sector + count checked for overflow).
        guard isWithinDisk(sector: sector, length: length) else { return .ioError }
        if !write, let directReader {
            return directReader.read(into: slices, offset: sector * Self.sectorSize) ? .ok : .ioError
        }
        var iovecs = slices.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        var offset = off_t(sector * Self.sectorSize)
        var remaining = Int(length)
        var first = 0
        while remaining > 0 {
            let vectorCount = Int32(min(iovecs.count - first, Self.iovecLimit))
            let count: Int = iovecs[first...].withUnsafeBufferPointer { vectors -> Int in
                write ? pwritev(fd, vectors.baseAddress, vectorCount, offset) : preadv(fd, vectors.baseAddress, vectorCount, offset)
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return .ioError }
            remaining -= count
            offset += off_t(count)
            // Advance past what a short transfer completed.
            var done = count
            while first < iovecs.count && done >= iovecs[first].iov_len {
                done -= iovecs[first].iov_len
                first += 1
            }
            if done > 0 {
                iovecs[first].iov_base = iovecs[first].iov_base.map { $0 + done }
                iovecs[first].iov_len -= done
            }
        }
        return .ok
    }
}
