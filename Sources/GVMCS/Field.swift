/// Every component a G-VMCS holds, named by its full-access encoding.
///
/// Encodings follow the SDM's layout (see `GVMCSFieldEncoding`); where a G-VMCS component has a
/// direct VMX analogue it takes the same encoding (instruction error 0x4400, exit reason 0x4402,
/// exit qualification 0x6400, ...), so a VMX reader finds it where they expect it. The table in
/// docs/gvmcs.md is generated from the same facts and a test keeps the two in step.
public enum GVMCSField: UInt32, CaseIterable, Sendable, CustomStringConvertible {
    // MARK: 16-bit control fields (0x0000)
    /// Vector the unit signals on the host (an irqfd in the device) when it posts a completion.
    case postedCompletionNotificationVector = 0x0000

    // MARK: 16-bit guest-state fields (0x0800)
    /// The guest's GPU context: the hardware context the virtual function runs in.
    case guestContextID = 0x0800

    // MARK: 16-bit host-state fields (0x0C00)
    /// The host's GPU context, made current again on every exit.
    case hostContextID = 0x0C00

    // MARK: 64-bit control fields (0x2000)
    /// Host address of the 4 KiB MMIO register bitmap (used when `useMMIOBitmap` is set).
    case mmioBitmapAddress = 0x2000
    /// Host address of the 64-byte posted-completion descriptor (used when `postedCompletions`).
    case postedCompletionDescriptorAddress = 0x2002
    /// The G-EPT pointer: root of the nested GPU page tables, memory type and walk length.
    case geptPointer = 0x2004
    /// Bytes of GPU memory the virtual GPU may own; checked non-zero on entry and enforced by the
    /// allocator of the device slice.
    case memoryQuota = 0x2006

    // MARK: 64-bit read-only data fields (0x2400)
    /// Guest-physical address of a G-EPT violation or misconfiguration (VMX: 0x2400).
    case guestPhysicalAddress = 0x2400
    /// Nanoseconds between the last entry and the exit that followed it.
    case timeRun = 0x2402
    /// Nanoseconds run in guest mode since the G-VMCS was last cleared.
    case cumulativeTimeRun = 0x2404
    /// Nanoseconds spent descheduled after preemption-timer exits (from the exit to the resume).
    case cumulativePreemptionTime = 0x2406
    /// Data of a trapped MMIO write.
    case exitMMIOData = 0x2408

    // MARK: 64-bit guest-state fields (0x2800)
    /// Guest GPU virtual address of the command ring (slot 0).
    case commandRingBase = 0x2800
    /// Guest-physical address of the guest context's save area (used with `restoreGuestContext`).
    case contextSaveAreaAddress = 0x2802

    // MARK: 64-bit host-state fields (0x2C00)
    /// Host address where the host context is saved while the guest runs.
    case hostContextSaveAreaAddress = 0x2C00

    // MARK: 32-bit control fields (0x4000)
    case gpuExecutionControls = 0x4000
    case exitControls = 0x4002
    case entryControls = 0x4004
    /// Event to deliver to the guest on the next entry (VMX: VM-entry interruption information).
    case entryEventInjection = 0x4006

    // MARK: 32-bit read-only data fields (0x4400)
    case instructionError = 0x4400
    /// Basic exit reason in bits 15:0; bit 31 set when the entry itself failed (VMX: 0x4402).
    case exitReason = 0x4402
    /// Vector/type/valid of a completion acknowledged on exit (VMX: exit interruption info).
    case exitCompletionInformation = 0x4404
    /// Ring slot of the command that caused the exit.
    case exitCommandIndex = 0x4406
    /// Byte offset, within that command, of the word that caused the exit.
    case exitCommandOffset = 0x4408

