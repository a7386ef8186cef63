/// The entry checks, as pure functions of a G-VMCS and the unit's capabilities, so each can be
/// tested alone and the device can pre-flight a structure before it loads it.
public struct GVMEntryChecker: Sendable {
    public let capabilities: GVMCapabilities

    public init(capabilities: GVMCapabilities) { self.capabilities = capabilities }

    /// The first failed check in SDM order, or `nil` when the structure may enter.
    public func firstFailure(in vmcs: GVMControlStructure) -> GVMEntryCheck? {
        controlFailure(vmcs) ?? hostStateFailure(vmcs) ?? guestStateFailure(vmcs)
    }

    public func controlFailure(_ vmcs: GVMControlStructure) -> GVMEntryCheck? {
        let caps = capabilities
        let execution = vmcs.executionControls
        let exit = vmcs.exitControls
        if !caps.executionControls.permits(execution.rawValue) { return .executionControlsAllowed }
        if !caps.exitControls.permits(exit.rawValue) { return .exitControlsAllowed }
        if !caps.entryControls.permits(vmcs.entryControls.rawValue) { return .entryControlsAllowed }
        if execution.contains(.nestedPaging) {
            let pointer = vmcs.geptPointer
            if !caps.geptMemoryTypes.contains(pointer.memoryType) { return .geptPointerMemoryType }
            if pointer.walkLength != 4 { return .geptPointerWalkLength }
            if !pointer.reservedBitsClear || !caps.isPhysicalAddress(pointer.root) {
                return .geptPointerAddress
            }
        }
        if execution.contains(.useMMIOBitmap),
           !isValidAddress(vmcs[.mmioBitmapAddress], alignedTo: 4096) {
            return .mmioBitmapAddress
        }
        if execution.contains(.postedCompletions) {
            if !isValidAddress(vmcs[.postedCompletionDescriptorAddress], alignedTo: 64) {
                return .postedCompletionDescriptorAddress
            }
            if !exit.contains(.acknowledgeCompletionOnExit) {
                return .postedCompletionsRequireAcknowledge
            }
            if vmcs[.postedCompletionNotificationVector] > 0xFF {
                return .postedCompletionNotificationVector
            }
        }
        if exit.contains(.savePreemptionTimer) && !execution.contains(.activatePreemptionTimer) {
            return .savePreemptionTimerRequiresTimer
        }
        if vmcs[.memoryQuota] == 0 { return .memoryQuotaNonZero }
        let event = vmcs.eventInjection
        if event.isValid {
            if !event.reservedBitsClear { return .eventInjectionReservedBits }
            if event.type == nil { return .eventInjectionType }
            if Int(event.vector) >= caps.completionVectorCount { return .eventInjectionVector }
        }
        return nil
    }

    public func hostStateFailure(_ vmcs: GVMControlStructure) -> GVMEntryCheck? {
        if vmcs[.hostContextID] == 0 { return .hostContextID }
        let save = vmcs[.hostContextSaveAreaAddress]
        if save == 0 || !isValidAddress(save, alignedTo: 4096) { return .hostContextSaveArea }
        if !isValidAddress(vmcs[.hostGPUPageTableRoot], alignedTo: 4096) { return .hostGPUPageTableRoot }
        if UInt32(vmcs[.schedulerClientID]) >= capabilities.schedulerClientCount {
            return .schedulerClientID
        }
        return nil
    }

    public func guestStateFailure(_ vmcs: GVMControlStructure) -> GVMEntryCheck? {
        if vmcs[.guestContextID] == 0 { return .guestContextID }
        let base = vmcs[.commandRingBase]
        if base & 0xFFF != 0 { return .commandRingBaseAlignment }
        let size = vmcs.ringSize
        if size == 0 || size & (size - 1) != 0
            || !capabilities.commandRingSizeRange.contains(size) {
            return .commandRingSize
        }
        // Checked after the size so the ring's end is computed from a sane size.
        let (end, overflow) = base.addingReportingOverflow(UInt64(size) * GVMCommand.size)
        if overflow || end > 1 << 48 { return .commandRingBaseRange }
        if vmcs.ringHead >= size { return .commandRingHead }
        if vmcs.ringTail >= size { return .commandRingTail }
        if !isValidAddress(vmcs[.gpuPageTableRoot], alignedTo: 4096) { return .gpuPageTableRoot }
        if vmcs.executionControls.contains(.activatePreemptionTimer) {
            let value = vmcs[.preemptionTimerValue]
            let range = capabilities.preemptionTimerRange
            // With 'save preemption timer' the field may hold what is left of a slice, which
            // can be below the minimum (0 exits at once, as in VMX); a fresh slice may not.
            let minimum = vmcs.exitControls.contains(.savePreemptionTimer) ? 0 : range.lowerBound
            if value < minimum || value > range.upperBound { return .preemptionTimerValue }
        }
        if vmcs.entryControls.contains(.restoreGuestContext) {
            let save = vmcs[.contextSaveAreaAddress]
            if save == 0 || !isValidAddress(save, alignedTo: 4096) { return .contextSaveArea }
        }
        return nil
    }

    /// Aligned to `alignment` and below 2^physicalAddressWidth: what every address control needs.
    private func isValidAddress(_ address: UInt64, alignedTo alignment: UInt64) -> Bool {
        address & (alignment - 1) == 0 && capabilities.isPhysicalAddress(address)
    }
}
