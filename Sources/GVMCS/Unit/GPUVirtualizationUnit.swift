/// The GPU virtualisation unit: the hardware that holds the current-G-VMCS pointer and carries
/// out the G-VMCS instructions, as a logical processor in VMX root operation does for VMCSs.
///
/// Instruction semantics follow the SDM (vol. 3C ch. 31 and vol. 2B's VMX instruction pages):
/// success is a plain return; VMfailInvalid (`.failInvalid`) when there is no current G-VMCS
/// to record an error in; VMfailValid (`.failValid`) otherwise, with the number also written
/// to the current G-VMCS's instruction-error field. `gvmlaunch`/`gvmresume` return the exit
/// that ended guest mode; a guest-state entry failure is such an exit (reason 33, bit 31).
///
/// Not thread-safe and not reentrant, like one logical processor: the device that owns it
/// serialises instructions and register accesses, and the executor must not call back into it.
public final class GPUVirtualizationUnit {
    public static let invalidPointer: UInt64 = .max

    public let capabilities: GVMCapabilities
    private let memory: any GPUMemory
    private let clock: any GVMClock
    private let executor: any GVMCommandExecutor
    private let events: any GVMEventSink
    private let checker: GVMEntryChecker

    private var regions: [UInt64: GVMCSRegion] = [:]
    private var current: UInt64?

    public init(capabilities: GVMCapabilities = GVMCapabilities(), memory: any GPUMemory,
                clock: any GVMClock, executor: any GVMCommandExecutor, events: any GVMEventSink) {
        self.capabilities = capabilities
        self.memory = memory
        self.clock = clock
        self.executor = executor
        self.events = events
        checker = GVMEntryChecker(capabilities: capabilities)
    }

    // MARK: Pointer instructions

    /// VMCLEAR: makes the region's launch state clear (initialising it on first use) and, if it
    /// is current, leaves no current G-VMCS. Field values survive, as VMCLEAR only flushes;
    /// the cumulative time fields restart, since they count from the last clear, and trapped
    /// register accesses not yet reported are dropped (they belong to the guest run that ended).
    public func gvmclear(_ address: UInt64) throws(GVMInstructionFailure) {
        guard isRegionAddress(address) else { throw fail(.gvmclearInvalidAddress) }
        var region = regions[address] ?? GVMCSRegion()
        region.launchState = .clear
        region.preemptedAt = nil
        region.pendingExits.removeAll()
        region.vmcs[.cumulativeTimeRun] = 0
        region.vmcs[.cumulativePreemptionTime] = 0
        regions[address] = region
        if current == address { current = nil }
    }

    /// VMPTRLD: makes the region current after checking its address and the revision
    /// identifier software wrote at its offset 0.
    public func gvmptrld(_ address: UInt64) throws(GVMInstructionFailure) {
        guard isRegionAddress(address), let word = try? memory.load64(address) else {
            throw fail(.gvmptrldInvalidAddress)
        }
        guard UInt32(truncatingIfNeeded: word) == capabilities.revisionIdentifier else {
            throw fail(.gvmptrldIncorrectRevision)
        }
        // A region never cleared starts clear and zeroed; VMX leaves that undefined.
        if regions[address] == nil { regions[address] = GVMCSRegion() }
        current = address
    }

    /// VMPTRST: the current-G-VMCS pointer, all ones when there is none.
    public func gvmptrst() -> UInt64 { current ?? Self.invalidPointer }

    // MARK: Field instructions

    /// VMREAD: the field's value, zero-extended; the high half of a 64-bit field for a
    /// high-access encoding.
    public func gvmread(_ encoding: GVMCSFieldEncoding) throws(GVMInstructionFailure) -> UInt64 {
        guard let address = current else { throw .failInvalid }
        guard let (field, high) = GVMCSField.decode(encoding) else {
            throw fail(.unsupportedComponent)
        }
        let value = regions[address]!.vmcs[field]
        return high ? value >> 32 : value
    }

    public func gvmread(_ field: GVMCSField) throws(GVMInstructionFailure) -> UInt64 {
        try gvmread(field.encoding)
    }

