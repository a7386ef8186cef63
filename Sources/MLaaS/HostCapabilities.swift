import CMLaaS
import Glibc
import Hypervisor
import Logging
import Platform

/// A byte range of one of a VM's disks that a service may read (read-only, through the host's
/// `read_range`). A VM's disks are granted whole, read-only: a service reads only the disks of
/// the VM it serves, and only through `read_range`'s bounds checks.
public struct DiskGrant: Sendable, Equatable {
    /// The disk's position among the VM's virtio-blk disks (0 for the first --disk).
    public var diskIndex: Int
    /// The disk's backing file (or block device).
    public var path: String
    public var offset: UInt64
    public var length: UInt64
    /// The VM's virtio-blk device for this disk, where it runs in this process: what the block
    /// hooks (`watch`, `read_ahead`) reach. nil: the grant is readable, not watchable.
    public var device: VirtioBlock?

    public init(diskIndex: Int, path: String, offset: UInt64, length: UInt64, device: VirtioBlock? = nil) {
        self.diskIndex = diskIndex
        self.path = path
        self.offset = offset
        self.length = length
        self.device = device
    }

    public static func == (a: DiskGrant, b: DiskGrant) -> Bool {
        a.diskIndex == b.diskIndex && a.path == b.path && a.offset == b.offset && a.length == b.length && a.device === b.device
    }
}

/// A VM as services see it: its name and the disk ranges they may read.
public struct VMDescription: Sendable, Equatable {
    public var name: String
    public var disks: [DiskGrant]

    public init(name: String, disks: [DiskGrant] = []) {
        self.name = name
        self.disks = disks
    }

    /// A VM whose disks (backing files in --disk order) are each granted whole; `devices`, where
    /// given, are their virtio-blk devices in the same order (for the block hooks).
    public static func grantingWholeDisks(name: String, paths: [String], devices: [VirtioBlock] = []) throws(MLaaSError) -> VMDescription {
        var grants: [DiskGrant] = []
        for (index, path) in paths.enumerated() {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw .badGrant("cannot open disk \(index) '\(path)' for services: \(ModuleDirectory.errnoString())") }
            let end = lseek(fd, 0, SEEK_END)
            close(fd)
            guard end >= 0 else { throw .badGrant("cannot size disk \(index) '\(path)': \(ModuleDirectory.errnoString())") }
            grants.append(DiskGrant(diskIndex: index, path: path, offset: 0, length: UInt64(end),
                                    device: index < devices.count ? devices[index] : nil))
        }
        return VMDescription(name: name, disks: grants)
    }
}

/// A granted range with its own read-only descriptor, open while the VM is attached (a read in
/// flight holds a reference, so a detach never closes the descriptor under it).
final class OpenGrant: @unchecked Sendable {
    let handle: UInt64
    let grant: DiskGrant
    let fd: Int32

    init(handle: UInt64, grant: DiskGrant) throws(MLaaSError) {
        let fd = open(grant.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .badGrant("cannot open disk \(grant.diskIndex) '\(grant.path)': \(ModuleDirectory.errnoString())") }
        let end = lseek(fd, 0, SEEK_END)
        let (last, overflow) = grant.offset.addingReportingOverflow(grant.length)
        guard end >= 0, !overflow, last <= UInt64(end) else {
            close(fd)
            throw .badGrant("disk \(grant.diskIndex) grant \(grant.offset)+\(grant.length) is beyond the end of '\(grant.path)'")
        }
        self.handle = handle
        self.grant = grant
        self.fd = fd
    }

    deinit { close(fd) }

    /// pread within the grant; bounds were checked by the caller.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawPointer, length: Int) -> Int64 {
        var done = 0
        while done < length {
            let n = pread(fd, buffer + done, length - done, off_t(grant.offset + offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return Int64(MALV_MLAAS_E_IO)
            }
            if n == 0 { break }
            done += n
        }
        return Int64(done)
    }
}

/// What one loaded service may reach through its host table: the VMs attached to it and their
/// grants. The C callbacks find it through `host_context`.
final class HostContext: @unchecked Sendable {
    /// The most one read_range returns (16 MiB).
    static let maxReadBytes: UInt64 = 16 << 20

