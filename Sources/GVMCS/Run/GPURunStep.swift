/// The virtual GPU in guest mode: fetch commands between head and tail, translate every
/// address through both stages, execute, and stop at the first event that needs the
/// hypervisor. One call is one stretch of guest mode, from an entry to the exit that ends it.
///
/// Preemption happens at command boundaries (DESIGN decision 4): a dispatch is never cut, so a
/// slice can overrun by at most one dispatch, which `timeRun` shows. Faults leave the head on
/// the faulting command so that `gvmresume` retries it once the hypervisor has fixed the cause;
/// a completion exit is a trap and leaves the head past the fence.
struct GPURunStep {
    let memory: any GPUMemory
    let clock: any GVMClock
    let executor: any GVMCommandExecutor
    let events: any GVMEventSink
    let capabilities: GVMCapabilities

    struct Exit {
        var exit: GVMExit
        var commandIndex: UInt32
        var commandOffset: UInt32 = 0
    }

    /// Runs until an exit; updates the ring head in `vmcs`.
    func run(_ vmcs: inout GVMControlStructure, enteredAt entry: UInt64) -> Exit {
        let controls = vmcs.executionControls
        let budget: UInt64? = controls.contains(.activatePreemptionTimer)
            ? vmcs[.preemptionTimerValue] * GVMCapabilities.preemptionTimerTickNanoseconds : nil
        let translator = AddressTranslator(
            memory: memory, guestRoot: vmcs[.gpuPageTableRoot],
            gept: controls.contains(.nestedPaging)
                ? GEPTWalker(memory: memory, pointer: vmcs.geptPointer,
                             memoryTypes: capabilities.geptMemoryTypes)
                : nil)
        let ringMask = vmcs.ringSize - 1
        while true {
            let head = vmcs.ringHead
            if let budget, clock.now() &- entry >= budget {
                return Exit(exit: .preemptionTimerExpired, commandIndex: head)
            }
            if head == vmcs.ringTail { return Exit(exit: .idle, commandIndex: head) }

            let slot = vmcs[.commandRingBase] + UInt64(head) * GVMCommand.size
            let command: GVMCommand
            do {
                // A slot is 32-byte aligned and the ring 4 KiB-aligned, so one translation
                // covers all four words.
                let host = try translator.translate(slot, access: .execute)
                var words: [UInt64] = []
                for word in 0..<4 {
                    guard let value = try? memory.load64(host + UInt64(word) * 8) else {
                        return Exit(exit: .invalidCommand(.unbackedAddress), commandIndex: head)
                    }
                    words.append(value)
                }
                command = try GVMCommand.decode(words, vectorCount: capabilities.completionVectorCount)
            } catch let error as TranslationFault {
                return Exit(exit: Self.exit(for: error), commandIndex: head)
            } catch let error as GVMCommand.DecodeError {
                return Exit(exit: .invalidCommand(error.cause), commandIndex: head,
                            commandOffset: error.offset)
            } catch {
                preconditionFailure("unexpected error \(error)")
            }

            if let exit = execute(command, vmcs: vmcs, translator: translator) {
                var result = exit
                result.commandIndex = head
                if case .completion = exit.exit {
                    vmcs[.commandRingHead] = UInt64((head + 1) & ringMask)
                }
                return result
            }
            vmcs[.commandRingHead] = UInt64((head + 1) & ringMask)
        }
    }

    /// Runs one command; an exit when it cannot finish in guest mode.
    private func execute(_ command: GVMCommand, vmcs: GVMControlStructure,
                         translator: AddressTranslator) -> Exit? {
        switch command {
        case .nop:
            return nil
        case .write64(let address, let value):
            do {
                let host = try translator.translate(address, access: .write)
                if (try? memory.store64(host, value)) == nil {
                    return Exit(exit: .invalidCommand(.unbackedAddress), commandIndex: 0,
                                commandOffset: 8)
                }
                return nil
            } catch {
                return Exit(exit: Self.exit(for: error), commandIndex: 0, commandOffset: 8)
            }
        case .fence(let fence, let vector):
            guard vmcs.executionControls.contains(.postedCompletions) else {
                let acknowledged = vmcs.exitControls.contains(.acknowledgeCompletionOnExit)
                return Exit(exit: .completion(fence: fence, vector: acknowledged ? vector : nil),
                            commandIndex: 0)
            }
            let descriptor = PostedCompletionDescriptor(
                memory: memory, address: vmcs[.postedCompletionDescriptorAddress])
            do {
                if try descriptor.post(vector: vector, fence: fence) {
                    events.notifyPostedCompletion(
                        vector: UInt16(vmcs[.postedCompletionNotificationVector]))
                }
                return nil
            } catch {
                return Exit(exit: .invalidCommand(.unbackedAddress), commandIndex: 0)
            }
        case .dispatch(let kernel, let input, let output, let length):
            let inputRanges: [GVMHostRange]
            let outputRanges: [GVMHostRange]
            do {
                inputRanges = try translator.ranges(input, length, .read)
            } catch {
                return Exit(exit: Self.exit(for: error), commandIndex: 0, commandOffset: 8)
            }
            do {
                outputRanges = try translator.ranges(output, length, .write)
            } catch {
                return Exit(exit: Self.exit(for: error), commandIndex: 0, commandOffset: 16)
            }
            let dispatch = GVMDispatch(kernel: kernel, input: inputRanges, output: outputRanges)
            return Self.exit(for: executor.execute(dispatch), commandOffset: 0)
        case .execute(let address, let length):
            let streamRanges: [GVMHostRange]
            do {
                streamRanges = try translator.ranges(address, length, .read)
            } catch {
                return Exit(exit: Self.exit(for: error), commandIndex: 0, commandOffset: 8)
            }
            let stream = GVMStream(guestGPUAddress: address, length: length, ranges: streamRanges)
            return Self.exit(for: executor.execute(stream, translator: GVMBufferTranslator(translator: translator)),
                             commandOffset: 8)
        }
    }

    /// The exit for what the executor reported (nil: the command completed).
    static func exit(for outcome: GVMExecutionOutcome, commandOffset: UInt32) -> Exit? {
        switch outcome {
        case .completed: nil
        case .unknownKernel: Exit(exit: .invalidCommand(.unknownKernel), commandIndex: 0)
        case .invalidWork: Exit(exit: .invalidCommand(.invalidWork), commandIndex: 0, commandOffset: commandOffset)
        case .fault(let fault): Exit(exit: exit(for: fault), commandIndex: 0, commandOffset: commandOffset)
        }
    }

    static func exit(for fault: TranslationFault) -> GVMExit {
        switch fault {
        case .guestPageFault(let gva, let code):
            .guestPageFault(code, guestGPUAddress: gva)
        case .geptViolation(let gpa, let gva, let qualification):
            .geptViolation(qualification, guestPhysical: gpa, guestGPUAddress: gva)
        case .geptMisconfiguration(let gpa, let gva):
            .geptMisconfiguration(guestPhysical: gpa, guestGPUAddress: gva)
        case .unbackedAddress:
            .invalidCommand(.unbackedAddress)
        }
    }
}
