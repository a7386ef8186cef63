import GVMCS
import Hypervisor
import Synchronization

/// The full-vGPU's "host physical" address space, as the G-VMCS model sees it: the VM's RAM at
/// its guest-physical addresses (so the G-EPT is an identity map of RAM, and turning nested
/// paging off leaves guest-physical addresses meaning the same RAM), and the hypervisor's own
/// pages — the G-VMCS region, the G-EPT, the MMIO bitmap — at `privateBase`, above any RAM
/// and outside what the G-EPT maps, so no guest reaches them with nested paging on.
///
/// Every access is bounds-checked: an address in neither range is a `GPUMemoryFault`, which
/// the model turns into an exit, never a VMM crash.
final class HostMemory: GPUMemory, @unchecked Sendable {
    static let privateBase: UInt64 = 1 << 44

    let guest: GuestMemory
    private let privatePages: UnsafeMutableRawBufferPointer
    private var nextPrivatePage = 0

    init(guest: GuestMemory, privateBytes: Int) {
        self.guest = guest
        privatePages = UnsafeMutableRawBufferPointer.allocate(byteCount: privateBytes, alignment: 4096)
        privatePages.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit { privatePages.deallocate() }

    /// A zeroed private 4 KiB page; nil when the private area is used up.
    func allocatePrivatePage() -> UInt64? {
        guard (nextPrivatePage + 1) * 4096 <= privatePages.count else { return nil }
        defer { nextPrivatePage += 1 }
        return Self.privateBase + UInt64(nextPrivatePage) * 4096
    }

    func load64(_ address: UInt64) throws(GPUMemoryFault) -> UInt64 {
        UInt64(littleEndian: try pointer(address).load(as: UInt64.self))
    }

    func store64(_ address: UInt64, _ value: UInt64) throws(GPUMemoryFault) {
        try pointer(address).storeBytes(of: value.littleEndian, as: UInt64.self)
    }

    /// Guest RAM at `[address, address + length)`, for the executor's copies.
    func guestBytes(_ range: GVMHostRange) -> UnsafeMutableRawBufferPointer? {
        try? guest.slice(at: GuestAddress(range.address), length: range.length)
    }

    private func pointer(_ address: UInt64) throws(GPUMemoryFault) -> UnsafeMutableRawPointer {
        guard address & 7 == 0 else { throw GPUMemoryFault(address: address) }
        if address >= Self.privateBase {
            let offset = address - Self.privateBase
            guard offset + 8 <= UInt64(privatePages.count) else { throw GPUMemoryFault(address: address) }
            return privatePages.baseAddress! + Int(offset)
        }
        guard let bytes = try? guest.slice(at: GuestAddress(address), length: 8) else {
            throw GPUMemoryFault(address: address)
        }
        return bytes.baseAddress!
    }
}
