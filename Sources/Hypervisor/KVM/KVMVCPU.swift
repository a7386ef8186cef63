import CKVM
import Glibc

/// Why KVM_RUN returned. Buffers point into the vCPU's kvm_run page and are valid until the next run().
public enum VCPUExit {
    /// `data` holds `data.count / size` accesses of `size` bytes (string I/O has more than one).
    case portIn(port: UInt16, size: Int, data: UnsafeMutableRawBufferPointer)
    case portOut(port: UInt16, size: Int, data: UnsafeRawBufferPointer)
    case mmioRead(address: UInt64, data: UnsafeMutableRawBufferPointer)
    case mmioWrite(address: UInt64, data: UnsafeRawBufferPointer)
    case halt
    /// Triple fault or another unrecoverable guest state.
    case shutdown
    case internalError(suberror: UInt32, data: [UInt64])
    case failEntry(reason: UInt64)
    case systemEvent(type: UInt32)
    /// KVM_RUN returned EINTR: a kick from another thread or immediate_exit.
    case interrupted
    case unhandled(reason: UInt32)
}

/// A vCPU file descriptor and its mmap'd kvm_run page. Used from one thread at a time, except `kick`.
public final class KVMVCPU: @unchecked Sendable {
    public let id: Int
    let fd: Int32
    let runState: UnsafeMutablePointer<kvm_run>
    let runSize: Int

    init(id: Int, fd: Int32, run: UnsafeMutablePointer<kvm_run>, runSize: Int) {
        self.id = id
        self.fd = fd
        self.runState = run
        self.runSize = runSize
    }

    deinit {
        munmap(runState, runSize)
        close(fd)
    }

    public func registers() throws(SystemError) -> kvm_regs {
        var regs = kvm_regs()
        _ = try SystemError.check(ckvm_get_regs(fd, &regs), "KVM_GET_REGS")
        return regs
    }

    public func setRegisters(_ regs: kvm_regs) throws(SystemError) {
        var regs = regs
        _ = try SystemError.check(ckvm_set_regs(fd, &regs), "KVM_SET_REGS")
    }

    public func specialRegisters() throws(SystemError) -> kvm_sregs {
        var sregs = kvm_sregs()
        _ = try SystemError.check(ckvm_get_sregs(fd, &sregs), "KVM_GET_SREGS")
        return sregs
    }

    public func setSpecialRegisters(_ sregs: kvm_sregs) throws(SystemError) {
        var sregs = sregs
        _ = try SystemError.check(ckvm_set_sregs(fd, &sregs), "KVM_SET_SREGS")
    }

    public func setCPUID(_ entries: [kvm_cpuid_entry2]) throws(SystemError) {
        let result = entries.withUnsafeBufferPointer { ckvm_set_cpuid2(fd, $0.baseAddress, UInt32($0.count)) }
        _ = try SystemError.check(result, "KVM_SET_CPUID2")
    }

    /// One model-specific register; nil where KVM does not know it.
    public func modelSpecificRegister(_ index: UInt32) -> UInt64? {
        var value: UInt64 = 0
        return ckvm_get_msr(fd, index, &value) == 1 ? value : nil
    }

    /// Sets one model-specific register; false where KVM refuses the index or the value.
    public func setModelSpecificRegister(_ index: UInt32, _ value: UInt64) -> Bool {
        ckvm_set_msr(fd, index, value) == 1
    }

    /// Makes the next (or the current) KVM_RUN return at once; safe from any thread.
    public func setImmediateExit(_ value: Bool) {
        ckvm_run_set_immediate_exit(runState, value ? 1 : 0)
    }

    public func run() throws(SystemError) -> VCPUExit {
        let result = ckvm_run(fd)
        if result == -EINTR || result == -EAGAIN { return .interrupted }
        _ = try SystemError.check(result, "KVM_RUN")
        return decodeExit()
    }

    private func decodeExit() -> VCPUExit {
        let reason = ckvm_run_exit_reason(runState)
        let base = UnsafeMutableRawPointer(runState)
        switch reason {
        case UInt32(KVM_EXIT_IO):
            let io = ckvm_run_io(runState)
            let bytes = UnsafeMutableRawBufferPointer(start: base + Int(io.data_offset),
                                                      count: Int(io.size) * Int(io.count))
            if io.direction == UInt8(KVM_EXIT_IO_OUT) {
                return .portOut(port: io.port, size: Int(io.size), data: UnsafeRawBufferPointer(bytes))
            }
            return .portIn(port: io.port, size: Int(io.size), data: bytes)
        case UInt32(KVM_EXIT_MMIO):
            let mmio = ckvm_run_mmio(runState)
            let bytes = UnsafeMutableRawBufferPointer(start: ckvm_run_mmio_data(runState), count: min(Int(mmio.len), 8))
            if mmio.is_write != 0 { return .mmioWrite(address: mmio.phys_addr, data: UnsafeRawBufferPointer(bytes)) }
            return .mmioRead(address: mmio.phys_addr, data: bytes)
        case UInt32(KVM_EXIT_HLT):
            return .halt
        case UInt32(KVM_EXIT_SHUTDOWN):
            return .shutdown
        case UInt32(KVM_EXIT_INTERNAL_ERROR):
            var data = [UInt64](repeating: 0, count: 16)
            let count = ckvm_run_internal_data(runState, &data, UInt32(data.count))
            return .internalError(suberror: ckvm_run_internal_suberror(runState), data: Array(data.prefix(Int(min(count, 16)))))
        case UInt32(KVM_EXIT_FAIL_ENTRY):
            return .failEntry(reason: ckvm_run_fail_entry_reason(runState))
        case UInt32(KVM_EXIT_SYSTEM_EVENT):
            return .systemEvent(type: ckvm_run_system_event_type(runState))
        case UInt32(KVM_EXIT_INTR):
            return .interrupted
        default:
            return .unhandled(reason: reason)
        }
    }
}
