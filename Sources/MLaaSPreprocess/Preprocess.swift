import CMLaaS
import MLaaSServiceSupport

// The `preprocess` service (os-for-ml), built as libpreprocess.so (docs/mlaas.md, "preprocess").
//
// A guest enables it through its vGPU with a pipeline description (Pipeline.swift): a dataset
// on one of its own disks (records of H*W*C u8 pixels and a u8 label), the augmentation (resize,
// random crop with padding, horizontal flip, normalisation, a shuffle seed, a batch size) and
// where batches go (a context of that vGPU and two of its HOST3D resources, for images and
// labels). The service then reads the records straight from the VM's disk through the host's
// `read_range` and runs the pipeline on the GPU with GPUHost kernels through the host's `gpu`
// table, one batch ahead of the guest (BatchProducer.swift); the guest's NEXT request
// (MLAAS_REQUEST) hands it the next batch. The guest's CPU never touches a pixel; its own CPU
// reference (Guest/lib/preprocess_ref.c) computes the same batches from the same seed.
//
// This file is the C ABI's side: the descriptor and its entry points.

/// One VM's state: what attach granted and the pipeline configure accepted last.
final class PreprocessVM {
    let handle: UInt64
    let ranges: [(handle: UInt64, length: UInt64)]
    var pipeline: Pipeline?
    /// The running pipeline, when the last configure named a destination.
    var producer: BatchProducer?

    /// Stops the running pipeline, if any.
    func stop() {
        producer?.stop()
        producer = nil
    }

    init(handle: UInt64, ranges: [(handle: UInt64, length: UInt64)]) {
        self.handle = handle
        self.ranges = ranges
    }
}

/// The service's state: the host table it was given.
final class PreprocessService {
    let host: UnsafePointer<malv_mlaas_host>
    init(host: UnsafePointer<malv_mlaas_host>) { self.host = host }

    func log(_ level: malv_mlaas_log_level, _ message: String) { hostLog(host, level, message) }
}

