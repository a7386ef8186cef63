import CMLaaS
import MLaaSServiceSupport

// The `prefetch` service (ml-for-os), built as libprefetch.so (docs/mlaas.md).
//
// What it will do (issue #17, a later slice): learn a Markov chain over the VM's virtio-blk
// reads (as Lynx does) and read ahead what the chain predicts, for a guest that reads its
// dataset in shuffled order; measured against no read-ahead and sequential read-ahead.
//
// What it does in THIS slice: a skeleton. It has the C ABI's lifecycle and per-VM state and
// validates its parameters; it observes no reads and prefetches nothing, because the
// virtio-blk hook it needs (the host table's reserved_block_hooks) does not exist yet.
//
// Parameters (configure), ASCII, comma-separated key=value, all optional:
//   disk=N     the VM's disk to watch (default 0; must be granted)
//   order=K    the Markov chain's order, 1-4 (default 1)
//   window=W   blocks read ahead per prediction, 1-1024 (default 8)

final class PrefetchVM {
    let disks: Int
    var disk = 0, order = 1, window = 8
    init(disks: Int) { self.disks = disks }
}

/// Parses the parameters into `vm`, or returns why not.
func configure(_ vm: PrefetchVM, _ text: String) -> String? {
    var disk = 0, order = 1, window = 8
    var seen = Set<Substring>()
    for item in text.split(separator: ",") {
        let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, seen.insert(parts[0]).inserted else { return "'\(item)' is not a new key=value" }
        guard let value = Int(parts[1]) else { return "\(parts[0]) must be an integer" }
        switch parts[0] {
        case "disk": disk = value
        case "order": order = value
        case "window": window = value
        default: return "unknown key '\(parts[0])' (known: disk, order, window)"
        }
    }
    guard (0 ..< vm.disks).contains(disk) else { return "disk \(disk) is not granted to this service (the VM has \(vm.disks))" }
    guard (1 ... 4).contains(order) else { return "order must be 1...4" }
    guard (1 ... 1024).contains(window) else { return "window must be 1...1024" }
    (vm.disk, vm.order, vm.window) = (disk, order, window)
    return nil
}

nonisolated(unsafe) private let descriptor: UnsafeMutablePointer<malv_mlaas_service> = {
    let d = makeServiceDescriptor(kind: MALV_MLAAS_KIND_ML_FOR_OS, name: "prefetch", version: "0.1.0",
                                  description: "Markov-chain read-ahead for virtio-blk (this slice: a skeleton that validates its parameters)")
    d.pointee.initialize = { host, serviceState in
        guard let host, let serviceState else { return MALV_MLAAS_E_INVALID }
        guard hostSpeaksThisABI(host) else { return MALV_MLAAS_E_VERSION }
        serviceState.pointee = nil  // nothing service-wide yet
        return MALV_MLAAS_OK
    }
    d.pointee.attach = { _, vm, vmState in
        guard let vm, let vmState, vm.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_vm>.size) else { return MALV_MLAAS_E_INVALID }
        vmState.pointee = Unmanaged.passRetained(PrefetchVM(disks: Int(vm.pointee.disk_range_count))).toOpaque()
        return MALV_MLAAS_OK
    }
    d.pointee.configure = { _, vmState, parameters, length, errorBuffer, capacity in
        guard let vmState, length <= 256, parameters != nil || length == 0 else {
            writeError("parameters must be at most 256 bytes", errorBuffer, capacity)
            return MALV_MLAAS_E_INVALID
        }
        let bytes = parameters.map { UnsafeRawBufferPointer(start: $0, count: Int(length)) } ?? UnsafeRawBufferPointer(start: nil, count: 0)
        let vm = Unmanaged<PrefetchVM>.fromOpaque(vmState).takeUnretainedValue()
        if let problem = configure(vm, String(decoding: bytes, as: UTF8.self)) {
            writeError(problem, errorBuffer, capacity)
            return MALV_MLAAS_E_INVALID
        }
        return MALV_MLAAS_OK
    }
    d.pointee.detach = { _, vmState in
        if let vmState { Unmanaged<PrefetchVM>.fromOpaque(vmState).release() }
    }
    d.pointee.unload = { _ in }
    return d
}()

@_cdecl("malv_mlaas_service_v1")
public func malvMLaaSServiceV1() -> UnsafePointer<malv_mlaas_service> {
    UnsafePointer(descriptor)
}
