import GPUHost
import GVMCS
import Hypervisor
import Logging
import Synchronization
import VGPUCore

/// The register front: what the vCPU thread sees of the device. BAR and configuration
/// accesses are answered at once from the register file (and, with the MMIO bitmap on, from
/// the register page the guest reads without exiting) and posted to the device thread's
/// mailbox, as PCIe posts writes; the doorbell's ioeventfd follows the BAR.
extension FullVGPUDevice {
    // MARK: PCIDevice

    public func barMapped(_ index: Int, at address: UInt64?) {
        guard index == Self.registerBAR else { return }
        if !controls.doorbellExiting { moveDoorbell(to: address) }
        if let registerPage {
            refreshRegisterPage(all: true)
            if let error = registerPage.map(at: address) {
                logger.warning("full-vGPU register page not mapped (reads will exit): \(error)", metadata: ["device": "\(name)"])
            }
        }
    }

    public func configurationWritten(offset: Int, size: Int) {
        msix.configurationWritten(offset: offset, size: size)
    }

    public func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard index == Self.registerBAR else {
            if offset < Self.msixPendingOffset {
                msix.readTable(offset: offset, data: data)
            } else {
                msix.readPendingBits(offset: offset - Self.msixPendingOffset, data: data)
            }
            return
        }
        // The 32-bit registers the access touches, from one snapshot of the register file.
        let start = UInt32(offset), size = data.count
        let fence = completedFence
        let words = registers.withLock { r in
            stride(from: start & ~3, through: (start + UInt32(max(size, 1)) - 1) & ~3, by: 4).map {
                Self.registerValue($0, r, fence: fence)
            }
        }
        for i in data.indices {
            let at = Int(start & 3) + i
            data[i] = UInt8(truncatingIfNeeded: words[at / 4] >> (8 * UInt32(at % 4)))
        }
        post(.read(start, size: size))
    }

    public func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {
        guard index == Self.registerBAR else {
            if offset < Self.msixPendingOffset { msix.writeTable(offset: offset, data: data) }
            return
        }
        let value = data.littleEndianValue
        if data.count == 8, offset & 7 == 0 {
            writeRegister(UInt32(offset), UInt32(truncatingIfNeeded: value))
            writeRegister(UInt32(offset) + 4, UInt32(truncatingIfNeeded: value >> 32))
        } else if data.count == 4, offset & 3 == 0 {
            writeRegister(UInt32(offset), UInt32(truncatingIfNeeded: value))
        }
        refreshRegisterPage(all: true)
        post(.write(UInt32(offset), value, size: data.count))
    }

    // MARK: vCPU side

    /// Rewrites the register page from the register file, after anything the guest can read
    /// changed: every register after a guest write (setup registers), otherwise only those the
    /// device moves (head, tail, interrupt and fault state, the fence), as this runs at every exit.
    func refreshRegisterPage(all: Bool = false) {
        guard let registerPage else { return }
        let fence = completedFence
        registers.withLock { r in
            // STATUS last: the fault registers are valid once it says faulted.
            for register in all ? FullVGPURegister.allCases : FullVGPURegister.deviceWritten where register != .status {
                registerPage.store(Self.registerValue(register.rawValue, r, fence: fence), at: register.rawValue)
            }
            registerPage.store(Self.registerValue(FullVGPURegister.status.rawValue, r, fence: fence),
                               at: FullVGPURegister.status.rawValue)
        }
    }

    private static func registerValue(_ offset: UInt32, _ r: FullVGPURegisterFile, fence: UInt64) -> UInt32 {
        guard let register = FullVGPURegister(rawValue: offset) else { return 0 }
        func low(_ v: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: v) }
        func high(_ v: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: v >> 32) }
        switch register {
        case .doorbell: return 0
        case .ringHead: return r.head
        case .ringTail: return r.tail
        case .status: return r.controlPending ? 0 : (r.running ? 1 : 0) | (r.faulted ? 2 : 0)
        case .id: return FullVGPURegister.identifier
        case .version: return FullVGPURegister.deviceVersion
        case .ringSizeMaximum: return FullVGPURegister.maximumRingSize
        case .opcodeMask: return ComputeStream.Opcode.allCases.reduce(0) { $0 | 1 << UInt32($1.rawValue) }
        case .ringBase: return low(r.ringBase)
        case .ringBaseHigh: return high(r.ringBase)
        case .ringSize: return r.ringSize
        case .pageTableRoot: return low(r.pageTableRoot)
        case .pageTableRootHigh: return high(r.pageTableRoot)
        case .completionPage: return low(r.completionPage)
        case .completionPageHigh: return high(r.completionPage)
        case .tailShadow: return low(r.tailShadow)
        case .tailShadowHigh: return high(r.tailShadow)
        case .control: return r.enabled ? FullVGPUControl.enable : 0
        case .interruptStatus: return r.interruptStatus
        case .faultReason: return r.faultReason
        case .faultQualification: return r.faultQualification
        case .faultAddress: return low(r.faultAddress)
        case .faultAddressHigh: return high(r.faultAddress)
        case .faultCommand: return r.faultCommand
        case .faultOffset: return r.faultOffset
        case .completedFence: return low(fence)
        case .completedFenceHigh: return high(fence)
        }
    }

    /// The fence at byte 40 of the completion page: where both completion paths leave it.
    private var completedFence: UInt64 {
        let page = registers.withLock { $0.running || $0.faulted ? $0.completionPage : 0 }
        guard page != 0, let address = Self.fenceAddress(page) else { return 0 }
        return (try? memory.guest.read(UInt64.self, at: address)) ?? 0
    }

    /// The fence's address in the completion page the guest wrote, which may be anything
    /// (near 2^64 too: an overflowing sum here crashed the VMM, found by fuzzing).
    static func fenceAddress(_ page: UInt64) -> GuestAddress? {
        let (address, overflow) = page.addingReportingOverflow(PostedCompletionDescriptor.fenceOffset)
        return overflow ? nil : GuestAddress(address)
    }

    private func writeRegister(_ offset: UInt32, _ value: UInt32) {
        guard let register = FullVGPURegister(rawValue: offset) else { return }
        func setLow(_ v: inout UInt64) { v = v & 0xFFFF_FFFF_0000_0000 | UInt64(value) }
        func setHigh(_ v: inout UInt64) { v = v & 0xFFFF_FFFF | UInt64(value) << 32 }
        registers.withLock { r in
            switch register {
            case .ringBase: setLow(&r.ringBase)
            case .ringBaseHigh: setHigh(&r.ringBase)
            case .ringSize: r.ringSize = value
            case .pageTableRoot: setLow(&r.pageTableRoot)
            case .pageTableRootHigh: setHigh(&r.pageTableRoot)
            case .completionPage: setLow(&r.completionPage)
            case .completionPageHigh: setHigh(&r.completionPage)
            case .tailShadow: setLow(&r.tailShadow)
            case .tailShadowHigh: setHigh(&r.tailShadow)
            case .interruptStatus: r.interruptStatus &= ~value
            case .control:
                let reset = value & FullVGPUControl.reset != 0
                let enable = !reset && value & FullVGPUControl.enable != 0 && !r.enabled
                if reset { r.enabled = false }
                if enable { r.enabled = true }
                if reset || enable {
                    r.controlPending = true
                    // Inside the register lock, so the device thread sees the flag and the request together.
                    mailbox.withLock { box in
                        if reset { box.reset = true; box.enable = false }
                        if enable { box.enable = true }
                    }
                }
            default: break   // read-only; the doorbell is the device thread's
            }
        }
    }

    /// Hands an access to the device thread; accesses of sizes the bus never makes are dropped.
    private func post(_ access: GVMRegisterAccess) {
        guard [1, 2, 4, 8].contains(access.size) else { return }
        mailbox.withLock { box in
            // One vCPU cannot have many outstanding; a flood means the device thread is busy.
            if box.accesses.count < 256 { box.accesses.append(access) }
        }
        kick.signal()
    }

    func moveDoorbell(to base: UInt64?) {
        doorbellAddress.withLock { current in
            guard current != base else { return }
            if let old = current { try? vm.unregisterIOEventFD(doorbell, mmioAddress: old, length: 4) }
            current = nil
            if let base {
                do {
                    try vm.registerIOEventFD(doorbell, mmioAddress: base + UInt64(FullVGPURegister.doorbell.rawValue), length: 4)
                    current = base
                } catch {
                    logger.warning("full-vGPU doorbell ioeventfd not registered: \(error)", metadata: ["device": "\(name)"])
                }
            }
        }
    }
}
