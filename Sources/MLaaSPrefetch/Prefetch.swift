import CMLaaS
import MLaaSServiceSupport
import Synchronization

// The `prefetch` service (ml-for-os), built as libprefetch.so (docs/mlaas.md): read-ahead in
// virtio-blk for a guest that reads its dataset in shuffled order. It watches the guest's reads
// of one granted disk through the host table's `block` capability, learns a Markov chain of
// order K over the reads (as Lynx does: a training loop with a fixed seed reads the same shuffle
// every epoch, so the chain learns it in one) and asks the host to read the next `window`
// predicted reads ahead into the disk's cache, which virtio-blk serves them from. Policy
// `sequential` predicts the next reads to follow on the disk instead: the static baseline, on
// the same path. The host owns the I/O and the cache; this module only names byte ranges.
//
// Attaching starts it on disk 0 with the defaults (what `malvvm run --mlaas prefetch` gives);
// configure (a guest's enable, `--mlaas-config prefetch:…`) changes the parameters
// (Parameters.swift) and starts a new chain; disable stops watching.

/// The service-wide state: the host table.
final class PrefetchService {
    let host: UnsafePointer<malv_mlaas_host>
    init(host: UnsafePointer<malv_mlaas_host>) { self.host = host }

    var block: UnsafePointer<malv_mlaas_block>? { blockCapability(of: host) }

    func log(_ level: malv_mlaas_log_level, _ message: String) { hostLog(host, level, message) }
}

/// One VM's read-ahead: its parameters, its chain and what it asked of the host.
final class PrefetchVM: @unchecked Sendable {
    let service: PrefetchService
    let handle: UInt64
    let name: String
    /// The granted ranges (copied: the host's array lives only during attach), by disk index.
    let ranges: [malv_mlaas_disk_range]

    struct Model {
        var parameters = PrefetchParameters()
        var chain = MarkovChain(order: 2, capacity: 65536)
        var last: ReadID?
        /// The range being watched, if any.
        var watching: UInt64?
        var reads: UInt64 = 0
        var asked: UInt64 = 0
        var refused: UInt64 = 0
    }

    /// The observer (the disk's device thread) and configure (another thread) share it. Never
    /// held across a call into the host's block hooks' watch or unwatch (they wait for observer
    /// calls, which wait for this).
    let model = Mutex(Model())

    init(service: PrefetchService, vm: UnsafePointer<malv_mlaas_vm>) {
        self.service = service
        handle = vm.pointee.handle
        name = vm.pointee.name.map { String(cString: $0) } ?? "?"
        ranges = (0 ..< Int(vm.pointee.disk_range_count)).compactMap { vm.pointee.disk_ranges?[$0] }
    }

    func range(disk: Int) -> malv_mlaas_disk_range? { ranges.first { $0.disk_index == UInt32(disk) } }

    /// Applies new parameters (a new, empty chain) and watches their disk; nil, or why not.
    func apply(_ parameters: PrefetchParameters) -> String? {
        guard let block = service.block else { return "this host offers no block hooks (malv_mlaas_block)" }
        guard let target = range(disk: parameters.disk) else { return "disk \(parameters.disk) is not granted to this service" }
        let previous = model.withLock { model -> UInt64? in
            model.parameters = parameters
            model.chain = MarkovChain(order: parameters.order, capacity: parameters.table)
            model.last = nil
            defer { model.watching = nil }
            return model.watching
        }
        if let previous { block.pointee.unwatch?(service.host.pointee.host_context, handle, previous) }
        let cookie = Unmanaged.passUnretained(self).toOpaque()
        let status = block.pointee.watch?(service.host.pointee.host_context, handle, target.handle, { cookie, range, offset, length in
            guard let cookie else { return }
            Unmanaged<PrefetchVM>.fromOpaque(cookie).takeUnretainedValue().observe(range: range, offset: offset, length: length)
        }, cookie) ?? MALV_MLAAS_E_UNSUPPORTED
        guard status == MALV_MLAAS_OK else {
            return "cannot watch disk \(parameters.disk): \(String(cString: malv_mlaas_status_string(status)))"
        }
        model.withLock { $0.watching = target.handle }
        return nil
    }

    func stopWatching() {
        let previous = model.withLock { model -> UInt64? in
            defer { model.watching = nil }
            return model.watching
        }
        if let previous, let block = service.block { block.pointee.unwatch?(service.host.pointee.host_context, handle, previous) }
    }

