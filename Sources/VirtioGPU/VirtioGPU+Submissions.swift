import GPUHost
import Hypervisor
import Logging
import VGPUCore
import Platform

/// The submission pipeline: SUBMIT_3D's compute stream decoded against the context's own
/// resources, validated by GPUHost before anything runs, then handed to the scheduler from
/// the context's thread; the answer is written when the batch retires.
extension VirtioGPU {
    /// One GUEST blob a batch touches: the byte ranges to upload before it and download after.
    struct GuestSync {
        let backing: [BackingEntry]
        let buffer: BufferID
        var uploads: [Range<UInt64>] = []
        var downloads: [Range<UInt64>] = []
    }

    /// A stream ready to run: its validated batch and the GUEST-blob ranges to copy around it.
    struct DecodedSubmission {
        let validated: ValidatedBatch
        let plan: [GuestSync]
    }

    func submit(_ request: Request, _ bytes: [UInt8]) throws(VirtioGPUProtocol.Response) -> Disposition {
        let start = monotonicNanoseconds()
        do throws(VirtioGPUProtocol.Response) {
            return try accept(request, bytes, receivedAt: start)
        } catch {
            stateLock.withLock { state.statistics.refusedSubmissions += 1 }
            throw error
        }
    }

    private func accept(_ request: Request, _ bytes: [UInt8], receivedAt start: UInt64) throws(VirtioGPUProtocol.Response) -> Disposition {
        guard bytes.count >= VirtioGPUProtocol.submit3DSize else { throw .errorUnspecified }
        var r = WireReader(bytes, at: VirtioGPUProtocol.headerSize)
        let size = try r.field32()
        // Linux's padding, crosvm's num_in_fences: in-fences are not supported (a context's
        // work already runs in order).
        let inFences = try r.field32()
        guard inFences == 0, size > 0, Int(size) <= ComputeStream.maxStreamBytes,
              Int(size) <= bytes.count - VirtioGPUProtocol.submit3DSize else {
            throw .errorInvalidParameter
        }
        let stream = Array(bytes[VirtioGPUProtocol.submit3DSize ..< VirtioGPUProtocol.submit3DSize + Int(size)])

        let (context, submission) = try decode(stream, contextID: request.header.contextID)
        let validated = submission.validated, plan = submission.plan
        let kernels = validated.kernels.count
        try stateLock.withLock { () throws(VirtioGPUProtocol.Response) in
            let queued = state.contexts.values.reduce(0) { $0 + $1.queuedKernels }
            guard queued + kernels <= maxQueuedKernels else { throw .errorOutOfMemory }
            context.queuedKernels += kernels
            state.statistics.decodeNanoseconds += monotonicNanoseconds() - start
        }
        let generation = request.generation
        let finish = { [self] (outcome: VirtioGPUProtocol.Response?, cost: VGPUStatistics) in
            var cost = cost
            // Released before the response, so a guest that waits for it can submit again.
            stateLock.withLock { context.queuedKernels -= kernels }
            if let outcome { publish(request, encode(request.header.response(outcome))) }
            cost.submissions = 1
            cost.commands = UInt64(kernels)
            cost.streamBytes = UInt64(size)
            cost.endToEndNanoseconds = monotonicNanoseconds() - start
            stateLock.withLock { state.statistics.add(cost) }
        }
        let enqueued = context.worker.enqueue { [self] in
            guard isCurrent(generation) else { return finish(nil, VGPUStatistics()) }
            guard plan.isEmpty else {
                var cost = VGPUStatistics()
                return finish(run(validated, plan, for: context, cost: &cost), cost)
            }
            // No guest pages to copy in or out: queue the batch and let the completion thread
            // wait for it, so the context stays backlogged in the scheduler (its share is used)
            // while the guest's next submission is decoded.
            let ticket: BatchTicket
            do { ticket = try scheduler.submit(validated, for: context.client) } catch {
                logger.warning("vGPU submission failed: \(error)", metadata: ["device": "\(name)", "context": "\(context.name)"])
                return finish(.errorUnspecified, VGPUStatistics())
            }
            context.completions.enqueue { [self] in
                var cost = VGPUStatistics()
                finish(complete(ticket.wait(), for: context, cost: &cost), cost)
            }
        }
        guard enqueued else {
            stateLock.withLock { context.queuedKernels -= kernels }
            throw .errorInvalidContextID
        }
        return .deferred
    }

