/// Every check `gvmlaunch`/`gvmresume` makes before entering guest mode, numbered. Checked in
/// the SDM's order (§27.2-27.3): controls (failure: VMfailValid 7), then host state
/// (VMfailValid 8), then guest state (an entry-failure exit, reason 33 with bit 31 set,
/// qualification = the check's number). The first failure stops the entry.
public enum GVMEntryCheck: UInt16, CaseIterable, Sendable, CustomStringConvertible {
    public enum Area: Sendable { case controls, hostState, guestState }

    // Controls (1-19).
    case executionControlsAllowed = 1
    case exitControlsAllowed = 2
    case entryControlsAllowed = 3
    case geptPointerMemoryType = 4
    case geptPointerWalkLength = 5
    case geptPointerAddress = 6
    case mmioBitmapAddress = 7
    case postedCompletionDescriptorAddress = 8
    case postedCompletionsRequireAcknowledge = 9
    case postedCompletionNotificationVector = 10
    case savePreemptionTimerRequiresTimer = 11
    case memoryQuotaNonZero = 12
    case eventInjectionReservedBits = 13
    case eventInjectionType = 14
    case eventInjectionVector = 15

    // Host state (20-39).
    case hostContextID = 20
    case hostContextSaveArea = 21
    case hostGPUPageTableRoot = 22
    case schedulerClientID = 23

    // Guest state (40-).
    case guestContextID = 40
    case commandRingBaseAlignment = 41
    case commandRingBaseRange = 42
    case commandRingSize = 43
    case commandRingHead = 44
    case commandRingTail = 45
    case gpuPageTableRoot = 46
    case preemptionTimerValue = 47
    case contextSaveArea = 48

    public var area: Area {
        switch rawValue {
        case ..<20: .controls
        case ..<40: .hostState
        default: .guestState
        }
    }

    public var description: String {
        switch self {
        case .executionControlsAllowed: "GPU-execution controls obey the allowed-0/allowed-1 capability"
        case .exitControlsAllowed: "exit controls obey the allowed-0/allowed-1 capability"
        case .entryControlsAllowed: "entry controls obey the allowed-0/allowed-1 capability"
        case .geptPointerMemoryType: "nested paging: G-EPT pointer memory type is supported (UC or WB)"
        case .geptPointerWalkLength: "nested paging: G-EPT pointer walk length is 4"
        case .geptPointerAddress: "nested paging: G-EPT pointer reserved bits 0, root within the address width"
        case .mmioBitmapAddress: "MMIO bitmap: address 4 KiB-aligned and within the address width"
        case .postedCompletionDescriptorAddress: "posted completions: descriptor 64-byte aligned and within the address width"
        case .postedCompletionsRequireAcknowledge: "posted completions require 'acknowledge completion on exit'"
        case .postedCompletionNotificationVector: "posted completions: notification vector bits 15:8 are 0"
        case .savePreemptionTimerRequiresTimer: "'save preemption timer' requires 'activate preemption timer'"
        case .memoryQuotaNonZero: "memory quota is non-zero"
        case .eventInjectionReservedBits: "event injection: reserved bits 30:11 are 0"
        case .eventInjectionType: "event injection: type is completion (0) or fault notification (1)"
        case .eventInjectionVector: "event injection: vector below the completion-vector count"
        case .hostContextID: "host context id is non-zero"
        case .hostContextSaveArea: "host context save area non-zero, 4 KiB-aligned, within the address width"
        case .hostGPUPageTableRoot: "host GPU page-table root 4 KiB-aligned, within the address width"
        case .schedulerClientID: "scheduler client id below the scheduler's client count"
        case .guestContextID: "guest context id is non-zero"
        case .commandRingBaseAlignment: "command ring base is 4 KiB-aligned"
        case .commandRingBaseRange: "command ring lies below 2^48"
        case .commandRingSize: "command ring size is a power of two within the supported range"
        case .commandRingHead: "command ring head is below the ring size"
        case .commandRingTail: "command ring tail is below the ring size"
        case .gpuPageTableRoot: "GPU page-table root 4 KiB-aligned, within the address width"
        case .preemptionTimerValue: "preemption timer: value within 1-30 ms (0-30 ms when it is a saved remainder)"
        case .contextSaveArea: "restore guest context: save area non-zero, 4 KiB-aligned, within the address width"
        }
    }
}