    // MARK: 32-bit guest-state fields (0x4800)
    /// Command ring size in 32-byte slots; a power of two.
    case commandRingSize = 0x4800
    /// Next slot the GPU fetches.
    case commandRingHead = 0x4802
    /// One past the last slot the guest filled (the doorbell value).
    case commandRingTail = 0x4804
    /// Time slice in 1 µs ticks. Guest state, as VMX's preemption timer (0x482E) is, because it
    /// counts down while the guest runs and `savePreemptionTimer` writes the rest back.
    case preemptionTimerValue = 0x4806

    // MARK: 32-bit host-state fields (0x4C00)
    /// The GPU scheduler's client id for this virtual GPU, charged for the time run.
    case schedulerClientID = 0x4C00

    // MARK: natural-width read-only data fields (0x6400)
    case exitQualification = 0x6400
    /// Guest GPU virtual address involved in the exit (VMX: guest-linear address).
    case guestGPUAddress = 0x6402

    // MARK: natural-width guest-state fields (0x6800)
    /// Guest-physical address of the guest's own top-level GPU page table (VMX: guest CR3).
    case gpuPageTableRoot = 0x6800

    // MARK: natural-width host-state fields (0x6C00)
    /// Host address of the host context's top-level GPU page table (VMX: host CR3).
    case hostGPUPageTableRoot = 0x6C00

    public var encoding: GVMCSFieldEncoding { GVMCSFieldEncoding(rawValue: rawValue) }
    public var width: GVMCSFieldEncoding.Width { encoding.width }
    public var type: GVMCSFieldEncoding.FieldType { encoding.type }
    public var isReadOnly: Bool { type == .readOnlyData }

    /// The component a `gvmread`/`gvmwrite` encoding names, and whether it asks for the high half.
    /// `nil` when the encoding names nothing this unit implements (instruction error 12).
    public static func decode(_ encoding: GVMCSFieldEncoding) -> (field: GVMCSField, high: Bool)? {
        guard encoding.reservedBitsClear,
              let field = GVMCSField(rawValue: encoding.fullAccess.rawValue) else { return nil }
        // High access exists only for 64-bit fields; SDM: "must be full for 16-bit, 32-bit and
        // natural-width fields".
        if encoding.access == .high && field.width != .bits64 { return nil }
        return (field, encoding.access == .high)
    }

    public var description: String {
        switch self {
        case .postedCompletionNotificationVector: "posted-completion notification vector"
        case .guestContextID: "guest GPU context id"
        case .hostContextID: "host GPU context id"
        case .mmioBitmapAddress: "MMIO register bitmap address"
        case .postedCompletionDescriptorAddress: "posted-completion descriptor address"
        case .geptPointer: "G-EPT pointer"
        case .memoryQuota: "memory quota"
        case .guestPhysicalAddress: "guest-physical address"
        case .timeRun: "time run"
        case .cumulativeTimeRun: "cumulative time run"
        case .cumulativePreemptionTime: "cumulative preemption time"
        case .exitMMIOData: "exit MMIO data"
        case .commandRingBase: "command ring base"
        case .contextSaveAreaAddress: "context save area address"
        case .hostContextSaveAreaAddress: "host context save area address"
        case .gpuExecutionControls: "GPU-execution controls"
        case .exitControls: "exit controls"
        case .entryControls: "entry controls"
        case .entryEventInjection: "entry event-injection information"
        case .instructionError: "instruction error"
        case .exitReason: "exit reason"
        case .exitCompletionInformation: "exit completion information"
        case .exitCommandIndex: "exit command index"
        case .exitCommandOffset: "exit command offset"
        case .commandRingSize: "command ring size"
        case .commandRingHead: "command ring head"
        case .commandRingTail: "command ring tail"
        case .preemptionTimerValue: "preemption timer value"
        case .schedulerClientID: "scheduler client id"
        case .exitQualification: "exit qualification"
        case .guestGPUAddress: "guest GPU address"
        case .gpuPageTableRoot: "GPU page-table root"
        case .hostGPUPageTableRoot: "host GPU page-table root"
        }
    }
}
