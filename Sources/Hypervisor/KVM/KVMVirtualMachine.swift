import CKVM
import Glibc

/// A KVM VM file descriptor: memory slots, the in-kernel irqchip and PIT, interrupt lines.
public final class KVMVirtualMachine: @unchecked Sendable {
    let fd: Int32
    let system: KVMSystem

    init(fd: Int32, system: KVMSystem) {
        self.fd = fd
        self.system = system
    }

    deinit { close(fd) }

    /// Maps `size` bytes at `host` into the guest at `guestAddress` (size 0 deletes the slot).
    /// `readOnly`: guest writes exit as MMIO (KVM_MEM_READONLY), reads hit the memory.
    public func setUserMemoryRegion(slot: UInt32, guestAddress: GuestAddress, size: UInt64,
                                    host: UnsafeMutableRawPointer, readOnly: Bool = false) throws(SystemError) {
        let flags: UInt32 = readOnly ? 1 << 1 : 0   // KVM_MEM_READONLY
        _ = try SystemError.check(
            ckvm_set_user_memory_region(fd, slot, flags, guestAddress.raw, size, UInt64(UInt(bitPattern: host))),
            "KVM_SET_USER_MEMORY_REGION(slot \(slot))")
    }

    /// Intel VMX needs three pages for its real-mode TSS; other KVMs accept and ignore it.
    public func setTSSAddress(_ address: UInt64) throws(SystemError) {
        _ = try SystemError.check(ckvm_set_tss_addr(fd, address), "KVM_SET_TSS_ADDR")
    }

    public func setIdentityMapAddress(_ address: UInt64) throws(SystemError) {
        _ = try SystemError.check(ckvm_set_identity_map_addr(fd, address), "KVM_SET_IDENTITY_MAP_ADDR")
    }

    /// The in-kernel PIC, IOAPIC and per-vCPU LAPIC; must precede vCPU creation.
    public func createIRQChip() throws(SystemError) {
        _ = try SystemError.check(ckvm_create_irqchip(fd), "KVM_CREATE_IRQCHIP")
    }

    /// The in-kernel 8254 PIT on ports 0x40-0x43, wired to IRQ 0 / IOAPIC pin 2.
    public func createPIT() throws(SystemError) {
        _ = try SystemError.check(ckvm_create_pit2(fd, 0), "KVM_CREATE_PIT2")
    }

    /// Replaces KVM's GSI routing table (KVM_SET_GSI_ROUTING).
    public func setInterruptRoutes(_ routes: [InterruptRoute]) throws(SystemError) {
        let flat = routes.map(\.flattened)
        let result = flat.withUnsafeBufferPointer { ckvm_set_gsi_routing(fd, $0.baseAddress, UInt32($0.count)) }
        _ = try SystemError.check(result, "KVM_SET_GSI_ROUTING")
    }

    /// Binds `eventfd` to `gsi`: a write to it injects the interrupt inside KVM.
    public func registerIRQFD(_ eventfd: EventFD, gsi: UInt32) throws(SystemError) {
        _ = try SystemError.check(ckvm_irqfd(fd, eventfd.fileDescriptor, gsi, 0), "KVM_IRQFD(gsi \(gsi))")
    }

    public func unregisterIRQFD(_ eventfd: EventFD, gsi: UInt32) throws(SystemError) {
        _ = try SystemError.check(ckvm_irqfd(fd, eventfd.fileDescriptor, gsi, 1), "KVM_IRQFD deassign(gsi \(gsi))")
    }

    /// Makes guest MMIO writes of `length` bytes to `address` signal `eventfd` without an exit.
    public func registerIOEventFD(_ eventfd: EventFD, mmioAddress address: UInt64, length: UInt32) throws(SystemError) {
        _ = try SystemError.check(ckvm_ioeventfd(fd, address, length, eventfd.fileDescriptor, 0, 0),
                                  "KVM_IOEVENTFD(0x\(String(address, radix: 16)))")
    }

    public func unregisterIOEventFD(_ eventfd: EventFD, mmioAddress address: UInt64, length: UInt32) throws(SystemError) {
        _ = try SystemError.check(ckvm_ioeventfd(fd, address, length, eventfd.fileDescriptor, 0, 1),
                                  "KVM_IOEVENTFD deassign(0x\(String(address, radix: 16)))")
    }

    public func setIRQLine(_ irq: UInt32, high: Bool) throws(SystemError) {
        _ = try SystemError.check(ckvm_irq_line(fd, irq, high ? 1 : 0), "KVM_IRQ_LINE(\(irq))")
    }

    public func createVCPU(id: Int) throws(HypervisorError) -> KVMVCPU {
        let vcpuFD: Int32
        do { vcpuFD = try SystemError.check(ckvm_create_vcpu(fd, UInt(id)), "KVM_CREATE_VCPU(\(id))") } catch { throw .system(error) }
        guard let run = mmap(nil, system.vcpuMmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpuFD, 0),
              run != MAP_FAILED else {
            let error = errno
            close(vcpuFD)
            throw .system(SystemError("mmap(kvm_run)", errno: error))
        }
        return KVMVCPU(id: id, fd: vcpuFD, run: run.assumingMemoryBound(to: kvm_run.self), runSize: system.vcpuMmapSize)
    }
}
