/// A command batch with the operands its validation found. A batch is validated in full
/// (shapes, bounds, aliasing: `CommandBatch.validate`, about half a microsecond a kernel) once,
/// where it enters the host: the para-vGPU's decoder, or the scheduler for a direct client.
/// After that the scheduler (against the client's own buffers) and the backend (against the
/// buffers that exist now) only check that it still fits: every buffer it names is known and
/// holds its ranges, one lookup per operand. On a real GPU the host's per-batch work, not the
/// device, bounds a VM's training step, and each full re-validation was a third of it again.
///
/// The kernels cannot change once validated; transfers can be added (the para-vGPU adds its
/// guest-page copies after decoding), and `fits` validates transfers in full each time.
public struct ValidatedBatch: Sendable {
    public private(set) var batch: CommandBatch
    /// Each kernel's operands, in batch order, as validation produced them.
    public let operands: [[KernelOperand]]
    /// Names this validation's kernel list. Copies of one ValidatedBatch share it; a new
    /// validation, even of equal kernels, gets a new one. Because the kernels of a validated
    /// batch cannot change, a backend may replay the commands it recorded for an identity
    /// instead of recording the same kernels again (a para-vGPU resubmits the batch its
    /// decode cache holds every training step).
    public let kernelList: KernelListIdentity

    /// Validates `batch` in full against `capacity` (a buffer's size in bytes, nil for an id
    /// the caller does not own).
    public init(_ batch: CommandBatch, capacity: (BufferID) -> Int?) throws(GPUError) {
        operands = try batch.validate(capacity: capacity)
        self.batch = batch
        kernelList = KernelListIdentity()
    }

    private init(batch: CommandBatch, operands: [[KernelOperand]]) {
        self.batch = batch
        self.operands = operands
        kernelList = KernelListIdentity()
    }

    /// No kernels, no transfers.
    public static let empty = ValidatedBatch(batch: CommandBatch(), operands: [])

    public var kernels: [Kernel] { batch.kernels }
    public var hasHostTransfers: Bool { batch.hasHostTransfers }
    public var uploads: [HostTransfer] {
        get { batch.uploads }
        set { batch.uploads = newValue }
    }
    public var downloads: [HostTransfer] {
        get { batch.downloads }
        set { batch.downloads = newValue }
    }
    public var lane: Int {
        get { batch.lane }
        set { batch.lane = newValue }
    }

    /// Validates the transfers in full, and nothing of the kernels: for a caller that knows
    /// every buffer the kernels name still exists as it was when `fits` last passed (no buffer
    /// destroyed since; a buffer's size never changes).
    func transfersFit(capacity: (BufferID) -> Int?) throws(GPUError) {
        try batch.validateTransfers(capacity: capacity)
    }

    /// Throws what full validation would for a buffer `capacity` does not know or that is too
    /// small for a range; validates the transfers in full.
    public func fits(capacity: (BufferID) -> Int?) throws(GPUError) {
        try transfersFit(capacity: capacity)
        for (index, kernelOperands) in operands.enumerated() {
            for operand in kernelOperands {
                guard let bytes = capacity(operand.range.buffer) else {
                    throw .invalidKernel(index: index, .unknownBuffer(kernel: batch.kernels[index].name, operand: operand.name,
                                                                      buffer: operand.range.buffer))
                }
                // Validation bounded the range, so its end cannot overflow.
                let end = operand.byteRange.upperBound
                guard end <= bytes else {
                    throw .invalidKernel(index: index, .rangeOutOfBounds(kernel: batch.kernels[index].name, operand: operand.name,
                                                                         range: operand.range, endByte: end, capacity: bytes))
                }
            }
        }
    }
}

/// The identity of one validated kernel list (`ValidatedBatch.kernelList`); compared with `===`.
/// A reference, so whoever keeps one keeps it from being reused for another list.
public final class KernelListIdentity: Sendable {
    init() {}
}
