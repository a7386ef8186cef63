import GPUHost
import MLaaS
import Synchronization

/// The process's GPU scheduler as MLaaS services reach it: MLaaS's `ServiceScheduling` (a VM's
/// batch-duration model, in the C ABI's terms) over GPUHost's `setBatchModel`. The one place
/// that sees both: the registry never sees a scheduler, and the scheduler never sees a service.
///
/// A VM's process may create its scheduler after its services attached (its first vGPU
/// hot-plugged through the API): a model waits here and goes to every scheduler adopted.
public final class MLaaSSchedulerBridge: ServiceScheduling, @unchecked Sendable {
    public let timeSliceNanoseconds: UInt64
    private let state = Mutex<(schedulers: [GPUScheduler], models: [String: ModuleBatchModel])>(([], [:]))

    /// A bridge for schedulers made with `configuration` (the slice a service predicts against).
    public init(configuration: SchedulerConfiguration = SchedulerConfiguration()) {
        timeSliceNanoseconds = configuration.timeSlice(forClients: 1)
    }

    /// A bridge to `scheduler`.
    public convenience init(_ scheduler: GPUScheduler) {
        self.init(configuration: scheduler.configuration)
        adopt(scheduler)
    }

    /// Applies the models installed so far, and every later one, to `scheduler` too.
    public func adopt(_ scheduler: GPUScheduler) {
        state.withLock { state in
            state.schedulers.append(scheduler)
            for (vm, model) in state.models { scheduler.setBatchModel(model, forVM: vm) }
        }
    }

    public func setBatchModel(_ model: ServiceBatchModel?, forVM vm: String) {
        state.withLock { state in
            let wrapped = model.map(ModuleBatchModel.init)
            state.models[vm] = wrapped
            for scheduler in state.schedulers { scheduler.setBatchModel(wrapped, forVM: vm) }
        }
    }
}

/// A service's model as GPUHost's `BatchDurationModel`.
final class ModuleBatchModel: BatchDurationModel, @unchecked Sendable {
    let model: ServiceBatchModel

    init(_ model: ServiceBatchModel) { self.model = model }

    func predict(client: ClientID, signature: UInt64, work: Double) -> Double? {
        model.predict(client: UInt64(client.rawValue), signature: signature, work: work)
    }

    func observe(client: ClientID, signature: UInt64, work: Double, nanoseconds: Double) {
        model.observe(client: UInt64(client.rawValue), signature: signature, work: work, nanoseconds: nanoseconds)
    }
}

/// An MLaaS service attached to a VM of a scheduler in this process, with no VM around it: the
/// module as `--mlaas NAME` loads it, for `malvvm bench gpu learned-slice`.
public enum SchedulerServiceAttachment {
    /// Loads `service` from `directory`, attaches VM `vm` (whose clients on `scheduler` it then
    /// serves); returns what unloads it again.
    public static func attach(service: String, vm: String, to scheduler: GPUScheduler,
                              directory: ModuleDirectory = .besideExecutable) throws(MLaaSError) -> () -> Void {
        let registry = ServiceRegistry(directory: directory, scheduling: MLaaSSchedulerBridge(scheduler))
        try registry.load(service: service)
        do { _ = try registry.attach(service: service, vm: VMDescription(name: vm)) } catch {
            registry.unloadAll()
            throw error
        }
        return { registry.unloadAll() }
    }
}
