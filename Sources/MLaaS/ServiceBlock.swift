import CMLaaS
import Hypervisor
import Platform

// The host table's `block` capability (malv_mlaas.h, "Block hooks"): a service watches the
// guest's reads of a disk it was granted and asks for read-ahead into the disk's cache. The VMM
// (VirtioBlock, BlockReadAhead) owns the I/O and the cache; this file only checks what a service
// asks against its grants and keeps which hooks it holds, so they end with the VM.

/// A block call's failure: the malv_mlaas_status the service gets.
struct BlockHookError: Error {
    let status: Int32
}

/// The read hooks one service holds, per VM and range.
final class BlockWatches: @unchecked Sendable {
    /// The cache's byte budget per watched disk: a read-ahead buffer a few hundred predictions
    /// deep, not a second page cache. A budget that held the dataset whole would turn any
    /// read-ahead, however wrong, into a cache of the dataset after one epoch (measured: with
    /// 64 MiB, sequential read-ahead "hit" 98 % of a shuffled 3 MiB MNIST), so what it measured
    /// would be the budget, not the prediction. 1 MiB also bounds what a service makes the VMM keep.
    static let cacheBytes: UInt64 = 1 << 20
    /// The most one read_ahead asks for.
    static let maxReadAheadBytes: UInt64 = 16 << 20

    private struct Watch {
        let grant: OpenGrant
        let device: VirtioBlock
        let cache: BlockReadAhead
    }

    private let lock = Monitor()
    private var watches: [UInt64: [UInt64: Watch]] = [:]
    /// Ranges whose hook `watch` is installing (range handles are unique across VMs).
    private var installing: Set<UInt64> = []

    /// A C observer and its cookie, as the device thread calls them.
    private struct Observer: @unchecked Sendable {
        let call: malv_mlaas_block_observer
        let cookie: UnsafeMutableRawPointer?
    }

    func watch(vm: UInt64, grant: OpenGrant, range: UInt64, observer: malv_mlaas_block_observer?,
               cookie: UnsafeMutableRawPointer?) -> Int32 {
        guard let observer else { return MALV_MLAAS_E_INVALID }
        guard let device = grant.grant.device else { return MALV_MLAAS_E_UNSUPPORTED }
        let target = Observer(call: observer, cookie: cookie)
        let start = grant.grant.offset, length = grant.grant.length
        // Claimed under the lock, installed outside it: the device calls observers under its own
        // lock, and an observer's read_ahead takes this one, so this must not wait for the device
        // while holding it.
        let claimed = lock.withLock { () -> Bool in
            guard watches[vm]?[range] == nil, !installing.contains(range) else { return false }
            installing.insert(range)
            return true
        }
        guard claimed else { return MALV_MLAAS_E_INVALID }
        defer { lock.withLock { _ = installing.remove(range) } }
        let cache: BlockReadAhead
        do {
            cache = try device.watchReads(cacheBytes: Self.cacheBytes) { offset, bytes in
                // Only what falls inside the grant, relative to it.
                let from = max(offset, start), to = min(offset &+ bytes, start &+ length)
                guard from < to else { return }
                target.call(target.cookie, range, from - start, to - from)
            }
        } catch { return MALV_MLAAS_E_INVALID }  // another hook on this disk
        lock.withLock { watches[vm, default: [:]][range] = Watch(grant: grant, device: device, cache: cache) }
        return MALV_MLAAS_OK
    }

    func unwatch(vm: UInt64, range: UInt64) {
        let watch = lock.withLock { watches[vm]?.removeValue(forKey: range) }
        // Outside the lock: this waits for an observer call in progress, which may be asking
        // for read-ahead (and so for this lock).
        if let watch { watch.device.unwatchReads(watch.cache) }
    }

    func unwatchAll(vm: UInt64) {
        let all = lock.withLock { watches.removeValue(forKey: vm) ?? [:] }
        for watch in all.values { watch.device.unwatchReads(watch.cache) }
    }

    /// Queues bytes `offset ..< offset + length` of a watched range for read-ahead, after checking
    /// them against the grant.
    func readAhead(vm: UInt64, range: UInt64, offset: UInt64, length: UInt64) -> Int32 {
        guard let watch = lock.withLock({ watches[vm]?[range] }) else { return MALV_MLAAS_E_INVALID }
        let granted = watch.grant.grant
        guard length <= Self.maxReadAheadBytes, offset <= granted.length, length <= granted.length - offset else {
            return MALV_MLAAS_E_RANGE
        }
        guard length > 0 else { return MALV_MLAAS_OK }
        switch watch.cache.request(offset: granted.offset + offset, length: length) {
        case .queued: return MALV_MLAAS_OK
        case .full: return MALV_MLAAS_E_NO_MEMORY
        }
    }
}

/// The `malv_mlaas_block` table every host table points at.
enum ServiceBlockTable {
    nonisolated(unsafe) static let shared: UnsafeMutablePointer<malv_mlaas_block> = {
        let table = UnsafeMutablePointer<malv_mlaas_block>.allocate(capacity: 1)
        table.initialize(to: malv_mlaas_block())
        table.pointee.struct_size = UInt32(MemoryLayout<malv_mlaas_block>.size)
        table.pointee.version = UInt32(MALV_MLAAS_BLOCK_VERSION)
        table.pointee.cache_bytes = BlockWatches.cacheBytes
        table.pointee.granule_bytes = BlockReadAhead.granuleBytes
        table.pointee.max_read_ahead_bytes = BlockWatches.maxReadAheadBytes
        table.pointee.watch = { context, vm, range, observer, cookie in
            guard let host = HostContext.from(context), observer != nil else { return MALV_MLAAS_E_INVALID }
            let grant: OpenGrant
            switch host.grant(vm: vm, range: range) {
            case let .success(found): grant = found
            case let .failure(error): return error.status
            }
            let status = host.blockWatches.watch(vm: vm, grant: grant, range: range, observer: observer, cookie: cookie)
            // Detached while the hook was going in: take it out again.
            if status == MALV_MLAAS_OK, case .failure = host.grant(vm: vm, range: range) {
                host.blockWatches.unwatch(vm: vm, range: range)
                return MALV_MLAAS_E_DETACHED
            }
            return status
        }
        table.pointee.unwatch = { context, vm, range in
            HostContext.from(context)?.blockWatches.unwatch(vm: vm, range: range)
        }
        table.pointee.read_ahead = { context, vm, range, offset, length in
            guard let host = HostContext.from(context) else { return MALV_MLAAS_E_INVALID }
            if case let .failure(error) = host.grant(vm: vm, range: range) { return error.status }
            return host.blockWatches.readAhead(vm: vm, range: range, offset: offset, length: length)
        }
        return table
    }()
}
