import GPUHost
import GVMCS
import Hypervisor
import Logging
import Synchronization
import VGPUCore

/// The device thread: the hypervisor of this vGPU. It alone owns the `GPUVirtualizationUnit`:
/// it takes the mailbox the register front filled, hands the accesses to the unit (trapped or
/// completed per the G-VMCS's controls), programs and launches the G-VMCS on ENABLE, and runs
/// the VMX-style loop (enter, handle the exit, resume) until the ring is idle or the vGPU
/// faults, publishing counters and statistics after each pass.
extension FullVGPUDevice {
    // MARK: Device thread: the hypervisor

    func serve(doorbellRung: Bool) {
        let (accesses, enable, reset) = mailbox.withLock { box in
            defer { box.accesses.removeAll(keepingCapacity: true); box.enable = false; box.reset = false }
            return (box.accesses, box.enable, box.reset)
        }
        counters.registerExits += UInt64(accesses.count)
        if reset { resetVGPU() }
        if enable { enableVGPU() }
        if reset || enable {
            // Any CONTROL write after the mailbox was taken leaves its own request pending.
            registers.withLock { r in
                if !mailbox.withLock({ $0.reset || $0.enable }) { r.controlPending = false }
            }
        }
        let running = registers.withLock { $0.running && !$0.faulted }
        var pending = accesses
        if doorbellRung {
            if running {
                counters.doorbellKicks += 1
                // The ioeventfd carries no data: the new tail is in the guest's tail shadow.
                let shadow = registers.withLock { $0.tailShadow }
                guard let tail = try? memory.guest.read(UInt32.self, at: GuestAddress(shadow)) else {
                    deviceFault(.badTailShadow, address: shadow)
                    publish()
                    return
                }
                pending.append(.write(FullVGPURegister.doorbell.rawValue, UInt64(tail)))
            }
        }
        for access in pending {
            switch unit.guestRegisterAccess(access, region: region) {
            case .trapped: counters.trappedAccesses += 1
            case .completed: counters.directAccesses += 1
            case .rejected: break
            }
        }
        if running { runGuest(launch: false) }
        refreshRegisterPage()
        publish()
    }

    /// ENABLE: checks what the model cannot, programs the G-VMCS from the registers, launches.
    private func enableVGPU() {
        let r = registers.withLock { r -> FullVGPURegisterFile in
            r.clearFault()
            r.head = 0
            r.tail = 0
            return r
        }
        guard r.completionPage & 0xFFF == 0, r.completionPage != 0,
              memory.guest.contains(GuestAddress(r.completionPage), length: 4096) else {
            return deviceFault(.badCompletionPage, address: r.completionPage)
        }
        guard r.tailShadow & 3 == 0, r.tailShadow != 0, memory.guest.contains(GuestAddress(r.tailShadow), length: 4) else {
            return deviceFault(.badTailShadow, address: r.tailShadow)
        }
        do throws(GVMInstructionFailure) {
            try unit.gvmclear(region)
            try unit.gvmptrld(region)
            let fields: [(GVMCSField, UInt64)] = [
                (.gpuExecutionControls, UInt64(controls.executionControls.rawValue)),
                (.exitControls, UInt64(GVMExitControls.acknowledgeCompletionOnExit.rawValue)),
                (.entryControls, 0),
                (.entryEventInjection, 0),
                (.geptPointer, GEPTPointer(root: geptRoot).rawValue),
                (.mmioBitmapAddress, bitmap),
                (.postedCompletionDescriptorAddress, r.completionPage),
                (.postedCompletionNotificationVector, UInt64(FullVGPUInterrupt.completionVector)),
                (.memoryQuota, UInt64(profile.memoryBytes)),
                (.hostContextID, 1),
                (.hostContextSaveAreaAddress, hostSaveArea),
                (.hostGPUPageTableRoot, hostPageTableRoot),
                (.schedulerClientID, UInt64(client.rawValue)),
                (.guestContextID, 1),
                (.commandRingBase, r.ringBase),
                (.commandRingSize, UInt64(r.ringSize)),
                (.commandRingHead, 0),
                (.commandRingTail, 0),
                (.gpuPageTableRoot, r.pageTableRoot),
                (.preemptionTimerValue, sliceMicroseconds),
            ]
            for (field, value) in fields { try unit.gvmwrite(field, value) }
        } catch {
            // The hypervisor's own fields: a failure here is our bug, reported as a fault.
            logger.error("full-vGPU G-VMCS setup failed: \(error)", metadata: ["device": "\(name)"])
            return deviceFault(.gpuError, address: 0)
        }
        runGuest(launch: true)
    }

    private func resetVGPU() {
        try? unit.gvmclear(region)
        registers.withLock { r in
            r.clearFault()
            r.running = false
            r.head = 0
            r.tail = 0
        }
    }