    /// The submitting context and `stream` decoded, resolved against that context's own
    /// resources and validated, or the response that refuses it. A stream the context sent
    /// before, in the same resource table, comes from its `DecodedStreamCache` unchanged.
    private func decode(_ stream: [UInt8], contextID: UInt32) throws(VirtioGPUProtocol.Response) -> (Context, DecodedSubmission) {
        let found = stateLock.withLock { () -> (Context, DecodedSubmission?)? in
            guard let context = state.contexts[contextID] else { return nil }
            let cached = context.decodedStreams.lookup(stream, generation: state.resourceGeneration)
            if cached != nil { state.statistics.decodeCacheHits += 1 }
            return (context, cached)
        }
        guard let (context, cached) = found else { throw .errorInvalidContextID }
        if let cached { return (context, cached) }
        // Resolve every reference against a consistent view of the context's resources.
        var syncs: [BufferID: GuestSync] = [:]
        var capacities: [BufferID: Int] = [:]
        var generation: UInt64 = 0
        let resolved = stateLock.withLock { () -> Result<CommandBatch, ComputeStreamError>? in
            guard state.contexts[contextID] === context else { return nil }
            generation = state.resourceGeneration
            do throws(ComputeStreamError) {
                return .success(try ComputeStream.decode(stream) { (ref, element, command, operand) throws(ComputeStreamError) in
                    guard ref.resourceID != 0, let resource = ownResource(ref.resourceID, of: context),
                          let buffer = resource.buffer else {
                        throw .invalidResource(command: command, operand: operand, resourceID: ref.resourceID)
                    }
                    let elementSize = UInt64(element.byteSize)
                    guard ref.length > 0 else { throw .badReference(command: command, operand: operand, reason: "is empty") }
                    guard ref.offset % elementSize == 0, UInt64(ref.length) % elementSize == 0 else {
                        throw .badReference(command: command, operand: operand,
                                            reason: "is not aligned to its \(elementSize)-byte elements")
                    }
                    let (end, overflow) = ref.offset.addingReportingOverflow(UInt64(ref.length))
                    guard !overflow, end <= resource.size else {
                        throw .badReference(command: command, operand: operand,
                                            reason: "[\(ref.offset), +\(ref.length)) lies outside resource \(ref.resourceID) of \(resource.size) bytes")
                    }
                    capacities[buffer] = Int(resource.size)
                    if resource.blobMemory == .guest, syncs[buffer] == nil {
                        syncs[buffer] = GuestSync(backing: resource.backing, buffer: buffer)
                    }
                    return BufferRange(buffer, offset: Int(ref.offset / elementSize), count: Int(UInt64(ref.length) / elementSize))
                })
            } catch {
                return .failure(error)
            }
        }
        guard let resolved else { throw .errorInvalidContextID }
        let batch: CommandBatch
        switch resolved {
        case let .failure(error):
            logger.debug("vGPU submission refused: \(error)", metadata: ["device": "\(name)"])
            throw error.response
        case let .success(value): batch = value
        }
        // Shapes, bounds and aliasing: GPUHost's own validation, before anything runs, and the
        // only full one on the batch's way (the scheduler and the backend check it still fits).
        let validated: ValidatedBatch
        do throws(GPUError) { validated = try ValidatedBatch(batch, capacity: { capacities[$0] }) } catch {
            logger.debug("vGPU submission refused: \(error)", metadata: ["device": "\(name)"])
            throw .errorInvalidParameter
        }
        for operand in validated.operands.joined() where syncs[operand.range.buffer] != nil {
            let bytes = UInt64(operand.byteRange.lowerBound) ..< UInt64(operand.byteRange.upperBound)
            if operand.access.reads { syncs[operand.range.buffer]!.uploads.append(bytes) }
            if operand.access.writes { syncs[operand.range.buffer]!.downloads.append(bytes) }
        }
        for sync in syncs.values {
            // A GUEST blob whose backing was detached cannot be computed on.
            let needed = (sync.uploads + sync.downloads).map(\.upperBound).max() ?? 0
            guard needed <= sync.backing.totalLength else { throw .errorInvalidParameter }
        }
        let submission = DecodedSubmission(validated: validated, plan: Array(syncs.values))
        stateLock.withLock {
            // Only if nothing changed while it was validated outside the lock.
            if state.resourceGeneration == generation {
                context.decodedStreams.insert(stream, generation: generation, decoded: submission)
            }
        }
        return (context, submission)
    }