    /// VMWRITE: stores the value truncated to the field's width; a high-access encoding
    /// replaces bits 63:32 of a 64-bit field with bits 31:0 of `value`.
    public func gvmwrite(_ encoding: GVMCSFieldEncoding, _ value: UInt64) throws(GVMInstructionFailure) {
        guard let address = current else { throw .failInvalid }
        guard let (field, high) = GVMCSField.decode(encoding) else {
            throw fail(.unsupportedComponent)
        }
        guard !field.isReadOnly else { throw fail(.writeToReadOnlyComponent) }
        if high {
            let low = regions[address]!.vmcs[field] & 0xFFFF_FFFF
            regions[address]!.vmcs[field] = low | (value & 0xFFFF_FFFF) << 32
        } else {
            regions[address]!.vmcs[field] = value
        }
    }

    public func gvmwrite(_ field: GVMCSField, _ value: UInt64) throws(GVMInstructionFailure) {
        try gvmwrite(field.encoding, value)
    }

    // MARK: Entry instructions

    /// VMLAUNCH: enters guest mode with a clear G-VMCS; the launch state becomes launched once
    /// the entry checks pass.
    public func gvmlaunch() throws(GVMInstructionFailure) -> GVMExitRecord {
        guard let address = current else { throw .failInvalid }
        guard regions[address]!.launchState == .clear else { throw fail(.gvmlaunchNonClear) }
        return try enter(address)
    }

    /// VMRESUME: enters guest mode with a launched G-VMCS.
    public func gvmresume() throws(GVMInstructionFailure) -> GVMExitRecord {
        guard let address = current else { throw .failInvalid }
        guard regions[address]!.launchState == .launched else {
            throw fail(.gvmresumeNonLaunched)
        }
        return try enter(address)
    }

    /// Whether the region at `address` is launched (`nil`: the unit does not know it). The
    /// launch state is not a field, as in VMX; the model exposes it for tests and the device.
    public func isLaunched(_ address: UInt64) -> Bool? {
        regions[address].map { $0.launchState == .launched }
    }

    // MARK: Guest register accesses

    /// A guest access to the register BAR of the virtual GPU whose G-VMCS is at `region`
    /// (current or not: each virtual function has its own). Doorbells and untrapped registers
    /// complete in place; trapped accesses are queued as exits for the region's next entry.
    public func guestRegisterAccess(_ access: GVMRegisterAccess,
                                    region address: UInt64) -> GVMRegisterAccessOutcome {
        guard var region = regions[address], [1, 2, 4, 8].contains(access.size),
              access.offset < GVMRegisterAccess.barSize,
              GVMRegisterAccess.barSize - access.offset >= UInt32(access.size) else {
            return .rejected
        }
        let controls = region.vmcs.executionControls
        let isDoorbell = access.isWrite && access.offset == GVMRegister.doorbell.rawValue
            && access.size == 4
        let exit: GVMExit
        if isDoorbell {
            guard controls.contains(.doorbellExiting) else {
                // The ioeventfd path: the tail moves without the hypervisor. A tail beyond the
                // ring fails the next entry's guest-state check, not the access.
                region.vmcs[.commandRingTail] = access.value & 0xFFFF_FFFF
                regions[address] = region
                return .completed(readValue: nil)
            }
            exit = .doorbell(tail: UInt32(truncatingIfNeeded: access.value))
        } else {
            let aligned = access.offset % UInt32(access.size) == 0
            let traps = !aligned || !controls.contains(.useMMIOBitmap)
                || MMIOBitmap(memory: memory, address: region.vmcs[.mmioBitmapAddress]).traps(access)
            guard traps else {
                return .completed(readValue: access.isWrite ? nil : directRead(access, region))
            }
            exit = .mmioAccess(
                GVMMMIOQualification(offset: access.offset, size: access.size, isWrite: access.isWrite),
                data: access.isWrite ? access.value : nil)
        }
        guard region.pendingExits.count < capabilities.pendingRegisterAccessLimit else {
            return .rejected
        }
        region.pendingExits.append(exit)
        regions[address] = region
        return .trapped
    }

    // MARK: Private

