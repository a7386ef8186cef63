import Synchronization
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

    private init(batch: CommandBatch, operands: [[KernelOperand]], kernelList: KernelListIdentity = KernelListIdentity()) {
        self.batch = batch
        self.operands = operands
        self.kernelList = kernelList
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
///
/// It also remembers the identities of the pieces the scheduler cut the list into
/// (`ValidatedBatch.segments`), so a repeated batch cut the same way has the same pieces each
/// time and the backend replays each piece's recording.
public final class KernelListIdentity: Sendable {
    /// A number for the list that no other list of this process ever has: what a
    /// batch-duration model (an MLaaS module, across a C ABI) keys its knowledge by.
    public let serial: UInt64
    private let pieces = Mutex<[Range<Int>: KernelListIdentity]>([:])
    private static let nextSerial = Atomic<UInt64>(1)

    init() {
        serial = Self.nextSerial.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    func piece(_ kernels: Range<Int>) -> KernelListIdentity {
        pieces.withLock { known in
            if let identity = known[kernels] { return identity }
            // A handful of cuts per list; a list cut ever differently would otherwise grow this.
            if known.count >= 64 { known.removeAll() }
            let identity = KernelListIdentity()
            known[kernels] = identity
            return identity
        }
    }
}

extension ValidatedBatch {
    /// The batch's kernels in consecutive pieces at the given cut points (kernel indices,
    /// ascending, inside 1..<kernels.count), in order: the uploads go with the first piece and
    /// the downloads with the last, so run one after another on one queue they do exactly
    /// what the whole batch does. Each piece keeps its kernels' validated operands (nothing is
    /// validated again) and has an identity of its own that the same cut of this batch gets
    /// again (`KernelListIdentity.piece`).
    func segments(cuttingBefore cuts: [Int]) -> [ValidatedBatch] {
        let bounds = [0] + cuts.filter { $0 > 0 && $0 < kernels.count } + [kernels.count]
        var pieces: [ValidatedBatch] = []
        for (index, (start, end)) in zip(bounds, bounds.dropFirst()).enumerated() where start < end {
            var batch = CommandBatch(Array(kernels[start ..< end]))
            batch.lane = lane
            if index == 0 { batch.uploads = uploads }
            if end == kernels.count { batch.downloads = downloads }
            pieces.append(ValidatedBatch(batch: batch, operands: Array(operands[start ..< end]),
                                         kernelList: kernelList.piece(start ..< end)))
        }
        return pieces
    }

    /// A rough measure of each kernel's device work, for cutting a batch into pieces of
    /// similar duration: the bytes its operands span, plus its multiply-adds where it is
    /// compute-bound (sgemm). Only the proportions matter; the predictor learns the scale.
    var kernelWork: [Double] {
        zip(kernels, operands).map { kernel, operands in
            let bytes = operands.reduce(0) { $0 + $1.byteRange.count }
            if case let .sgemm(p) = kernel { return Double(bytes) + Double(p.m) * Double(p.n) * Double(p.k) / 4 }
            return Double(bytes)
        }
    }
}
