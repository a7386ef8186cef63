import Glibc
import Platform

/// A bounded host-side cache of one disk's bytes that a background thread fills ahead of the
/// guest's reads, and virtio-blk serves later reads from (the read-ahead of MLaaS's `prefetch`,
/// docs/mlaas.md). Whoever asks for read-ahead names byte ranges; the cache owns the I/O (its
/// own read-only descriptor of the backing file, O_DIRECT when the disk is `direct`) and the
/// memory: a fixed byte budget, the oldest granule evicted first.
///
/// The unit is a granule: `granuleBytes` aligned bytes of the disk (the last may be short). A
/// guest read is served from the cache only when every granule it touches is there; a write
/// drops every granule it overlaps (`invalidate`), including one being read at that moment.
public final class BlockReadAhead: @unchecked Sendable {
    public static let granuleBytes: UInt64 = 4096
    /// Granules waiting to be read; a request beyond it is dropped (a predictor that runs far
    /// ahead of the disk should not grow the host's memory).
    public static let queueLimit = 4096

    public let budgetBytes: UInt64
    public let diskBytes: UInt64

    public struct Statistics: Sendable, Equatable {
        /// Granules read from the backing file ahead of the guest, and their bytes.
        public var granulesRead: UInt64 = 0
        public var bytesRead: UInt64 = 0
        /// Granules asked for but not queued (the queue was full).
        public var granulesDropped: UInt64 = 0
        /// Granules evicted for room, and dropped by a guest write.
        public var granulesEvicted: UInt64 = 0
        public var granulesInvalidated: UInt64 = 0
    }

    private let fd: Int32
    private let directReader: DirectReader?
    private let monitor = Monitor()
    private let wake: Monitor.Condition
    private var chunks: [UInt64: [UInt8]] = [:]
    private var cachedBytes: UInt64 = 0
    /// Granules in the order they were cached (entries no longer cached are skipped).
    private var age: [UInt64] = []
    private var ageHead = 0
    private var queue: [UInt64] = []
    private var queueHead = 0
    private var queued: Set<UInt64> = []
    private var inFlight: UInt64?
    private var inFlightInvalidated = false
    private var stopping = false
    private var counts = Statistics()
    private var thread: NativeThread?

