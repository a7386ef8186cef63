/// The full-vGPU's register BAR (docs/fullvgpu.md, "Registers"). 0x000-0x00F are the
/// registers the G-VMCS model's virtual function implements; the rest are the device's.
enum FullVGPURegister: UInt32, CaseIterable {
    case doorbell = 0x000
    case ringHead = 0x004
    case ringTail = 0x008
    case status = 0x00C
    case id = 0x100
    case version = 0x104
    case ringSizeMaximum = 0x108
    case opcodeMask = 0x10C
    case ringBase = 0x110, ringBaseHigh = 0x114
    case ringSize = 0x118
    case pageTableRoot = 0x120, pageTableRootHigh = 0x124
    case completionPage = 0x128, completionPageHigh = 0x12C
    case tailShadow = 0x130, tailShadowHigh = 0x134
    case control = 0x140
    case interruptStatus = 0x144
    case faultReason = 0x148
    case faultQualification = 0x14C
    case faultAddress = 0x150, faultAddressHigh = 0x154
    case faultCommand = 0x158
    case faultOffset = 0x15C
    case completedFence = 0x160, completedFenceHigh = 0x164

    static let identifier: UInt32 = 0x4746_564D   // "MVFG" as little-endian bytes
    static let deviceVersion: UInt32 = 1
    static let maximumRingSize: UInt32 = 4096

    /// Registers the device changes on its own (the rest change only by a guest write).
    static let deviceWritten: [FullVGPURegister] = [
        .ringHead, .ringTail, .status, .control, .interruptStatus, .faultReason, .faultQualification,
        .faultAddress, .faultAddressHigh, .faultCommand, .faultOffset, .completedFence, .completedFenceHigh,
    ]

    /// Registers whose writes the hypervisor must see: with the MMIO bitmap on, only these trap.
    static let trappedWrites: [FullVGPURegister] = [
        .ringBase, .ringBaseHigh, .ringSize, .pageTableRoot, .pageTableRootHigh,
        .completionPage, .completionPageHigh, .tailShadow, .tailShadowHigh, .control, .interruptStatus,
    ]
}

/// CONTROL (0x140) bits.
enum FullVGPUControl {
    static let enable: UInt32 = 1 << 0
    static let reset: UInt32 = 1 << 1
}

/// INTERRUPT_STATUS (0x144) bits, and the MSI-X vector of each.
enum FullVGPUInterrupt {
    static let completion: UInt32 = 1 << 0
    static let fault: UInt32 = 1 << 1
    static let completionVector = 0
    static let faultVector = 1
    static let vectorCount = 2
}

/// FAULT_REASON values that are device checks rather than G-VMCS exit reasons.
enum FullVGPUDeviceFault: UInt32 {
    case badCompletionPage = 0x100
    case badTailShadow = 0x101
    case gpuError = 0x102
}

/// What the guest sees in the register BAR, kept by the device so the vCPU thread answers reads
/// at once, while the device thread may be inside a long `gvmresume`.
struct FullVGPURegisterFile {
    var ringBase: UInt64 = 0
    var ringSize: UInt32 = 0
    var pageTableRoot: UInt64 = 0
    var completionPage: UInt64 = 0
    var tailShadow: UInt64 = 0
    var enabled = false
    var interruptStatus: UInt32 = 0
    var head: UInt32 = 0
    var tail: UInt32 = 0
    var running = false
    var faulted = false
    /// A CONTROL write the device thread has not acted on yet: STATUS reads 0 meanwhile, so a
    /// driver polling it after ENABLE or RESET never sees the state from before its write.
    var controlPending = false
    var faultReason: UInt32 = 0
    var faultQualification: UInt32 = 0
    var faultAddress: UInt64 = 0
    var faultCommand: UInt32 = 0
    var faultOffset: UInt32 = 0

    mutating func clearFault() {
        faulted = false
        faultReason = 0
        faultQualification = 0
        faultAddress = 0
        faultCommand = 0
        faultOffset = 0
    }
}
