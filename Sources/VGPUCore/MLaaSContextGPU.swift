import GPUHost

/// A vGPU's compute contexts as an MLaaS service reaches them (malv_mlaas.h's `gpu` table):
/// the vGPU the guest's MLAAS_ENABLE came through hands itself to the VM's `MLaaSGuestPort`,
/// and the VM's process lets the service run GPUHost kernels on that vGPU's contexts. Only
/// resources attached to and owned by the named context, in GPU memory only, and scratch
/// buffers allocated for it are reachable; the work is the context's own (its scheduler
/// client: its share, its quota) and runs in order with what the guest queued on it.
public protocol MLaaSContextGPU: AnyObject, Sendable {
    /// The size of a HOST3D resource attached to and owned by `context`.
    func mlaasResourceSize(context: UInt32, resource: UInt32) throws(MLaaSGPUError) -> UInt64
    /// Zeroed GPU memory for `context`, charged to it; a scratch handle.
    func mlaasAllocate(context: UInt32, bytes: Int) throws(MLaaSGPUError) -> UInt32
    /// Frees a scratch buffer after the context's queued work (nothing if it is gone).
    func mlaasRelease(context: UInt32, scratch: UInt32)
    /// On the context's queue, behind what the guest queued before: the uploads into scratch
    /// buffers, then the kernels `build` makes with `resolve` (which names each operand's
    /// buffer range) as one batch; returns when it completed.
    func mlaasRun(context: UInt32, uploads: [MLaaSUpload],
                  build: (_ resolve: MLaaSResolve) throws(MLaaSGPUError) -> [Kernel]) throws(MLaaSGPUError)
}

/// A scratch buffer or a resource of the context.
public enum MLaaSBufferName: Hashable, Sendable {
    case scratch(UInt32)
    case resource(UInt32)
}

/// The elements of `name` from byte `offset`, `length` bytes, for elements of `elementSize`
/// bytes: checked against the buffer's size and the alignment.
public typealias MLaaSResolve = (_ name: MLaaSBufferName, _ offset: UInt64, _ length: UInt64, _ elementSize: Int)
    throws(MLaaSGPUError) -> BufferRange

/// Host bytes for a scratch buffer, valid for the duration of the run.
public struct MLaaSUpload: @unchecked Sendable {
    public var scratch: UInt32
    public var offset: UInt64
    public var bytes: UnsafeRawBufferPointer

    public init(scratch: UInt32, offset: UInt64, bytes: UnsafeRawBufferPointer) {
        self.scratch = scratch
        self.offset = offset
        self.bytes = bytes
    }
}

public struct MLaaSGPUError: Error, Sendable, Equatable {
    public enum Reason: Sendable {
        /// No such context, resource or scratch buffer (or another context's).
        case notFound
        /// A value out of bounds, misaligned, a kernel GPUHost refuses, a GUEST blob.
        case invalid
        case noMemory
        /// The GPU or the scheduler failed.
        case failed
    }

    public var reason: Reason
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }
}