    let logger: Logger
    /// The block hooks this service holds (`block` in the host table).
    let blockWatches = BlockWatches()
    /// The batch-duration models this service installed (`scheduler` in the host table).
    let schedulerHooks: SchedulerHooks
    /// The `scheduler` table, where this process schedules GPU work (freed with the context,
    /// which outlives the service's unload).
    private let schedulerTable: UnsafeMutablePointer<malv_mlaas_scheduler>?
    private let lock = Monitor()
    private var grants: [UInt64: [UInt64: OpenGrant]] = [:]
    /// The attached VMs' names (what the scheduler knows a VM's clients by).
    private var names: [UInt64: String] = [:]
    private var detached: Set<UInt64> = []
    /// Each VM's GPU: the vGPU its guest's last enable came through (`bindGPU`).
    private var gpus: [UInt64: any ServiceGPU] = [:]
    /// The scratch buffers each VM's service allocated and has not released: freed at detach
    /// if the service did not, so a service cannot leave GPU memory behind.
    private var scratch: [UInt64: Set<ScratchBuffer>] = [:]

    struct ScratchBuffer: Hashable {
        let context: UInt32
        let id: UInt32
    }

    static func from(_ pointer: UnsafeMutableRawPointer?) -> HostContext? {
        pointer.map { Unmanaged<HostContext>.fromOpaque($0).takeUnretainedValue() }
    }

    init(serviceName: String, scheduling: (any ServiceScheduling)?) {
        logger = Logger(label: "malvvm.mlaas.\(serviceName)")
        schedulerHooks = SchedulerHooks(scheduling)
        schedulerTable = scheduling.map { ServiceSchedulerTable.make(timeSliceNanoseconds: $0.timeSliceNanoseconds) }
    }

    deinit { schedulerTable?.deallocate() }

    func attach(vm: UInt64, name: String, grants open: [OpenGrant]) {
        lock.withLock {
            grants[vm] = Dictionary(uniqueKeysWithValues: open.map { ($0.handle, $0) })
            names[vm] = name
        }
    }

    /// The name of VM `vm` while it is attached.
    func attachedName(vm: UInt64) -> String? { lock.withLock { names[vm] } }

    /// Why VM `vm` has no attachment: detached, or never known.
    func missingStatus(vm: UInt64) -> Int32 {
        lock.withLock { detached.contains(vm) ? MALV_MLAAS_E_DETACHED : MALV_MLAAS_E_NOT_FOUND }
    }

    /// Ends the VM's hooks into the VMM (block watches, batch-duration models) before its
    /// service state goes: no callback reaches the service for this VM after this returns.
    func stopHooks(vm: UInt64) {
        blockWatches.unwatchAll(vm: vm)
        schedulerHooks.clear(vm: vm)
    }

    /// The grant `range` of VM `vm`, or the status that says why there is none.
    func grant(vm: UInt64, range: UInt64) -> Result<OpenGrant, BlockHookError> {
        lock.withLock {
            if let grant = grants[vm]?[range] { return .success(grant) }
            return .failure(BlockHookError(status: detached.contains(vm) ? MALV_MLAAS_E_DETACHED : MALV_MLAAS_E_NOT_FOUND))
        }
    }

    func detach(vm: UInt64) {
        // The hooks go first, so that no callback reaches the service after this.
        stopHooks(vm: vm)
        let (gpu, left) = lock.withLock { () -> ((any ServiceGPU)?, Set<ScratchBuffer>) in
            grants[vm] = nil
            names[vm] = nil
            detached.insert(vm)
            defer { gpus[vm] = nil; scratch[vm] = nil }
            return (gpus[vm], scratch[vm] ?? [])
        }
        for buffer in left { gpu?.release(context: buffer.context, scratch: buffer.id) }
    }

    /// The GPU a VM's service runs on from now on (the vGPU of the guest's enable; nil: none).
    /// Scratch buffers on the VM's previous GPU are freed.
    func bindGPU(vm: UInt64, _ gpu: (any ServiceGPU)?) {
        let (previous, left) = lock.withLock { () -> ((any ServiceGPU)?, Set<ScratchBuffer>) in
            let previous = gpus[vm]
            guard previous !== gpu else { return (nil, []) }
            defer { gpus[vm] = gpu; scratch[vm] = nil }
            return (previous, scratch[vm] ?? [])
        }
        for buffer in left { previous?.release(context: buffer.context, scratch: buffer.id) }
    }

