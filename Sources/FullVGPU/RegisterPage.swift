import Glibc
import Hypervisor
import Synchronization

/// The first 4 KiB of the register BAR as guest memory: a read-only KVM slot (KVM_MEM_READONLY)
/// over the BAR, so guest reads of it hit memory while writes still exit as MMIO (and a doorbell
/// write still reaches its ioeventfd). The device rewrites the page whenever a register the guest
/// can read changes.
final class RegisterPage: @unchecked Sendable {
    private let vm: KVMVirtualMachine
    private let slot: UInt32
    private let page: UnsafeMutableRawPointer
    private let mapped = Mutex<UInt64?>(nil)

    init?(vm: KVMVirtualMachine, slot: UInt32) {
        guard let page = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              page != MAP_FAILED else { return nil }
        self.vm = vm
        self.slot = slot
        self.page = page
    }

    deinit {
        _ = map(at: nil)
        munmap(page, 4096)
    }

    func store(_ value: UInt32, at offset: UInt32) {
        (page + Int(offset)).storeBytes(of: value.littleEndian, as: UInt32.self)
    }

    /// Maps the page at `address` (nil: unmaps it); the error when KVM refuses.
    func map(at address: UInt64?) -> SystemError? {
        mapped.withLock { current -> SystemError? in
            guard current != address else { return nil }
            if current != nil {
                try? vm.setUserMemoryRegion(slot: slot, guestAddress: GuestAddress(0), size: 0, host: page)
                current = nil
            }
            guard let address else { return nil }
            do throws(SystemError) {
                try vm.setUserMemoryRegion(slot: slot, guestAddress: GuestAddress(address), size: 4096, host: page,
                                           readOnly: true)
                current = address
                return nil
            } catch {
                return error
            }
        }
    }
}