    /// A cache of `path` (`diskBytes` long) holding at most `budgetBytes`, read with O_DIRECT
    /// when `direct`; its thread starts at once.
    public init(path: String, diskBytes: UInt64, direct: Bool, budgetBytes: UInt64) throws(HypervisorError) {
        guard budgetBytes >= Self.granuleBytes else {
            throw .configuration("a read-ahead cache needs at least \(Self.granuleBytes) bytes, not \(budgetBytes)")
        }
        let opened: Int32? = direct ? DirectReader.open(path: path) : { () -> Int32? in
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            return fd >= 0 ? fd : nil
        }()
        guard let fd = opened else {
            throw .configuration("cannot open disk '\(path)' for read-ahead: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        directReader = direct ? DirectReader(fd: fd, capacity: Int(Self.granuleBytes)) : nil
        self.budgetBytes = budgetBytes
        self.diskBytes = diskBytes
        wake = monitor.makeCondition()
        // A throw from here on runs deinit, which closes the descriptor.
        do {
            thread = try NativeThread(name: "blk-readahead") { [unowned self] in self.work() }
        } catch {
            throw .configuration(error.description)
        }
    }

    deinit {
        stop()
        close(fd)
    }

    /// Ends the thread (the read in flight finishes first). Idempotent.
    public func stop() {
        let worker = monitor.withLock { () -> NativeThread? in
            stopping = true
            wake.broadcast()
            defer { thread = nil }
            return thread
        }
        worker?.join()
    }

    public var statistics: Statistics { monitor.withLock { counts } }

    public enum RequestOutcome: Sendable, Equatable {
        /// Every granule is cached, queued or in flight now.
        case queued
        /// The queue was full: some granules were dropped.
        case full
    }

    /// Queues the granules covering `offset ..< offset + length` that are neither cached nor
    /// queued. The caller checked the range against what it may read; beyond the disk is cut.
    public func request(offset: UInt64, length: UInt64) -> RequestOutcome {
        guard length > 0, offset < diskBytes else { return .queued }
        let end = min(diskBytes, offset + min(length, diskBytes - offset))
        let first = offset / Self.granuleBytes, last = (end - 1) / Self.granuleBytes
        return monitor.withLock {
            var outcome = RequestOutcome.queued
            for granule in first ... last where chunks[granule] == nil && inFlight != granule && !queued.contains(granule) {
                guard queue.count - queueHead < Self.queueLimit else {
                    counts.granulesDropped += 1
                    outcome = .full
                    continue
                }
                queue.append(granule)
                queued.insert(granule)
            }
            if queue.count > queueHead { wake.signal() }
            return outcome
        }
    }

    /// Copies bytes `offset ..< offset + total length of slices` into `slices` if every granule
    /// they touch is cached; false (nothing copied) otherwise.
    public func copy(offset: UInt64, into slices: [UnsafeMutableRawBufferPointer]) -> Bool {
        let length = slices.reduce(UInt64(0)) { $0 + UInt64($1.count) }
        guard length > 0, offset < diskBytes, length <= diskBytes - offset else { return false }
        return monitor.withLock {
            let first = offset / Self.granuleBytes, last = (offset + length - 1) / Self.granuleBytes
            for granule in first ... last where chunks[granule] == nil { return false }
            var position = offset
            for slice in slices where slice.count > 0 {
                var done = 0
                while done < slice.count {
                    let granule = position / Self.granuleBytes
                    let within = Int(position - granule * Self.granuleBytes)
                    let chunk = chunks[granule]!
                    let count = min(slice.count - done, chunk.count - within)
                    chunk.withUnsafeBytes { (slice.baseAddress! + done).copyMemory(from: $0.baseAddress! + within, byteCount: count) }
                    done += count
                    position += UInt64(count)
                }
            }
            return true
        }
    }

    /// Drops every cached or in-flight granule overlapping `offset ..< offset + length` (the
    /// guest wrote there; call it after the write, so a read that raced it is not kept).
    public func invalidate(offset: UInt64, length: UInt64) {
        guard length > 0 else { return }
        let first = offset / Self.granuleBytes
        let last = (offset &+ length &- 1) / Self.granuleBytes
        monitor.withLock {
            if let granule = inFlight, (first ... last).contains(granule) { inFlightInvalidated = true }
            // Visit whichever is smaller: the written granules or the cache.
            let dropped: [UInt64] = last - first < UInt64(chunks.count)
                ? (first ... last).filter { chunks[$0] != nil }
                : chunks.keys.filter { (first ... last).contains($0) }
            for granule in dropped {
                cachedBytes -= UInt64(chunks.removeValue(forKey: granule)!.count)
                counts.granulesInvalidated += 1
            }
        }
    }

    private func work() {
        while true {
            monitor.lock()
            while queueHead == queue.count && !stopping { wake.wait() }
            if stopping {
                monitor.unlock()
                return
            }
            let granule = queue[queueHead]
            queueHead += 1
            if queueHead == queue.count {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
            }
            queued.remove(granule)
            inFlight = granule
            inFlightInvalidated = false
            monitor.unlock()

            let offset = granule * Self.granuleBytes
            let length = Int(min(Self.granuleBytes, diskBytes - offset))
            var bytes = [UInt8](repeating: 0, count: length)
            let ok = bytes.withUnsafeMutableBytes { buffer in readFile(into: buffer.baseAddress!, offset: offset, length: length) }

            monitor.withLock {
                inFlight = nil
                guard ok, !inFlightInvalidated, chunks[granule] == nil else { return }
                counts.granulesRead += 1
                counts.bytesRead += UInt64(length)
                while cachedBytes + UInt64(length) > budgetBytes && evictOldest() {}
                chunks[granule] = bytes
                cachedBytes += UInt64(length)
                age.append(granule)
            }
        }
    }

    /// Evicts the oldest cached granule; false when nothing is cached. Called with the lock held.
    private func evictOldest() -> Bool {
        while ageHead < age.count {
            let granule = age[ageHead]
            ageHead += 1
            if let chunk = chunks.removeValue(forKey: granule) {
                cachedBytes -= UInt64(chunk.count)
                counts.granulesEvicted += 1
                compactAge()
                return true
            }
        }
        compactAge()
        return false
    }

    private func compactAge() {
        if ageHead > 4096 && ageHead * 2 > age.count {
            age.removeFirst(ageHead)
            ageHead = 0
        }
    }

    private func readFile(into buffer: UnsafeMutableRawPointer, offset: UInt64, length: Int) -> Bool {
        if let directReader { return directReader.read(into: buffer, offset: offset, length: length) }
        var done = 0
        while done < length {
            let count = pread(fd, buffer + done, length - done, off_t(offset) + off_t(done))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            done += count
        }
        return true
    }
}