    func gpu(vm: UInt64) throws(ServiceGPUError) -> any ServiceGPU {
        let (gpu, gone) = lock.withLock { (gpus[vm], detached.contains(vm) || grants[vm] == nil) }
        if gone { throw ServiceGPUError(status: MALV_MLAAS_E_DETACHED, "the VM is not attached") }
        guard let gpu else {
            throw ServiceGPUError(status: MALV_MLAAS_E_UNSUPPORTED, "the VM's enable did not come through a vGPU")
        }
        return gpu
    }

    func allocate(vm: UInt64, context: UInt32, bytes: UInt64) throws(ServiceGPUError) -> UInt32 {
        let device = try gpu(vm: vm)
        let id = try device.allocate(context: context, bytes: bytes)
        let kept = lock.withLock { () -> Bool in
            // Detached (or rebound) while allocating: the buffer is nobody's; free it.
            guard gpus[vm] === device else { return false }
            scratch[vm, default: []].insert(ScratchBuffer(context: context, id: id))
            return true
        }
        guard kept else {
            device.release(context: context, scratch: id)
            throw ServiceGPUError(status: MALV_MLAAS_E_DETACHED, "the VM was detached")
        }
        return id
    }

    func release(vm: UInt64, context: UInt32, scratch id: UInt32) {
        let gpu = lock.withLock { () -> (any ServiceGPU)? in
            // Only what this VM's service allocated: a guessed handle frees nothing.
            guard scratch[vm]?.remove(ScratchBuffer(context: context, id: id)) != nil else { return nil }
            return gpus[vm]
        }
        gpu?.release(context: context, scratch: id)
    }

    func read(vm: UInt64, range: UInt64, offset: UInt64, buffer: UnsafeMutableRawPointer?, length: UInt64) -> Int64 {
        guard let buffer else { return Int64(MALV_MLAAS_E_INVALID) }
        let found: OpenGrant? = lock.withLock { grants[vm]?[range] }
        guard let grant = found else {
            let gone = lock.withLock { detached.contains(vm) }
            return Int64(gone ? MALV_MLAAS_E_DETACHED : MALV_MLAAS_E_NOT_FOUND)
        }
        guard length <= Self.maxReadBytes, offset <= grant.grant.length, length <= grant.grant.length - offset else {
            return Int64(MALV_MLAAS_E_RANGE)
        }
        if length == 0 { return 0 }
        return grant.read(at: offset, into: buffer, length: Int(length))
    }

    func log(level: Int32, message: UnsafePointer<CChar>?) {
        guard let message else { return }
        let length = strnlen(message, 1024)
        let text = String(decoding: UnsafeRawBufferPointer(start: message, count: length), as: UTF8.self)
            .map { $0.isNewline ? " " : $0 }
        let line = Logger.Message(stringLiteral: String(text))
        switch level {
        case Int32(MALV_MLAAS_LOG_ERROR.rawValue): logger.error(line)
        case Int32(MALV_MLAAS_LOG_WARNING.rawValue): logger.warning(line)
        case Int32(MALV_MLAAS_LOG_INFO.rawValue): logger.info(line)
        default: logger.debug(line)
        }
    }

    /// A host table for the service; valid until `free` (after the service's unload returned).
    func makeTable() -> UnsafeMutablePointer<malv_mlaas_host> {
        let table = UnsafeMutablePointer<malv_mlaas_host>.allocate(capacity: 1)
        table.initialize(to: malv_mlaas_host())
        table.pointee.struct_size = UInt32(MemoryLayout<malv_mlaas_host>.size)
        table.pointee.abi_version = ServiceABI.version
        table.pointee.host_context = Unmanaged.passUnretained(self).toOpaque()
        table.pointee.log = { context, level, message in
            guard let context else { return }
            Unmanaged<HostContext>.fromOpaque(context).takeUnretainedValue().log(level: level, message: message)
        }
        table.pointee.read_range = { context, vm, range, offset, buffer, length in
            guard let context else { return Int64(MALV_MLAAS_E_INVALID) }
            return Unmanaged<HostContext>.fromOpaque(context).takeUnretainedValue()
                .read(vm: vm, range: range, offset: offset, buffer: buffer, length: length)
        }
        table.pointee.max_read_bytes = Self.maxReadBytes
        table.pointee.gpu = UnsafePointer(ServiceGPUTable.shared)
        table.pointee.block = UnsafePointer(ServiceBlockTable.shared)
        table.pointee.scheduler = schedulerTable.map { UnsafePointer($0) }
        return table
    }
}
