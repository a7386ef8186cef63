import Glibc
import Synchronization
import Testing
import VirtioTestSupport
@testable import Hypervisor

/// The read-ahead cache behind MLaaS's block hooks, and virtio-blk's read hook and direct reads.
@Suite struct BlockReadAheadTests {
    /// A disk whose byte i is i * 7 + i / 4096 (every granule differs).
    static func patterned(sectors: Int) -> VirtioBlockTests.Disk {
        let disk = VirtioBlockTests.Disk(sectors: sectors)
        let bytes = (0 ..< sectors * 512).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 / 4096) }
        let fd = open(disk.path, O_WRONLY)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        close(fd)
        return disk
    }

    /// Polls (bounded) until `condition` holds.
    static func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0 ..< 500 {
            if condition() { return true }
            usleep(2000)
        }
        return condition()
    }

    func copy(_ cache: BlockReadAhead, offset: UInt64, count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBytes { cache.copy(offset: offset, into: [$0]) }
        return ok ? out : nil
    }

    @Test(arguments: [false, true]) func readsAheadThenServesWhatItCovers(direct: Bool) throws {
        let disk = Self.patterned(sectors: 64)  // 32 KiB: 8 granules
        let cache = try BlockReadAhead(path: disk.path, diskBytes: 32768, direct: direct, budgetBytes: 1 << 20)
        defer { cache.stop() }
        #expect(copy(cache, offset: 4096, count: 512) == nil)  // nothing read ahead yet
        #expect(cache.request(offset: 5000, length: 4000) == .queued)  // granules 1 and 2
        #expect(Self.eventually { cache.statistics.granulesRead == 2 })
        #expect(copy(cache, offset: 4096, count: 8192) == disk.bytes(at: 4096, count: 8192))
        #expect(copy(cache, offset: 6000, count: 100) == disk.bytes(at: 6000, count: 100))
        #expect(copy(cache, offset: 8000, count: 4400) == nil)  // reaches granule 3
        // Asking again reads nothing again.
        #expect(cache.request(offset: 4096, length: 8192) == .queued)
        usleep(20000)
        #expect(cache.statistics.granulesRead == 2 && cache.statistics.bytesRead == 8192)
    }

    @Test func keepsToItsBudgetOldestFirst() throws {
        let disk = Self.patterned(sectors: 64)
        let cache = try BlockReadAhead(path: disk.path, diskBytes: 32768, direct: false, budgetBytes: 8192)
        defer { cache.stop() }
        _ = cache.request(offset: 0, length: 16384)  // four granules into room for two
        #expect(Self.eventually { cache.statistics.granulesRead == 4 })
        #expect(cache.statistics.granulesEvicted == 2)
        #expect(copy(cache, offset: 0, count: 512) == nil)
        #expect(copy(cache, offset: 8192, count: 8192) == disk.bytes(at: 8192, count: 8192))
        #expect(throws: HypervisorError.self) { try BlockReadAhead(path: disk.path, diskBytes: 32768, direct: false, budgetBytes: 100) }
    }

    @Test func aWriteDropsWhatItOverlaps() throws {
        let disk = Self.patterned(sectors: 64)
        let cache = try BlockReadAhead(path: disk.path, diskBytes: 32768, direct: false, budgetBytes: 1 << 20)
        defer { cache.stop() }
        _ = cache.request(offset: 0, length: 12288)
        #expect(Self.eventually { cache.statistics.granulesRead == 3 })
        cache.invalidate(offset: 4100, length: 10)
        #expect(copy(cache, offset: 4096, count: 1) == nil)
        #expect(copy(cache, offset: 0, count: 4096) != nil && copy(cache, offset: 8192, count: 4096) != nil)
        #expect(cache.statistics.granulesInvalidated == 1)
    }

    @Test func aFullQueueDropsRequests() throws {
        // A disk of more granules than the queue holds, asked for at once.
        let granules = BlockReadAhead.queueLimit + 100
        let disk = VirtioBlockTests.Disk(sectors: granules * 8)
        let cache = try BlockReadAhead(path: disk.path, diskBytes: UInt64(granules) * 4096, direct: false, budgetBytes: 4096)
        defer { cache.stop() }
        #expect(cache.request(offset: 0, length: UInt64(granules) * 4096) == .full)
        #expect(cache.statistics.granulesDropped > 0)
    }
}

/// virtio-blk with a read hook: reads observed in order, served from the cache, writes invalidate.
extension VirtioBlockTests {
    @Test func aReadHookSeesReadsAndItsCacheServesThem() throws {
        let disk = BlockReadAheadTests.patterned(sectors: 64)
        let device = try VirtioBlock(path: disk.path, readOnly: false, direct: true)
        var ring = try TestRing(size: 64)
        let seen = Mutex<[(UInt64, UInt64)]>([])
        let cache = try device.watchReads(cacheBytes: 1 << 20) { offset, length in seen.withLock { $0.append((offset, length)) } }
        #expect(throws: HypervisorError.self) { _ = try device.watchReads(cacheBytes: 1 << 20) { _, _ in } }

        // A miss (read from the file, O_DIRECT), then the same read once read ahead: a hit.
        #expect(try request(device, ring: &ring, type: 0, sector: 9, length: 1024, dataWritable: true) == (0, 1025))
        #expect(try ring.memory.read(1024, at: Self.data) == disk.bytes(at: 9 * 512, count: 1024))
        _ = cache.request(offset: 4096, length: 4096)
        #expect(BlockReadAheadTests.eventually { cache.statistics.granulesRead == 1 })
        try ring.memory.fill(0, at: Self.data, length: 1024)
        #expect(try request(device, ring: &ring, type: 0, sector: 9, length: 1024, dataWritable: true) == (0, 1025))
        #expect(try ring.memory.read(1024, at: Self.data) == disk.bytes(at: 9 * 512, count: 1024))
        #expect(seen.withLock { $0.map { [$0.0, $0.1] } } == [[4608, 1024], [4608, 1024]])
        var statistics = device.readStatistics
        #expect(statistics.reads == 2 && statistics.cacheHits == 1 && statistics.fileBytes == 1024 && statistics.readAheadBytes == 4096)

        // A write drops the granule: the next read sees the new bytes, from the file.
        let pattern = [UInt8](repeating: 0x5a, count: 512)
        try ring.memory.write(pattern, at: Self.data)
        #expect(try request(device, ring: &ring, type: 1, sector: 10, length: 512, dataWritable: false) == (0, 1))
        #expect(try request(device, ring: &ring, type: 0, sector: 9, length: 1024, dataWritable: true) == (0, 1025))
        #expect(try ring.memory.read(512, at: GuestAddress(Self.data.raw + 512)) == pattern)
        statistics = device.readStatistics
        #expect(statistics.reads == 3 && statistics.cacheHits == 1)

        // Unhooked: reads go on, uncounted as hits, unobserved; a new hook may come.
        device.unwatchReads(cache)
        #expect(try request(device, ring: &ring, type: 0, sector: 9, length: 1024, dataWritable: true) == (0, 1025))
        #expect(seen.withLock { $0.count } == 3)
        #expect(device.readStatistics.reads == 4 && device.readStatistics.readAheadBytes == 4096)
        let again = try device.watchReads(cacheBytes: 1 << 20) { _, _ in }
        device.unwatchReads(again)
    }
}
