import CMLaaS
import MLaaSServiceSupport
import Synchronization

// The `learned-slice` service (ml-for-os), built as liblearned-slice.so (docs/mlaas.md): a model
// of how long each of a VM's GPU batches takes, learned online per scheduler client and batch
// signature (DurationPredictor), installed into the GPU scheduler that serves the VM through the
// host table's `scheduler` capability. The scheduler cuts a batch the model predicts to run
// longer than a slice and a half into slice-sized pieces, so other VMs' short batches wait for a
// piece rather than the whole batch, at the same share. Selecting the service is all it takes
// (`malvvm run --mlaas learned-slice`, or the VM's hello to a GPU daemon that loaded it); it
// takes no parameters.

/// The service-wide state: the host table.
final class LearnedSliceService {
    let host: UnsafePointer<malv_mlaas_host>
    init(host: UnsafePointer<malv_mlaas_host>) { self.host = host }

    var scheduler: UnsafePointer<malv_mlaas_scheduler>? { schedulerCapability(of: host) }

    func log(_ level: malv_mlaas_log_level, _ message: String) { hostLog(host, level, message) }
}

/// One VM's model: a predictor per scheduler client of its vGPUs.
final class LearnedSliceVM: @unchecked Sendable {
    let service: LearnedSliceService
    let handle: UInt64
    let name: String

    struct Counts {
        var predictions: UInt64 = 0
        var longPredictions: UInt64 = 0
        var observations: UInt64 = 0
    }

    /// The scheduler calls in under its own lock, so this is never contended there; it guards
    /// against the detach's report reading beside a call.
    private let state = Mutex((clients: [UInt64: DurationPredictor](), counts: Counts()))
    /// The scheduler's slice, to count the predictions that would cut (for the report).
    let timeSliceNanoseconds: Double

    init(service: LearnedSliceService, vm: UnsafePointer<malv_mlaas_vm>, timeSliceNanoseconds: UInt64) {
        self.service = service
        handle = vm.pointee.handle
        name = vm.pointee.name.map { String(cString: $0) } ?? "?"
        self.timeSliceNanoseconds = Double(timeSliceNanoseconds)
    }

    func predict(client: UInt64, signature: UInt64, work: Double) -> Double {
        state.withLock { state in
            state.counts.predictions += 1
            guard let nanoseconds = state.clients[client]?.predict(signature: signature, work: work) else { return -1 }
            if nanoseconds > 1.5 * timeSliceNanoseconds { state.counts.longPredictions += 1 }
            return nanoseconds
        }
    }

    func observe(client: UInt64, signature: UInt64, work: Double, nanoseconds: Double) {
        state.withLock { state in
            state.counts.observations += 1
            state.clients[client, default: DurationPredictor()].observe(signature: signature, work: work, nanoseconds: nanoseconds)
        }
    }

    /// One line on what the model learned: for the host's log at detach.
    var report: String {
        state.withLock { state in
            let checked = state.clients.values.reduce(0) { $0 + $1.predictionsChecked }
            let error = state.clients.values.reduce(0.0) { $0 + $1.relativeErrorSum }
            let signatures = state.clients.values.reduce(0) { $0 + $1.knownSignatures }
            let accuracy = checked == 0 ? "no repeated batch" : "mean prediction error \(Int((100 * error / Double(checked)).rounded())) %"
            return "VM '\(name)': \(state.clients.count) client(s), \(signatures) batch signature(s) learned, "
                + "\(state.counts.observations) batches observed, \(state.counts.predictions) predictions "
                + "(\(state.counts.longPredictions) over a slice and a half), \(accuracy)"
        }
    }
}

nonisolated(unsafe) private let descriptor: UnsafeMutablePointer<malv_mlaas_service> = {
    let d = makeServiceDescriptor(kind: MALV_MLAAS_KIND_ML_FOR_OS, name: "learned-slice", version: "0.1.0",
                                  description: "learns each vGPU batch's duration; the GPU scheduler cuts long batches into slice-sized pieces")
    d.pointee.initialize = { host, serviceState in
        guard let host, let serviceState else { return MALV_MLAAS_E_INVALID }
        guard hostSpeaksThisABI(host) else { return MALV_MLAAS_E_VERSION }
        serviceState.pointee = Unmanaged.passRetained(LearnedSliceService(host: host)).toOpaque()
        return MALV_MLAAS_OK
    }
    d.pointee.attach = { serviceState, vm, vmState in
        guard let serviceState, let vm, let vmState, vm.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_vm>.size) else {
            return MALV_MLAAS_E_INVALID
        }
        let service = Unmanaged<LearnedSliceService>.fromOpaque(serviceState).takeUnretainedValue()
        // Without a scheduler in this process there is nothing to learn for: refuse, so the
        // operator sees the service cannot work here rather than a service that does nothing.
        guard let scheduler = service.scheduler, let install = scheduler.pointee.set_batch_model else {
            return MALV_MLAAS_E_UNSUPPORTED
        }
        let state = LearnedSliceVM(service: service, vm: vm, timeSliceNanoseconds: scheduler.pointee.time_slice_ns)
        let cookie = Unmanaged.passRetained(state).toOpaque()
        var model = malv_mlaas_batch_model()
        model.struct_size = UInt32(MemoryLayout<malv_mlaas_batch_model>.size)
        model.cookie = cookie
        model.predict = { cookie, client, signature, work in
            guard let cookie else { return -1 }
            return Unmanaged<LearnedSliceVM>.fromOpaque(cookie).takeUnretainedValue().predict(client: client, signature: signature, work: work)
        }
        model.observe = { cookie, client, signature, work, nanoseconds in
            guard let cookie else { return }
            Unmanaged<LearnedSliceVM>.fromOpaque(cookie).takeUnretainedValue()
                .observe(client: client, signature: signature, work: work, nanoseconds: nanoseconds)
        }
        let status = install(service.host.pointee.host_context, state.handle, &model)
        guard status == MALV_MLAAS_OK else {
            Unmanaged<LearnedSliceVM>.fromOpaque(cookie).release()
            return status
        }
        vmState.pointee = cookie
        return MALV_MLAAS_OK
    }
    d.pointee.detach = { _, vmState in
        guard let vmState else { return }
        let vm = Unmanaged<LearnedSliceVM>.fromOpaque(vmState)
        let state = vm.takeUnretainedValue()
        // The host removed the model before this call; removing it again is harmless and keeps
        // this module correct on a host that did not.
        if let scheduler = state.service.scheduler {
            scheduler.pointee.clear_batch_model?(state.service.host.pointee.host_context, state.handle)
        }
        state.service.log(MALV_MLAAS_LOG_INFO, state.report)
        vm.release()
    }
    d.pointee.unload = { serviceState in
        if let serviceState { Unmanaged<LearnedSliceService>.fromOpaque(serviceState).release() }
    }
    return d
}()

@_cdecl("malv_mlaas_service_v1")
public func malvMLaaSServiceV1() -> UnsafePointer<malv_mlaas_service> {
    UnsafePointer(descriptor)
}
