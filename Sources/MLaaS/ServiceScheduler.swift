import CMLaaS
import Platform

// The host table's `scheduler` capability (malv_mlaas.h, "Scheduler hooks"): a service installs a
// model of a VM's batch durations, which the GPU scheduler serving the VM's vGPUs consults to
// cut long batches (`learned-slice`). This file keeps which VMs a service installed a model for,
// so the models end with the VM, and copies the service's C struct into a value the process's
// scheduler calls; the scheduler itself is behind `ServiceScheduling`, which the process
// implements over its GPUScheduler (so this module never sees GPUHost).

/// A VM's batch-duration model as a service gave it (its `malv_mlaas_batch_model`, copied).
/// Its callbacks run wherever the scheduler calls them, with the scheduler's lock held.
public struct ServiceBatchModel: @unchecked Sendable {
    private let cookie: UnsafeMutableRawPointer?
    private let predictCall: @convention(c) (UnsafeMutableRawPointer?, UInt64, UInt64, Double) -> Double
    private let observeCall: @convention(c) (UnsafeMutableRawPointer?, UInt64, UInt64, Double, Double) -> Void

    /// nil when the service's struct is too small or a callback is missing.
    init?(_ raw: malv_mlaas_batch_model) {
        guard raw.struct_size >= UInt32(MemoryLayout<malv_mlaas_batch_model>.size), raw.reserved == 0,
              let predict = raw.predict, let observe = raw.observe else { return nil }
        cookie = raw.cookie
        predictCall = predict
        observeCall = observe
    }

    /// The predicted device nanoseconds, or nil where the service knows nothing (a negative
    /// value, NaN or infinity).
    public func predict(client: UInt64, signature: UInt64, work: Double) -> Double? {
        let nanoseconds = predictCall(cookie, client, signature, work)
        return nanoseconds.isFinite && nanoseconds >= 0 ? nanoseconds : nil
    }

    public func observe(client: UInt64, signature: UInt64, work: Double, nanoseconds: Double) {
        observeCall(cookie, client, signature, work, nanoseconds)
    }
}

/// The GPU scheduler of this process as services reach it: where a VM's model goes.
public protocol ServiceScheduling: AnyObject, Sendable {
    /// The scheduler's time slice with one client.
    var timeSliceNanoseconds: UInt64 { get }
    /// Installs (nil: removes) the model of VM `vm`'s scheduler clients, present and future. When
    /// a removal returns, no callback of the removed model runs or will start.
    func setBatchModel(_ model: ServiceBatchModel?, forVM vm: String)
}

/// The models one service installed, by VM handle.
final class SchedulerHooks: @unchecked Sendable {
    let scheduling: (any ServiceScheduling)?
    private let lock = Monitor()
    private var installed: [UInt64: String] = [:]

    init(_ scheduling: (any ServiceScheduling)?) { self.scheduling = scheduling }

    func set(vm: UInt64, name: String, model raw: UnsafePointer<malv_mlaas_batch_model>?) -> Int32 {
        guard let scheduling else { return MALV_MLAAS_E_UNSUPPORTED }
        guard let raw, let model = ServiceBatchModel(raw.pointee) else { return MALV_MLAAS_E_INVALID }
        // Under the lock: a clear racing this set must not leave the model installed.
        lock.withLock {
            installed[vm] = name
            scheduling.setBatchModel(model, forVM: name)
        }
        return MALV_MLAAS_OK
    }

    func clear(vm: UInt64) {
        lock.withLock {
            guard let name = installed.removeValue(forKey: vm) else { return }
            scheduling?.setBatchModel(nil, forVM: name)
        }
    }
}

/// A `malv_mlaas_scheduler` table for one service's host table (the time slice is its process's).
enum ServiceSchedulerTable {
    static func make(timeSliceNanoseconds: UInt64) -> UnsafeMutablePointer<malv_mlaas_scheduler> {
        let table = UnsafeMutablePointer<malv_mlaas_scheduler>.allocate(capacity: 1)
        table.initialize(to: malv_mlaas_scheduler())
        table.pointee.struct_size = UInt32(MemoryLayout<malv_mlaas_scheduler>.size)
        table.pointee.version = UInt32(MALV_MLAAS_SCHEDULER_VERSION)
        table.pointee.time_slice_ns = timeSliceNanoseconds
        table.pointee.set_batch_model = { context, vm, model in
            guard let host = HostContext.from(context) else { return MALV_MLAAS_E_INVALID }
            guard let name = host.attachedName(vm: vm) else { return host.missingStatus(vm: vm) }
            let status = host.schedulerHooks.set(vm: vm, name: name, model: model)
            // Detached while the model was going in: take it out again.
            if status == MALV_MLAAS_OK, host.attachedName(vm: vm) == nil {
                host.schedulerHooks.clear(vm: vm)
                return MALV_MLAAS_E_DETACHED
            }
            return status
        }
        table.pointee.clear_batch_model = { context, vm in
            HostContext.from(context)?.schedulerHooks.clear(vm: vm)
        }
        return table
    }
}