    private func enter(_ address: UInt64) throws(GVMInstructionFailure) -> GVMExitRecord {
        var region = regions[address]!
        if let check = checker.controlFailure(region.vmcs) {
            throw fail(.entryInvalidControlFields, check: check)
        }
        if let check = checker.hostStateFailure(region.vmcs) {
            throw fail(.entryInvalidHostStateFields, check: check)
        }
        let now = clock.now()
        if let check = checker.guestStateFailure(region.vmcs) {
            // VMX: the entry "fails" by exiting at once; the launch state does not change.
            region.vmcs[.instructionError] = UInt64(GVMInstructionError.entryInvalidGuestStateFields.rawValue)
            let record = recordExit(
                GPURunStep.Exit(exit: .entryFailure(check), commandIndex: region.vmcs.ringHead),
                in: &region, enteredAt: now, exitedAt: now)
            regions[address] = region
            return record
        }

        region.launchState = .launched
        if let preemptedAt = region.preemptedAt {
            region.vmcs[.cumulativePreemptionTime] &+= now &- preemptedAt
            region.preemptedAt = nil
        }
        let event = region.vmcs.eventInjection
        if event.isValid { events.deliver(event) }

        let stepExit: GPURunStep.Exit
        if !region.pendingExits.isEmpty {
            stepExit = GPURunStep.Exit(exit: region.pendingExits.removeFirst(),
                                       commandIndex: region.vmcs.ringHead)
        } else {
            let step = GPURunStep(memory: memory, clock: clock, executor: executor,
                                  events: events, capabilities: capabilities)
            stepExit = step.run(&region.vmcs, enteredAt: now)
        }
        let exitedAt = clock.now()
        let record = recordExit(stepExit, in: &region, enteredAt: now, exitedAt: exitedAt)
        regions[address] = region
        return record
    }

    /// Writes the exit-information fields (and the exit-control side effects) for an exit.
    private func recordExit(_ step: GPURunStep.Exit, in region: inout GVMCSRegion,
                            enteredAt entry: UInt64, exitedAt exit: UInt64) -> GVMExitRecord {
        let timeRun = exit &- entry
        var vmcs = region.vmcs
        vmcs[.exitReason] = UInt64(step.exit.rawReason)
        vmcs[.exitQualification] = step.exit.qualification
        vmcs[.guestPhysicalAddress] = step.exit.guestPhysicalAddress ?? 0
        vmcs[.guestGPUAddress] = step.exit.guestGPUAddress ?? 0
        vmcs[.exitMMIOData] = step.exit.mmioData ?? 0
        vmcs[.exitCompletionInformation] = UInt64(step.exit.completionInformation)
        vmcs[.exitCommandIndex] = UInt64(step.commandIndex)
        vmcs[.exitCommandOffset] = UInt64(step.commandOffset)
        vmcs[.timeRun] = timeRun
        vmcs[.cumulativeTimeRun] &+= timeRun

        if case .entryFailure = step.exit {
            region.vmcs = vmcs
        } else {
            // VMX clears the injection valid bit on every exit, so an event is delivered once.
            vmcs.eventInjection = GVMEventInjection(rawValue: vmcs.eventInjection.rawValue
                                                    & ~GVMEventInjection.validBit)
            if vmcs.exitControls.contains(.savePreemptionTimer) {
                let budget = vmcs[.preemptionTimerValue] * GVMCapabilities.preemptionTimerTickNanoseconds
                let left = budget > timeRun ? budget - timeRun : 0
                vmcs[.preemptionTimerValue] = left / GVMCapabilities.preemptionTimerTickNanoseconds
            }
            if case .preemptionTimerExpired = step.exit { region.preemptedAt = exit }
            region.vmcs = vmcs
        }
        return GVMExitRecord(exit: step.exit, rawReason: step.exit.rawReason,
                             qualification: step.exit.qualification,
                             commandIndex: step.commandIndex, commandOffset: step.commandOffset,
                             timeRun: timeRun)
    }

    private func directRead(_ access: GVMRegisterAccess, _ region: GVMCSRegion) -> UInt64 {
        let value: UInt64
        switch GVMRegister(rawValue: access.offset & ~3) {
        case .ringHead: value = region.vmcs[.commandRingHead]
        case .ringTail: value = region.vmcs[.commandRingTail]
        case .status: value = region.launchState == .launched ? 1 : 0
        case .doorbell, nil: value = 0
        }
        let shift = UInt64(access.offset & 3) * 8
        let mask: UInt64 = access.size == 8 ? .max : (1 << UInt64(access.size * 8)) - 1
        return (value >> shift) & mask
    }

    /// 4 KiB-aligned and within the physical-address width: VMCLEAR's and VMPTRLD's rule.
    private func isRegionAddress(_ address: UInt64) -> Bool {
        address & 0xFFF == 0 && capabilities.isPhysicalAddress(address)
    }

    /// The SDM's VMfail: valid (number recorded) when there is a current G-VMCS, else invalid.
    private func fail(_ error: GVMInstructionError,
                      check: GVMEntryCheck? = nil) -> GVMInstructionFailure {
        guard let address = current else { return .failInvalid }
        regions[address]!.vmcs[.instructionError] = UInt64(error.rawValue)
        return .failValid(error, check: check)
    }
}
