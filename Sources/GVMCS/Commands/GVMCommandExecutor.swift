/// A contiguous piece of host memory a dispatch reads or writes, after both translation stages.
public struct GVMHostRange: Hashable, Sendable {
    public var address: UInt64
    public var length: UInt64
    public init(address: UInt64, length: UInt64) {
        self.address = address
        self.length = length
    }
}

/// A dispatch, translated: the kernel and its buffers as host scatter lists.
public struct GVMDispatch: Hashable, Sendable {
    public let kernel: UInt32
    public let input: [GVMHostRange]
    public let output: [GVMHostRange]
}

/// An `execute` command: where its kernel stream lies in host memory (translated for read).
public struct GVMStream: Hashable, Sendable {
    /// The stream's guest GPU address, for fault reports.
    public let guestGPUAddress: UInt64
    public let length: UInt64
    public let ranges: [GVMHostRange]
}

/// Translates the buffers a kernel stream names, with the G-VMCS's two stages as they stood at
/// the `execute`: what the unit's command processor would do for each buffer the stream binds.
public struct GVMBufferTranslator {
    let translator: AddressTranslator

    /// `[address, address + length)` as host ranges (contiguous pages merged), every page
    /// checked for `access` in both stages.
    public func ranges(_ address: UInt64, length: UInt64,
                       access: GEPTPermissions) throws(TranslationFault) -> [GVMHostRange] {
        try translator.ranges(address, length, access)
    }
}

/// How the executor's part of a `dispatch` or `execute` ended; the unit turns all but
/// `completed` into the command's exit.
public enum GVMExecutionOutcome: Hashable, Sendable {
    case completed
    /// A `dispatch` of a kernel id the executor does not know (invalid command, cause 6).
    case unknownKernel
    /// The work is malformed: a stream that does not decode, a kernel's shape or operands
    /// (invalid command, cause 8). Nothing of it ran.
    case invalidWork
    /// A buffer did not translate, or is not backed: the exit that fault maps to.
    case fault(TranslationFault)
}

/// Runs the work of a dispatch on the physical GPU (the device slice: GPUHost's scheduler and
/// kernels). The unit has already checked and translated every address; the executor only
/// runs. Time passes on the injected clock while it does, which is what the preemption timer
/// and the time-run fields measure.
public protocol GVMCommandExecutor: AnyObject {
    func execute(_ dispatch: GVMDispatch) -> GVMExecutionOutcome
    /// Runs a kernel stream as one batch. The executor decodes it and translates the buffers it
    /// names through `translator`; it must not call back into the unit otherwise.
    func execute(_ stream: GVMStream, translator: GVMBufferTranslator) -> GVMExecutionOutcome
}