    /// A guest read of the watched range: learn it, predict what follows, ask for read-ahead.
    func observe(range: UInt64, offset: UInt64, length: UInt64) {
        let (asks, rangeLength): ([(UInt64, UInt64)], UInt64) = model.withLock { model in
            guard model.watching == range, let granted = ranges.first(where: { $0.handle == range }) else { return ([], 0) }
            let parameters = model.parameters
            let blockBytes = UInt64(parameters.block)
            let read = ReadID(block: offset / blockBytes, length: length)
            model.reads += 1
            // A read of the same place again (a retry, a second request for one record) says
            // nothing new about the order.
            guard read != model.last else { return ([], granted.length) }
            model.last = read
            switch parameters.policy {
            case .markov:
                model.chain.observe(read)
                // A predicted read starts somewhere in its block, on a sector (reads are whole sectors).
                return (model.chain.predict(parameters.window).map { ($0.block * blockBytes, $0.length + blockBytes - 512) }, granted.length)
            case .sequential:
                return ((1 ... UInt64(parameters.window)).map { (offset + $0 * length, length) }, granted.length)
            }
        }
        guard !asks.isEmpty, let block = service.block, let readAhead = block.pointee.read_ahead else { return }
        var asked: UInt64 = 0, refused: UInt64 = 0
        for (start, bytes) in asks where start < rangeLength {
            let status = readAhead(service.host.pointee.host_context, handle, range, start, min(bytes, rangeLength - start))
            if status == MALV_MLAAS_OK { asked += 1 } else { refused += 1 }
        }
        model.withLock {
            $0.asked += asked
            $0.refused += refused
        }
    }
}

nonisolated(unsafe) private let descriptor: UnsafeMutablePointer<malv_mlaas_service> = {
    let d = makeServiceDescriptor(kind: MALV_MLAAS_KIND_ML_FOR_OS, name: "prefetch", version: "0.2.0",
                                  description: "Markov-chain read-ahead for virtio-blk (policy=markov|sequential, order, window)")
    d.pointee.initialize = { host, serviceState in
        guard let host, let serviceState else { return MALV_MLAAS_E_INVALID }
        guard hostSpeaksThisABI(host) else { return MALV_MLAAS_E_VERSION }
        serviceState.pointee = Unmanaged.passRetained(PrefetchService(host: host)).toOpaque()
        return MALV_MLAAS_OK
    }
    d.pointee.attach = { serviceState, vm, vmState in
        guard let serviceState, let vm, let vmState, vm.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_vm>.size) else {
            return MALV_MLAAS_E_INVALID
        }
        let service = Unmanaged<PrefetchService>.fromOpaque(serviceState).takeUnretainedValue()
        let state = PrefetchVM(service: service, vm: vm)
        vmState.pointee = Unmanaged.passRetained(state).toOpaque()
        // Selecting the service starts it with the defaults; a VM with nothing to watch (no disk,
        // a host without devices behind its grants) stays attached and reads go on uncached.
        if !state.ranges.isEmpty, let problem = state.apply(PrefetchParameters()) {
            service.log(MALV_MLAAS_LOG_WARNING, "VM '\(state.name)': not reading ahead: \(problem)")
        }
        return MALV_MLAAS_OK
    }
    d.pointee.configure = { _, vmState, parameters, length, errorBuffer, capacity in
        guard let vmState, length <= 256, parameters != nil || length == 0 else {
            writeError("parameters must be at most 256 bytes", errorBuffer, capacity)
            return MALV_MLAAS_E_INVALID
        }
        let bytes = parameters.map { UnsafeRawBufferPointer(start: $0, count: Int(length)) } ?? UnsafeRawBufferPointer(start: nil, count: 0)
        let vm = Unmanaged<PrefetchVM>.fromOpaque(vmState).takeUnretainedValue()
        switch PrefetchParameters.parse(String(decoding: bytes, as: UTF8.self), disks: vm.ranges.count) {
        case let .failure(error):
            writeError(error.message, errorBuffer, capacity)
            return MALV_MLAAS_E_INVALID
        case let .success(parsed):
            if let problem = vm.apply(parsed) {
                writeError(problem, errorBuffer, capacity)
                return MALV_MLAAS_E_UNSUPPORTED
            }
            return MALV_MLAAS_OK
        }
    }
    d.pointee.disable = { _, vmState in
        guard let vmState else { return }
        Unmanaged<PrefetchVM>.fromOpaque(vmState).takeUnretainedValue().stopWatching()
    }
    d.pointee.detach = { _, vmState in
        guard let vmState else { return }
        let vm = Unmanaged<PrefetchVM>.fromOpaque(vmState)
        let state = vm.takeUnretainedValue()
        // The host ended the VM's hooks before this call; this ends any it did not know of.
        state.stopWatching()
        let model = state.model.withLock { ($0.reads, $0.asked, $0.refused, $0.chain.stateCount) }
        state.service.log(MALV_MLAAS_LOG_INFO,
                          "VM '\(state.name)': \(model.0) reads seen, \(model.1) read-aheads asked, \(model.2) refused, \(model.3) chain states")
        vm.release()
    }
    d.pointee.unload = { serviceState in
        if let serviceState { Unmanaged<PrefetchService>.fromOpaque(serviceState).release() }
    }
    return d
}()

@_cdecl("malv_mlaas_service_v1")
public func malvMLaaSServiceV1() -> UnsafePointer<malv_mlaas_service> {
    UnsafePointer(descriptor)
}
