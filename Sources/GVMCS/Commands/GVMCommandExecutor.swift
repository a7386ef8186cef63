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

/// Runs the work of a dispatch on the physical GPU (the device slice: GPUHost's scheduler and
/// kernels). The unit has already checked and translated every address; the executor only
/// runs. Time passes on the injected clock while it does, which is what the preemption timer
/// and the time-run fields measure.
public protocol GVMCommandExecutor: AnyObject {
    /// `false` when the kernel id is unknown; the unit then exits with an invalid command.
    func execute(_ dispatch: GVMDispatch) -> Bool
}
