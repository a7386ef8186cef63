#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization
import Platform

/// The reference backend: every kernel in plain Swift, run synchronously inside `submit`.
/// It is the oracle for the Vulkan kernels and what a VM gets when the host has no Vulkan
/// device.
public final class CPUBackend: ComputeBackend {
    /// Same ceiling as a Vulkan storage buffer can reach, so code that works here is not
    /// surprised by a device later.
    public static let maxBufferBytes = Int(UInt32.max)

    private struct State {
        var buffers = BufferTable<CPUBuffer>()
        var completed: [SubmissionID: BatchCompletion] = [:]
        var nextSubmission: UInt64 = 1
    }

    public let kind = BackendKind.cpuReference
    public let device: DeviceInfo
    private let state = Mutex(State())

    public init() {
        device = DeviceInfo(
            index: 0, name: "CPU reference", type: .cpu, vendorID: 0, deviceID: 0, apiVersion: "n/a",
            driverName: "GPUHost CPU reference", driverInfo: nil, pciAddress: nil, memoryHeaps: [],
            timestampPeriod: nil, maxStorageBufferRange: UInt64(Self.maxBufferBytes),
            maxComputeWorkGroupCount: [.max, .max, .max], maxComputeSharedMemorySize: 0)
    }

    public func createBuffer(byteCount: Int, placement: MemoryPlacement) throws(GPUError) -> BufferID {
        guard byteCount > 0, byteCount <= Self.maxBufferBytes else {
            throw .invalidBufferSize(requested: byteCount, limit: Self.maxBufferBytes)
        }
        let buffer = CPUBuffer(byteCount: byteCount, placement: placement)
        return state.withLock { state in
            return state.buffers.insert(buffer)
        }
    }

    public func destroyBuffer(_ buffer: BufferID) throws(GPUError) {
        _ = try state.withLock { (state: inout State) throws(GPUError) in try state.buffers.remove(buffer) }
    }

    public func capacity(of buffer: BufferID) -> Int? {
        state.withLock { $0.buffers[buffer]?.byteCount }
    }

    public func write(_ buffer: BufferID, byteOffset: Int, from bytes: UnsafeRawBufferPointer) throws(GPUError) {
        let storage = try lookup(buffer, byteOffset: byteOffset, byteCount: bytes.count)
        if let source = bytes.baseAddress {
            memcpy(storage.base + byteOffset, source, bytes.count)
        }
    }

    public func read(_ buffer: BufferID, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws(GPUError) {
        let storage = try lookup(buffer, byteOffset: byteOffset, byteCount: bytes.count)
        if let destination = bytes.baseAddress {
            memcpy(destination, storage.base + byteOffset, bytes.count)
        }
    }

    public func submit(_ validated: ValidatedBatch) throws(GPUError) -> SubmissionID {
        try state.withLock { (state: inout State) throws(GPUError) -> SubmissionID in
            // Check the whole batch first: a batch either runs entirely or not at all.
            let buffers = state.buffers
            try validated.fits(capacity: { buffers[$0]?.byteCount })
            let batch = validated.batch
            // Uploads, kernels and downloads all run here, in that order: the batch is done,
            // downloads included, before `wait` is even called.
            let uploadStart = monotonicNanoseconds()
            for upload in batch.uploads {
                guard let buffer = buffers[upload.buffer], let source = upload.host.baseAddress else { continue }
                memcpy(buffer.base + upload.byteOffset, source, upload.byteCount)
            }
            let uploadNanoseconds = monotonicNanoseconds() - uploadStart
            // The CPU "device" is this thread: its CPU time is what the batch cost, as a GPU's
            // timestamps measure execution only. Wall time would also bill the client for
            // whatever else the host ran meanwhile.
            let start = threadCPUNanoseconds()
            for kernel in batch.kernels {
                try CPUKernelRunner(buffers: state.buffers.byID).run(kernel)
            }
            let elapsed = threadCPUNanoseconds() &- start
            let downloadStart = monotonicNanoseconds()
            for download in batch.downloads {
                guard let buffer = buffers[download.buffer], let destination = download.host.baseAddress else { continue }
                memcpy(destination, buffer.base + download.byteOffset, download.byteCount)
            }
            let downloadNanoseconds = monotonicNanoseconds() - downloadStart
            let id = SubmissionID(rawValue: state.nextSubmission)
            state.nextSubmission += 1
            state.completed[id] = BatchCompletion(
                submission: id, kernelCount: batch.kernels.count, dispatchCount: batch.kernels.count,
                barrierCount: 0, executionNanoseconds: elapsed, timing: .hostClock,
                uploadNanoseconds: uploadNanoseconds, downloadNanoseconds: downloadNanoseconds)
            return id
        }
    }

    public func isComplete(_ submission: SubmissionID) throws(GPUError) -> Bool {
        let known = state.withLock { $0.completed[submission] != nil }
        guard known else { throw .unknownSubmission(submission) }
        return true
    }

    public func wait(_ submission: SubmissionID, timeoutNanoseconds: UInt64) throws(GPUError) -> BatchCompletion {
        let completion = state.withLock { $0.completed.removeValue(forKey: submission) }
        guard let completion else { throw .unknownSubmission(submission) }
        return completion
    }

    private func lookup(_ buffer: BufferID, byteOffset: Int, byteCount: Int) throws(GPUError) -> CPUBuffer {
        guard let storage = state.withLock({ $0.buffers[buffer] }) else { throw .unknownBuffer(buffer) }
        let (end, overflow) = byteOffset.addingReportingOverflow(byteCount)
        guard byteOffset >= 0, byteCount >= 0, !overflow, end <= storage.byteCount else {
            throw .bufferAccessOutOfBounds(buffer, byteOffset: byteOffset, byteCount: byteCount,
                                           capacity: storage.byteCount)
        }
        return storage
    }

}
