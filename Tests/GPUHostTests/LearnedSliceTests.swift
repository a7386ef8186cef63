@testable import GPUHost
import Testing

/// `learned-slice` (issue #17, "ML for OS"): the scheduler learns how long a client's batches
/// take and cuts one predicted to outlast a time slice into slice-sized pieces at kernel
/// boundaries. The client must not be able to tell, except that others' short batches now
/// slip in between its pieces.
@Suite("Learned slice")
struct LearnedSliceTests {
    // MARK: The predictor

    @Test("a signature's prediction follows its measurements; an unseen one is priced by its work")
    func predictorLearnsPerSignatureAndPerWork() {
        var predictor = BatchDurationPredictor()
        let step = KernelListIdentity(), other = KernelListIdentity()
        #expect(predictor.predict(step, work: 100) == nil, "nothing learned yet")
        predictor.observe(step, work: 100, nanoseconds: 1000)
        #expect(predictor.predict(step, work: 100) == 1000)
        // An unseen signature: 10 ns per unit of work, as measured so far.
        #expect(predictor.predict(other, work: 50) == 500)
        // A changed workload is followed within a few batches.
        for _ in 0 ..< 12 { predictor.observe(step, work: 100, nanoseconds: 3000) }
        let followed = predictor.predict(step, work: 100) ?? 0
        #expect(abs(followed - 3000) < 100, "\(followed)")
    }

    @Test("it remembers a bounded number of signatures, the least recently seen going first")
    func predictorForgetsTheLeastRecentlySeen() {
        var predictor = BatchDurationPredictor()
        let kept = KernelListIdentity()
        predictor.observe(kept, work: 1, nanoseconds: 7)
        var others: [KernelListIdentity] = []
        for index in 0 ..< BatchDurationPredictor.capacity + 10 {
            let identity = KernelListIdentity()
            others.append(identity)
            predictor.observe(identity, work: 1, nanoseconds: 1)
            if index % 8 == 0 { _ = predictor.predict(kept, work: 1) }
        }
        #expect(predictor.knownSignatures == BatchDurationPredictor.capacity)
        #expect(predictor.predict(kept, work: 1) == 7, "kept in use, so not evicted")
    }

    // MARK: Pieces

    static func chain(_ backend: any ComputeBackend, kernels: Int, count: Int = 4096) throws
        -> (batch: CommandBatch, buffer: BufferID, input: HostArea, output: HostArea) {
        let buffer = try backend.createBuffer(byteCount: count * 4, placement: .deviceLocal)
        let input = HostArea(floats: (0 ..< count).map { Float($0 % 97) })
        let output = HostArea(count: count * 4)
        let range = BufferRange(buffer, count: count)
        // x ← 1.25 x + x, then scaled, alternately: every piece depends on the one before.
        let kernels: [Kernel] = (0 ..< kernels).map { index in
            index % 2 == 0 ? .axpy(AxpyParams(count: count, alpha: 0.25, x: range, y: range)) : .scale(ScaleParams(count: count, alpha: 0.5, x: range))
        }
        return (CommandBatch(kernels, uploads: [HostTransfer(buffer: buffer, byteOffset: 0, host: input.bytes)],
                             downloads: [HostTransfer(buffer: buffer, byteOffset: 0, host: output.bytes)]), buffer, input, output)
    }

    @Test("pieces hold the kernels in order, the uploads first and the downloads last, and the same cut names the same pieces")
    func piecesCoverTheBatch() throws {
        let backend = CPUBackend()
        let job = try Self.chain(backend, kernels: 10)
        let batch = try ValidatedBatch(job.batch, capacity: { backend.capacity(of: $0) })
        let pieces = batch.segments(cuttingBefore: [3, 7])
        #expect(pieces.map(\.kernels.count) == [3, 4, 3])
        #expect(pieces.flatMap(\.kernels) == batch.kernels)
        #expect(pieces.map(\.uploads.count) == [1, 0, 0] && pieces.map(\.downloads.count) == [0, 0, 1])
        let again = batch.segments(cuttingBefore: [3, 7])
        #expect(zip(pieces, again).allSatisfy { $0.kernelList === $1.kernelList })
        #expect(batch.segments(cuttingBefore: [4]).first?.kernelList !== pieces.first?.kernelList)
        #expect(batch.kernelWork.count == 10 && batch.kernelWork.allSatisfy { $0 > 0 })
    }