    /// The VMX loop: enter, handle the exit, resume, until the ring is idle or the vGPU faults.
    private func runGuest(launch: Bool) {
        var launching = launch
        while true {
            let record: GVMExitRecord
            do throws(GVMInstructionFailure) {
                counters.entries += 1
                record = launching ? try unit.gvmlaunch() : try unit.gvmresume()
            } catch {
                // VMfailValid 7/8: controls or host state the hypervisor wrote. Its fault, but
                // the guest learns the vGPU stopped, and the VMM keeps running.
                if case let .failValid(_, check) = error {
                    fault(reason: UInt32(GVMExitReason.entryFailure.rawValue) | 0x8000_0000,
                          qualification: UInt32(check.map { UInt32($0.rawValue) } ?? 0), record: nil)
                } else {
                    deviceFault(.gpuError, address: 0)
                }
                logger.error("full-vGPU entry failed: \(error)", metadata: ["device": "\(name)"])
                return
            }
            launching = false
            logger.trace("full-vGPU exit", metadata: ["device": "\(name)", "exit": "\(record.exit)",
                                                      "command": "\(record.commandIndex)"])
            counters.exits[FullVGPUCounters.key(record.exit.reason), default: 0] += 1
            let head = UInt32(truncatingIfNeeded: (try? unit.gvmread(.commandRingHead)) ?? 0)
            let tail = UInt32(truncatingIfNeeded: (try? unit.gvmread(.commandRingTail)) ?? 0)
            registers.withLock { r in
                r.head = head
                r.tail = tail
                r.running = unit.isLaunched(region) == true
            }
            refreshRegisterPage()
            switch record.exit {
            case let .doorbell(newTail):
                _ = try? unit.gvmwrite(.commandRingTail, UInt64(newTail))
            case .mmioAccess:
                break   // the register file already holds the write; the exit is its cost
            case .preemptionTimerExpired:
                // The slice is over: the GPU scheduler has already arbitrated this batch; give
                // the next entry a full slice again.
                _ = try? unit.gvmwrite(.preemptionTimerValue, sliceMicroseconds)
            case let .completion(fence, vector):
                completeFence(fence, vector: Int(vector ?? UInt8(FullVGPUInterrupt.completionVector)))
            case .idle:
                return
            case .geptViolation, .geptMisconfiguration, .invalidCommand, .guestPageFault, .entryFailure:
                if case .invalidCommand(.invalidWork) = record.exit, case .device = executor.lastFailure {
                    deviceFault(.gpuError, address: 0)
                } else {
                    fault(reason: record.rawReason, qualification: UInt32(truncatingIfNeeded: record.qualification),
                          record: record)
                }
                return
            }
        }
    }

    /// Posted completions off: the hypervisor does what the unit would have, at the cost of an exit.
    private func completeFence(_ fence: UInt64, vector: Int) {
        let page = registers.withLock { $0.completionPage }
        if let address = Self.fenceAddress(page) { try? memory.guest.write(fence, at: address) }
        counters.hypervisorCompletions += 1
        raise(FullVGPUInterrupt.completion, vector: vector)
    }

    fileprivate func postedCompletion(vector: Int) {
        counters.postedNotifications += 1
        raise(FullVGPUInterrupt.completion, vector: vector)
    }

    private func raise(_ status: UInt32, vector: Int) {
        registers.withLock { $0.interruptStatus |= status }
        refreshRegisterPage()
        msix.signal(vector: vector)
    }

    private func fault(reason: UInt32, qualification: UInt32, record: GVMExitRecord?) {
        let address = (try? unit.gvmread(.guestGPUAddress)) ?? 0
        registers.withLock { r in
            r.faulted = true
            r.faultReason = reason
            r.faultQualification = qualification
            r.faultAddress = record == nil ? 0 : address
            r.faultCommand = record?.commandIndex ?? 0
            r.faultOffset = record?.commandOffset ?? 0
        }
        counters.faults += 1
        if case let .invalid(reason) = executor.lastFailure, case .invalidCommand(.invalidWork)? = record?.exit {
            logger.info("full-vGPU stream refused: \(reason)", metadata: ["device": "\(name)"])
        }
        raise(FullVGPUInterrupt.fault, vector: FullVGPUInterrupt.faultVector)
    }

    private func deviceFault(_ fault: FullVGPUDeviceFault, address: UInt64) {
        registers.withLock { r in
            r.faulted = true
            r.faultReason = fault.rawValue
            r.faultQualification = 0
            r.faultAddress = address
            r.faultCommand = r.head
            r.faultOffset = 0
        }
        counters.faults += 1
        raise(FullVGPUInterrupt.fault, vector: FullVGPUInterrupt.faultVector)
    }

    private func publish() {
        let snapshot = (counters, executor.statistics)
        published.withLock { $0 = snapshot }
    }

    /// Forwards the unit's signals to the device (the unit is created before the device is whole).
    final class UnitEvents: GVMEventSink {
        weak var device: FullVGPUDevice?

        func deliver(_ event: GVMEventInjection) {
            device?.postedCompletion(vector: Int(event.vector))
        }

        func notifyPostedCompletion(vector: UInt16) {
            device?.postedCompletion(vector: Int(vector))
        }
    }
}
