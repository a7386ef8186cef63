@testable import GPUHost
import Platform
import Testing

/// `learned-slice` (issue #17, "ML for OS"): with a batch-duration model installed for a VM (the
/// MLaaS module's, through `setBatchModel`), the scheduler cuts a batch of the VM's predicted to
/// outlast a time slice into slice-sized pieces at kernel boundaries. The client must not be able to tell, except that others' short batches now
/// slip in between its pieces.
@Suite("Learned slice")
struct LearnedSliceTests {
    // MARK: The model's calls

    /// A batch-duration model that predicts what a signature took last time: the simplest
    /// learner, so these tests check the scheduler's side (the learned-slice module's own
    /// learning is tested where it is loaded, in the MLaaS and ControlAPI tests).
    final class LastDurationModel: BatchDurationModel, @unchecked Sendable {
        struct Call: Equatable {
            var client: ClientID
            var signature: UInt64
            var work: Double
            var nanoseconds: Double?
        }

        private let lock = Monitor()
        private var last: [UInt64: Double] = [:]
        private(set) var predictions: [Call] = []
        private(set) var observations: [Call] = []

        func predict(client: ClientID, signature: UInt64, work: Double) -> Double? {
            lock.withLock {
                predictions.append(Call(client: client, signature: signature, work: work))
                return last[signature]
            }
        }

        func observe(client: ClientID, signature: UInt64, work: Double, nanoseconds: Double) {
            lock.withLock {
                observations.append(Call(client: client, signature: signature, work: work, nanoseconds: nanoseconds))
                last[signature] = nanoseconds
            }
        }

        var calls: (predictions: [Call], observations: [Call]) { lock.withLock { (predictions, observations) } }
    }

    static func learnedClient(_ scheduler: GPUScheduler, _ name: String = "learned") throws -> (ClientID, LastDurationModel) {
        let model = LastDurationModel()
        scheduler.setBatchModel(model, forVM: "vm-\(name)")
        return (try scheduler.addClient(ClientConfiguration(name: name, owner: ClientOwner(vm: "vm-\(name)", vgpu: "vgpu0"))), model)
    }

    @Test("the VM's model is asked before each batch and told once what the whole batch cost; other VMs' clients never reach it")
    func modelSeesEveryBatchOnceByItsSignature() throws {
        let backend = CPUBackend()
        let scheduler = try GPUScheduler(backend: backend, configuration: SchedulerConfiguration(
            policy: .equalShare, timeSliceNanoseconds: 1_000_000))
        defer { scheduler.stop() }
        let (learned, model) = try Self.learnedClient(scheduler)
        let other = try scheduler.addClient(ClientConfiguration(name: "other", owner: ClientOwner(vm: "another-vm", vgpu: "vgpu0")))
        let count = 64 << 10
        var batches: [ClientID: ValidatedBatch] = [:]
        for client in [learned, other] {
            let buffer = try scheduler.createBuffer(for: client, byteCount: count * 4)
            let range = BufferRange(buffer, count: count)
            batches[client] = try ValidatedBatch(CommandBatch((0 ..< 64).map { _ in .scale(ScaleParams(count: count, alpha: 1, x: range)) }),
                                                 capacity: { _ in count * 4 })
        }
        for _ in 0 ..< 3 {
            for client in [learned, other] { _ = try scheduler.submit(batches[client]!, for: client).wait().get() }
        }
        let batch = try #require(batches[learned])
        let (predictions, observations) = model.calls
        #expect(predictions.count == 3 && observations.count == 3, "one call each per submitted batch, pieces or not")
        #expect(predictions.allSatisfy { $0.client == learned && $0.signature == batch.kernelList.serial })
        #expect(predictions.allSatisfy { $0.work == batch.kernelWork.reduce(0, +) })
        #expect(observations.allSatisfy { ($0.nanoseconds ?? 0) > 0 })
        #expect(batches[other]!.kernelList.serial != batch.kernelList.serial, "two lists, two signatures")
        #expect(scheduler.metrics().clients.first { $0.id == learned }.map { $0.learnedSlice && $0.batchesCut == 2 } == true)
        // Removed: the next batch goes whole and the model hears nothing more.
        scheduler.setBatchModel(nil, forVM: "vm-learned")
        _ = try scheduler.submit(batch, for: learned).wait().get()
        #expect(model.calls.predictions.count == 3)
        #expect(scheduler.metrics().clients.first { $0.id == learned }.map { !$0.learnedSlice && $0.batchesCut == 2 } == true)
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
        let (learned, _) = try Self.learnedClient(scheduler)
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
        let (trainer, _) = try Self.learnedClient(scheduler, "trainer")
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
        let (client, _) = try Self.learnedClient(scheduler)
        let count = 64 << 10
        let buffer = try scheduler.createBuffer(for: client, byteCount: count * 4)
        let range = BufferRange(buffer, count: count)
        let long = try ValidatedBatch(CommandBatch((0 ..< 96).map { _ in .scale(ScaleParams(count: count, alpha: 1, x: range)) }),
                                      capacity: { _ in count * 4 })
        _ = try scheduler.submit(long, for: client).wait()
        let ticket = try scheduler.submit(long, for: client)
        try scheduler.removeClient(client)
        // One submitted batch, however many of its pieces were still queued.
        #expect(scheduler.metrics().cancelledBatches == 1)
        switch ticket.wait() {
        case .failure(.cancelled(client)): break
        case .success: Issue.record("every piece ran before the removal: make the batch longer")
        case let .failure(error): Issue.record("\(error)")
        }
    }
}
