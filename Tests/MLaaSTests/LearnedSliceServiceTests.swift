import CMLaaS
import Foundation
@testable import MLaaS
import Platform
import Testing

/// The real liblearned-slice.so through the host table's `scheduler` capability (no GPU here: the
/// scheduler side is this process's `ServiceScheduling`, which records the model it is given;
/// ControlAPITests run the module against a real GPUScheduler). Selecting the service installs
/// a model for the VM, the model learns per client and batch signature, and it ends with the VM.
@Suite(.serialized) struct LearnedSliceServiceTests {
    /// The scheduler side as a service reaches it: the models installed, by VM.
    final class InstalledModels: ServiceScheduling, @unchecked Sendable {
        let timeSliceNanoseconds: UInt64 = 2_000_000
        private let lock = Monitor()
        private var models: [String: ServiceBatchModel] = [:]

        func setBatchModel(_ model: ServiceBatchModel?, forVM vm: String) { lock.withLock { models[vm] = model } }
        func model(_ vm: String) -> ServiceBatchModel? { lock.withLock { models[vm] } }
    }

    @Test func theSchedulerTableIsAVersionedCapabilityWhereTheProcessSchedules() {
        let scheduling = InstalledModels()
        let context = HostContext(serviceName: "test", scheduling: scheduling)
        let table = context.makeTable()
        defer { table.deallocate() }
        #expect(table.pointee.abi_version == 2, "a capability: modules built before it keep loading")
        let scheduler = table.pointee.scheduler
        #expect(scheduler?.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_scheduler>.size))
        #expect(scheduler?.pointee.version == 1 && scheduler?.pointee.time_slice_ns == 2_000_000)
    }

    @Test func aModelGoesInOnlyForAnAttachedVMAndEndsWithIt() throws {
        let scheduling = InstalledModels()
        let context = HostContext(serviceName: "test", scheduling: scheduling)
        let table = context.makeTable()
        defer { table.deallocate() }
        let scheduler = try #require(table.pointee.scheduler)
        let host = table.pointee.host_context
        var model = malv_mlaas_batch_model()
        model.struct_size = UInt32(MemoryLayout<malv_mlaas_batch_model>.size)
        model.predict = { _, _, _, work in work * 2 }
        model.observe = { _, _, _, _, _ in }
        #expect(scheduler.pointee.set_batch_model!(host, 9, &model) == MALV_MLAAS_E_NOT_FOUND, "never attached")
        context.attach(vm: 9, name: "vm9", grants: [])
        #expect(scheduler.pointee.set_batch_model!(host, 9, nil) == MALV_MLAAS_E_INVALID)
        var short = model
        short.struct_size = 8
        #expect(scheduler.pointee.set_batch_model!(host, 9, &short) == MALV_MLAAS_E_INVALID)
        var noObserver = model
        noObserver.observe = nil
        #expect(scheduler.pointee.set_batch_model!(host, 9, &noObserver) == MALV_MLAAS_E_INVALID)
        #expect(scheduling.model("vm9") == nil)
        #expect(scheduler.pointee.set_batch_model!(host, 9, &model) == MALV_MLAAS_OK)
        #expect(scheduling.model("vm9")?.predict(client: 1, signature: 1, work: 21) == 42)
        // What the service says it does not know is nil, whatever the float.
        var unknowing = model
        unknowing.predict = { _, _, _, _ in -.infinity }
        #expect(scheduler.pointee.set_batch_model!(host, 9, &unknowing) == MALV_MLAAS_OK)
        #expect(scheduling.model("vm9")?.predict(client: 1, signature: 1, work: 21) == nil)
        context.detach(vm: 9)
        #expect(scheduling.model("vm9") == nil, "the host removes a detached VM's model itself")
        #expect(scheduler.pointee.set_batch_model!(host, 9, &model) == MALV_MLAAS_E_DETACHED)
    }

    @Test func theModuleLearnsEachClientsBatchesAndLeavesWithTheVM() throws {
        let scheduling = InstalledModels()
        let registry = ServiceRegistry(directory: ModuleDirectory(Modules.shared), scheduling: scheduling)
        defer { registry.unloadAll() }
        let info = try registry.load(service: "learned-slice")
        #expect(info.kind == .mlForOS)
        _ = try registry.attach(service: "learned-slice", vm: VMDescription(name: "train1"))
        let model = try #require(scheduling.model("train1"), "selecting the service installs the VM's model")
        #expect(model.predict(client: 1, signature: 7, work: 100) == nil, "nothing learned yet")
        model.observe(client: 1, signature: 7, work: 100, nanoseconds: 1000)
        #expect(model.predict(client: 1, signature: 7, work: 100) == 1000)
        // A signature never seen is priced by the client's nanoseconds per unit of work.
        #expect(model.predict(client: 1, signature: 8, work: 50) == 500)
        // Another client of the VM learns for itself.
        #expect(model.predict(client: 2, signature: 7, work: 100) == nil)
        // A changed workload is followed within a few batches.
        for _ in 0 ..< 12 { model.observe(client: 1, signature: 7, work: 100, nanoseconds: 3000) }
        let followed = model.predict(client: 1, signature: 7, work: 100) ?? 0
        #expect(abs(followed - 3000) < 100, "\(followed)")
        // Bounded memory: a signature in use is kept while hundreds of others come and go.
        model.observe(client: 3, signature: 1, work: 1, nanoseconds: 7)
        for signature in UInt64(2) ..< 400 {
            model.observe(client: 3, signature: signature, work: 1, nanoseconds: 1)
            if signature % 8 == 0 { _ = model.predict(client: 3, signature: 1, work: 1) }
        }
        #expect(model.predict(client: 3, signature: 1, work: 1) == 7)
        // Garbage measurements teach nothing.
        model.observe(client: 1, signature: 7, work: 100, nanoseconds: .nan)
        model.observe(client: 1, signature: 7, work: -1, nanoseconds: 5)
        #expect(model.predict(client: 1, signature: 7, work: 100) == followed)
        try registry.detach(service: "learned-slice", vm: "train1")
        #expect(scheduling.model("train1") == nil)
    }

    @Test func withoutASchedulerInTheProcessSelectingItIsAClearError() throws {
        let registry = ServiceRegistry(directory: ModuleDirectory(Modules.shared))
        defer { registry.unloadAll() }
        try registry.load(service: "learned-slice")
        #expect(throws: MLaaSError.self) { try registry.attach(service: "learned-slice", vm: VMDescription(name: "vm")) }
        do {
            _ = try registry.attach(service: "learned-slice", vm: VMDescription(name: "vm"))
        } catch {
            #expect("\(error)".contains("not supported") || "\(error)".contains("unsupported"), "\(error)")
        }
        #expect(registry.list().first?.vms == [])
    }
}
