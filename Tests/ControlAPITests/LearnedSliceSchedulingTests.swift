import ControlAPI
import GPUHost
import Testing

/// The real liblearned-slice.so (beside this build's binaries) on a real GPUScheduler through
/// the process's bridge, as `malvvm run --mlaas learned-slice` and a GPU daemon wire it: the
/// VM's long batches are cut once the module has seen one, another VM's are not, and the cutting
/// stops when the service is unloaded.
@Suite struct LearnedSliceSchedulingTests {
    /// A client of VM `vm` and a batch of 64 kernels over 64 Ki floats: many 1 ms slices long on
    /// the CPU reference.
    static func longBatch(_ scheduler: GPUScheduler, vm: String) throws -> (ClientID, ValidatedBatch) {
        let client = try scheduler.addClient(ClientConfiguration(name: "\(vm)/ctx1", owner: ClientOwner(vm: vm, vgpu: "vgpu0", context: 1)))
        let count = 64 << 10
        let buffer = try scheduler.createBuffer(for: client, byteCount: count * 4)
        let range = BufferRange(buffer, count: count)
        let batch = try ValidatedBatch(CommandBatch((0 ..< 64).map { _ in .scale(ScaleParams(count: count, alpha: 1, x: range)) }),
                                       capacity: { _ in count * 4 })
        return (client, batch)
    }

    @Test func theModuleCutsItsVMsLongBatchesAndOnlyThose() throws {
        let scheduler = try GPUScheduler(backend: CPUBackend(), configuration: SchedulerConfiguration(
            policy: .equalShare, timeSliceNanoseconds: 1_000_000))
        defer { scheduler.stop() }
        let unload = try SchedulerServiceAttachment.attach(service: "learned-slice", vm: "train1", to: scheduler)
        var unloaded = false
        defer { if !unloaded { unload() } }
        let (learned, learnedBatch) = try Self.longBatch(scheduler, vm: "train1")
        let (other, otherBatch) = try Self.longBatch(scheduler, vm: "infer1")
        for _ in 0 ..< 3 {
            _ = try scheduler.submit(learnedBatch, for: learned).wait().get()
            _ = try scheduler.submit(otherBatch, for: other).wait().get()
        }
        func metrics(_ id: ClientID) throws -> ClientMetrics { try #require(scheduler.metrics().clients.first { $0.id == id }) }
        // The first batch is measured whole; the module then predicts it far over a slice.
        let cut = try metrics(learned)
        #expect(cut.learnedSlice && cut.batchesCut == 2 && cut.piecesMade >= 2 * 2, "\(cut)")
        let whole = try metrics(other)
        #expect(!whole.learnedSlice && whole.batchesCut == 0, "\(whole)")
        unload()
        unloaded = true
        _ = try scheduler.submit(learnedBatch, for: learned).wait().get()
        let after = try metrics(learned)
        #expect(!after.learnedSlice && after.batchesCut == 2, "unloading the service stops the cutting: \(after)")
    }

    @Test func aServiceThatIsNotThereIsAClearError() throws {
        let scheduler = try GPUScheduler(backend: CPUBackend())
        defer { scheduler.stop() }
        #expect(throws: (any Error).self) {
            _ = try SchedulerServiceAttachment.attach(service: "no-such-service", vm: "train1", to: scheduler)
        }
    }
}