    /// On the context's thread: the batch with its guest pages, the ranges its kernels read
    /// as uploads and the ranges they write as downloads, through the scheduler as one
    /// submission, waited for once. The ranges are the guest RAM itself (no copy here), as
    /// `UnsafeHostBytes` allows: the device holds the memory, and lets go of it only after
    /// `reset` has removed every context's scheduler client (queued batches cancelled, those on
    /// the GPU waited for); the guest hears nothing before the ticket is done. The scheduler
    /// runs the batch after the context's earlier batches and has its downloads in guest RAM
    /// before the ticket completes, so the guest's next submission sees them.
    ///
    /// `cost.uploadNanoseconds`/`downloadNanoseconds` are the backend's host copies (into
    /// staging or mapped buffers at submit, out of them at wait); the device's copies between
    /// staging and GPU memory are GPU work and lie in `gpuNanoseconds`.
    private func run(_ batch: ValidatedBatch, _ plan: [GuestSync], for context: Context,
                     cost: inout VGPUStatistics) -> VirtioGPUProtocol.Response {
        var batch = batch
        do throws(GuestMemoryError) {
            for sync in plan {
                for range in merged(sync.uploads) {
                    for piece in try guestPieces(sync.backing, backingOffset: range.lowerBound, hostOffset: range.lowerBound,
                                                 count: UInt64(range.count)) {
                        batch.uploads.append(HostTransfer(buffer: sync.buffer, byteOffset: piece.hostOffset, host: piece.guest))
                    }
                    cost.uploadBytes += UInt64(range.count)
                }
                for range in merged(sync.downloads) {
                    for piece in try guestPieces(sync.backing, backingOffset: range.lowerBound, hostOffset: range.lowerBound,
                                                 count: UInt64(range.count)) {
                        batch.downloads.append(HostTransfer(buffer: sync.buffer, byteOffset: piece.hostOffset, host: piece.guest))
                    }
                    cost.downloadBytes += UInt64(range.count)
                }
            }
        } catch {
            logger.warning("vGPU submission's guest backing is not guest RAM: \(error)",
                           metadata: ["device": "\(name)", "context": "\(context.name)"])
            return .errorUnspecified
        }
        let outcome: Result<ScheduledCompletion, SchedulerError>
        do { outcome = try scheduler.submit(batch, for: context.client).wait() } catch { outcome = .failure(error) }
        return complete(outcome, for: context, cost: &cost)
    }

    /// A batch's outcome as the guest hears it, its GPU, queueing and host-copy times in `cost`.
    private func complete(_ outcome: Result<ScheduledCompletion, SchedulerError>, for context: Context,
                          cost: inout VGPUStatistics) -> VirtioGPUProtocol.Response {
        switch outcome {
        case let .failure(error):
            logger.warning("vGPU submission failed: \(error)", metadata: ["device": "\(name)", "context": "\(context.name)"])
            return .errorUnspecified
        case let .success(completion):
            cost.gpuNanoseconds = completion.chargedNanoseconds
            cost.queueingNanoseconds = completion.queueingNanoseconds
            cost.uploadNanoseconds = completion.batch.uploadNanoseconds
            cost.downloadNanoseconds = completion.batch.downloadNanoseconds
            cost.submitNanoseconds = completion.batch.submitNanoseconds
            cost.replayedRecordings = completion.batch.replayedRecording ? 1 : 0
            cost.zeroCopyBytes = completion.batch.zeroCopyBytes
            return .okNoData
        }
    }

    /// Sorted, with overlapping and touching ranges joined.
    private func merged(_ ranges: [Range<UInt64>]) -> [Range<UInt64>] {
        var out: [Range<UInt64>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, range.lowerBound <= last.upperBound {
                out[out.count - 1] = last.lowerBound ..< max(last.upperBound, range.upperBound)
            } else {
                out.append(range)
            }
        }
        return out
    }
}