/// The descriptor: identity and entry points (the host reads it for as long as the module is mapped).
nonisolated(unsafe) private let descriptor: UnsafeMutablePointer<malv_mlaas_service> = {
    let d = makeServiceDescriptor(kind: MALV_MLAAS_KIND_OS_FOR_ML, name: "preprocess", version: "0.2.0",
                                  description: "reads a VM's dataset from its own disk and augments it on its vGPU, a batch ahead of training")
    d.pointee.initialize = { host, serviceState in
        guard let host, let serviceState else { return MALV_MLAAS_E_INVALID }
        guard hostSpeaksThisABI(host) else { return MALV_MLAAS_E_VERSION }
        serviceState.pointee = Unmanaged.passRetained(PreprocessService(host: host)).toOpaque()
        return MALV_MLAAS_OK
    }
    d.pointee.attach = { serviceState, vm, vmState in
        guard let serviceState, let vm, let vmState, vm.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_vm>.size) else {
            return MALV_MLAAS_E_INVALID
        }
        let count = Int(vm.pointee.disk_range_count)
        guard count == 0 || vm.pointee.disk_ranges != nil else { return MALV_MLAAS_E_INVALID }
        let ranges = (0 ..< count).map { (handle: vm.pointee.disk_ranges[$0].handle, length: vm.pointee.disk_ranges[$0].length) }
        let service = Unmanaged<PreprocessService>.fromOpaque(serviceState).takeUnretainedValue()
        service.log(MALV_MLAAS_LOG_INFO, "attached VM '\(vm.pointee.name.map { String(cString: $0) } ?? "?")' with \(count) disk range(s)")
        vmState.pointee = Unmanaged.passRetained(PreprocessVM(handle: vm.pointee.handle, ranges: ranges)).toOpaque()
        return MALV_MLAAS_OK
    }
    d.pointee.configure = { serviceState, vmState, parameters, length, errorBuffer, capacity in
        guard let serviceState, let vmState, length <= 4096, parameters != nil || length == 0 else {
            writeError("the pipeline description must be at most 4096 bytes", errorBuffer, capacity)
            return MALV_MLAAS_E_INVALID
        }
        let service = Unmanaged<PreprocessService>.fromOpaque(serviceState).takeUnretainedValue()
        let vm = Unmanaged<PreprocessVM>.fromOpaque(vmState).takeUnretainedValue()
        let bytes = parameters.map { UnsafeRawBufferPointer(start: $0, count: Int(length)) } ?? UnsafeRawBufferPointer(start: nil, count: 0)
        guard bytes.allSatisfy({ (0x20 ... 0x7e).contains($0) }) else {
            writeError("the pipeline description must be printable ASCII", errorBuffer, capacity)
            return MALV_MLAAS_E_INVALID
        }
        let pipeline: Pipeline
        do throws(Pipeline.Invalid) { pipeline = try Pipeline(parsing: String(decoding: bytes, as: UTF8.self), ranges: vm.ranges) } catch {
            writeError("bad pipeline: \(error.message)", errorBuffer, capacity)
            return MALV_MLAAS_E_INVALID
        }
        // One bounded read through the host (the first record's label): the range is readable.
        guard let read = service.host.pointee.read_range else { return MALV_MLAAS_E_UNSUPPORTED }
        var label: UInt8 = 0
        let got = read(service.host.pointee.host_context, vm.handle, vm.ranges[pipeline.disk].handle,
                       pipeline.offset + pipeline.recordBytes - 1, &label, 1)
        guard got == 1 else {
            writeError("cannot read the dataset on disk \(pipeline.disk): \(String(cString: malv_mlaas_status_string(Int32(clamping: got))))",
                       errorBuffer, capacity)
            return got < 0 ? Int32(clamping: got) : MALV_MLAAS_E_IO
        }
        // A new configuration replaces the running one (its batches stop with it).
        vm.stop()
        vm.pipeline = pipeline
        guard let destination = pipeline.destination else {
            service.log(MALV_MLAAS_LOG_INFO, "pipeline checked: \(pipeline.summary) (no destination: nothing runs)")
            return MALV_MLAAS_OK
        }
        do throws(BatchProducer.Refused) {
            vm.producer = try BatchProducer(host: service.host, vm: vm.handle, range: vm.ranges[pipeline.disk].handle,
                                            pipeline: pipeline, destination: destination)
        } catch {
            vm.pipeline = nil
            writeError("bad destination: \(error.message)", errorBuffer, capacity)
            return error.status
        }
        service.log(MALV_MLAAS_LOG_INFO, "pipeline running: \(pipeline.summary) into context \(destination.context) resources \(destination.images)/\(destination.labels)")
        return MALV_MLAAS_OK
    }
    d.pointee.disable = { _, vmState in
        guard let vmState else { return }
        let vm = Unmanaged<PreprocessVM>.fromOpaque(vmState).takeUnretainedValue()
        vm.stop()
        vm.pipeline = nil
    }
    d.pointee.request = { _, vmState, request, length, response, capacity, errorBuffer, errorCapacity in
        guard let vmState else { return Int64(MALV_MLAAS_E_INVALID) }
        let vm = Unmanaged<PreprocessVM>.fromOpaque(vmState).takeUnretainedValue()
        let bytes = request.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(min(length, 4096)))) } ?? []
        guard length == 8, bytes.count == 8 else {
            writeError("a request is 8 bytes (le32 op, le32 reserved), not \(length)", errorBuffer, errorCapacity)
            return Int64(MALV_MLAAS_E_INVALID)
        }
        let op = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
        guard op == PreprocessRequest.next, bytes[4 ..< 8].allSatisfy({ $0 == 0 }) else {
            writeError("unknown request op \(op) (1 NEXT), or reserved is not 0", errorBuffer, errorCapacity)
            return Int64(MALV_MLAAS_E_INVALID)
        }
        guard let producer = vm.producer else {
            writeError("no pipeline is running (enable with context, images and labels first)", errorBuffer, errorCapacity)
            return Int64(MALV_MLAAS_E_INVALID)
        }
        guard let response, capacity >= UInt64(PreprocessRequest.nextAnswerBytes) else {
            writeError("NEXT's answer needs \(PreprocessRequest.nextAnswerBytes) bytes", errorBuffer, errorCapacity)
            return Int64(MALV_MLAAS_E_RANGE)
        }
        switch producer.next() {
        case let .failure(refused):
            writeError(refused.message, errorBuffer, errorCapacity)
            return Int64(refused.status)
        case let .success(batch):
            let answer = PreprocessRequest.encode(batch)
            answer.withUnsafeBytes { response.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            return Int64(answer.count)
        }
    }
    d.pointee.detach = { _, vmState in
        guard let vmState else { return }
        // Stops the producer (bounded: after the batch it is writing) before the VM's handle
        // and ranges become invalid.
        Unmanaged<PreprocessVM>.fromOpaque(vmState).takeUnretainedValue().stop()
        Unmanaged<PreprocessVM>.fromOpaque(vmState).release()
    }
    d.pointee.unload = { serviceState in
        if let serviceState { Unmanaged<PreprocessService>.fromOpaque(serviceState).release() }
    }
    return d
}()

/// The guest's requests (MLAAS_REQUEST's bytes): `le32 op, le32 reserved`.
enum PreprocessRequest {
    /// The next batch: answered once it is ready with `le32 slot, le32 count, le32 epoch,
    /// le32 index, le64 sequence, le64 waited_ns`.
    static let next: UInt32 = 1
    static let nextAnswerBytes = 32

    /// NEXT's answer, little-endian.
    static func encode(_ batch: BatchInfo) -> [UInt8] {
        var bytes: [UInt8] = []
        for word in [batch.slot, batch.count, batch.epoch, batch.index] {
            for i in 0 ..< 4 { bytes.append(UInt8(truncatingIfNeeded: word >> (8 * i))) }
        }
        for value in [batch.sequence, batch.waitedNanoseconds] {
            for i in 0 ..< 8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
        }
        return bytes
    }
}

/// The entry symbol (malv_mlaas.h): the same descriptor on every call.
@_cdecl("malv_mlaas_service_v1")
public func malvMLaaSServiceV1() -> UnsafePointer<malv_mlaas_service> {
    UnsafePointer(descriptor)
}