    @Test("a learned client's long batches are cut, compute what they computed whole, and complete once")
    func learnedBatchesAreCutAndCorrect() throws {
        let backend = CPUBackend()
        // The shortest slice, so a 64-kernel batch over 64 Ki floats outlasts it by far.
        let scheduler = try GPUScheduler(backend: backend, configuration: SchedulerConfiguration(
            policy: .equalShare, timeSliceNanoseconds: 1_000_000))
        defer { scheduler.stop() }
        let learned = try scheduler.addClient(ClientConfiguration(name: "learned", learnedSlice: true))
        let plain = try scheduler.addClient(ClientConfiguration(name: "plain"))
        var outputs: [[Float]] = []
        for client in [learned, plain] {
            let count = 64 << 10
            let buffer = try scheduler.createBuffer(for: client, byteCount: count * 4)
            let input = HostArea(floats: (0 ..< count).map { Float($0 % 97) })
            let output = HostArea(count: count * 4)
            let range = BufferRange(buffer, count: count)
            let kernels: [Kernel] = (0 ..< 64).map { index in
                index % 2 == 0 ? .axpy(AxpyParams(count: count, alpha: 0.25, x: range, y: range)) : .scale(ScaleParams(count: count, alpha: 0.5, x: range))
            }
            let batch = try ValidatedBatch(CommandBatch(kernels, uploads: [HostTransfer(buffer: buffer, byteOffset: 0, host: input.bytes)],
                                                        downloads: [HostTransfer(buffer: buffer, byteOffset: 0, host: output.bytes)]),
                                           capacity: { _ in count * 4 })
            for round in 0 ..< 3 {
                let completion = try scheduler.submit(batch, for: client).wait().get()
                #expect(completion.batch.kernelCount == 64, "round \(round)")
            }
            outputs.append(output.floats)
        }
        #expect(outputs[0] == outputs[1], "the pieces computed something else than the whole batch")
        let metrics = scheduler.metrics().clients
        let cut = try #require(metrics.first { $0.id == learned })
        // The first round is measured whole; the next two are cut.
        #expect(cut.learnedSlice && cut.batchesCut == 2 && cut.piecesMade >= 4, "\(cut)")
        #expect(metrics.first { $0.id == plain }?.batchesCut == 0)
    }

    @Test("another client's short batch runs between the pieces of a learned client's long batch")
    func shortBatchesSlipInBetweenPieces() throws {
        let backend = CPUBackend()
        let scheduler = try GPUScheduler(backend: backend, configuration: SchedulerConfiguration(
            policy: .bestEffort, timeSliceNanoseconds: 1_000_000, maxBatchesInFlight: 1))
        defer { scheduler.stop() }
        let trainer = try scheduler.addClient(ClientConfiguration(name: "trainer", learnedSlice: true))
        let small = try scheduler.addClient(ClientConfiguration(name: "small"))
        let count = 64 << 10
        let big = try scheduler.createBuffer(for: trainer, byteCount: count * 4)
        let range = BufferRange(big, count: count)
        let long = try ValidatedBatch(CommandBatch((0 ..< 96).map { _ in .scale(ScaleParams(count: count, alpha: 1, x: range)) }),
                                      capacity: { _ in count * 4 })
        let tiny = try scheduler.createBuffer(for: small, byteCount: 64)
        let short = CommandBatch([.scale(ScaleParams(count: 16, alpha: 2, x: BufferRange(tiny, count: 16)))])
        _ = try scheduler.submit(long, for: trainer).wait()  // learned: far longer than a slice
        let whole = try scheduler.submit(long, for: trainer)
        let quick = try scheduler.submit(short, for: small)
        let (longDone, shortDone) = (try whole.wait().get(), try quick.wait().get())
        #expect(shortDone.completedAt < longDone.completedAt, "the short batch waited for the whole long one")
        #expect(scheduler.metrics().clients.first { $0.id == trainer }?.batchesCut == 1)
    }

    @Test("removing a learned client with pieces queued fails its batch once, as cancelled")
    func removalCancelsQueuedPiecesOnce() throws {
        let backend = CPUBackend()
        let scheduler = try GPUScheduler(backend: backend, configuration: SchedulerConfiguration(timeSliceNanoseconds: 1_000_000))
        defer { scheduler.stop() }
        let client = try scheduler.addClient(ClientConfiguration(name: "learned", learnedSlice: true))
        let count = 64 << 10
        let buffer = try scheduler.createBuffer(for: client, byteCount: count * 4)
        let range = BufferRange(buffer, count: count)
        let long = try ValidatedBatch(CommandBatch((0 ..< 96).map { _ in .scale(ScaleParams(count: count, alpha: 1, x: range)) }),
                                      capacity: { _ in count * 4 })
        _ = try scheduler.submit(long, for: client).wait()
        let ticket = try scheduler.submit(long, for: client)
        try scheduler.removeClient(client)
        switch ticket.wait() {
        case .failure(.cancelled(client)): break
        case .success: Issue.record("every piece ran before the removal: make the batch longer")
        case let .failure(error): Issue.record("\(error)")
        }
    }
}
