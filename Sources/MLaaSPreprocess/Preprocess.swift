import CMLaaS
import MLaaSServiceSupport

// The `preprocess` service (os-for-ml), built as libpreprocess.so (docs/mlaas.md).
//
// What it will do (issue #17, next slice): read a VM's dataset records straight from that
// VM's own disk through the host's read_range, run the augmentation pipeline on the GPU with
// GPUHost kernels (RESIZE_BILINEAR, CROP, FLIP, NORMALIZE_U8) into the VM's context buffers,
// double-buffered ahead of its training steps, so the guest's vCPUs never touch the pixels.
//
// What it does in THIS slice, and nothing more: the C ABI's lifecycle (initialize, attach,
// configure, detach, unload) and the validation of a pipeline description against the VM it is
// for, including one bounded read through read_range to show the dataset range is readable.
// It runs no pipeline and produces no batches: the GPU pipeline, the destination buffers and
// the guest's requests land in the next slice.
//
// The pipeline description (configure's parameters) is ASCII, comma-separated key=value:
//
//   disk=0,records=4000,image=28x28x1[,offset=0][,resize=56x56][,crop=48x48][,padding=4]
//   [,flip=on|off][,mean=M[/M...]][,std=S[/S...]][,seed=N],batch=64
//
// disk      the VM's disk (its index among the granted ranges)
// offset    the first record's byte offset in that range (default 0)
// records   how many records; each is H*W*C u8 pixels followed by one u8 label
// image     H x W x C of the stored images (1-4096, 1-4096, 1-4)
// resize    H x W after bilinear resizing (default: the stored size)
// crop      H x W of a random crop of the resized image, after `padding` zero pixels on each side
// flip      random horizontal flip
// mean/std  normalisation, one value or one per channel (std > 0)
// seed      the shuffle's and augmentation's seed (default 0)
// batch     images per batch (1-4096, at most `records`)

/// One VM's state: what attach granted and the pipeline configure accepted last.
final class PreprocessVM {
    let handle: UInt64
    let ranges: [(handle: UInt64, length: UInt64)]
    var pipeline: Pipeline?

    init(handle: UInt64, ranges: [(handle: UInt64, length: UInt64)]) {
        self.handle = handle
        self.ranges = ranges
    }
}

/// The service's state: the host table it was given.
final class PreprocessService {
    let host: UnsafePointer<malv_mlaas_host>
    init(host: UnsafePointer<malv_mlaas_host>) { self.host = host }

    func log(_ level: malv_mlaas_log_level, _ message: String) {
        guard let log = host.pointee.log else { return }
        message.withCString { log(host.pointee.host_context, Int32(level.rawValue), $0) }
    }
}

struct Pipeline {
    var disk = 0
    var offset: UInt64 = 0
    var records: UInt64 = 0
    var height = 0, width = 0, channels = 0
    var resizeHeight = 0, resizeWidth = 0
    var cropHeight = 0, cropWidth = 0
    var padding = 0
    var flip = false
    var mean: [Double] = [0]
    var std: [Double] = [1]
    var seed: UInt64 = 0
    var batch = 0

    var recordBytes: UInt64 { UInt64(height * width * channels) + 1 }

    var summary: String {
        "disk \(disk) offset \(offset) \(records) records of \(height)x\(width)x\(channels)+label, resize \(resizeHeight)x\(resizeWidth)"
            + (cropHeight > 0 ? ", crop \(cropHeight)x\(cropWidth) padding \(padding)" : "") + (flip ? ", flip" : "")
            + ", seed \(seed), batch \(batch)"
    }

    struct Invalid: Error { let message: String }

    /// Parses and checks a description against the VM's granted ranges.
    init(parsing text: String, ranges: [(handle: UInt64, length: UInt64)]) throws(Invalid) {
        var seen = Set<String>()
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { throw Invalid(message: "'\(item)' is not key=value") }
            let key = String(parts[0]), value = String(parts[1])
            guard seen.insert(key).inserted else { throw Invalid(message: "'\(key)' is given twice") }
            switch key {
            case "disk": disk = try Self.integer(key, value, 0 ... 255)
            case "offset": offset = try Self.unsigned(key, value)
            case "records": records = try Self.unsigned(key, value)
            case "image": (height, width, channels) = try Self.shape(key, value, channels: true)
            case "resize": (resizeHeight, resizeWidth, _) = try Self.shape(key, value, channels: false)
            case "crop": (cropHeight, cropWidth, _) = try Self.shape(key, value, channels: false)
            case "padding": padding = try Self.integer(key, value, 0 ... 64)
            case "flip":
                switch value {
                case "on": flip = true
                case "off": flip = false
                default: throw Invalid(message: "flip must be on or off")
                }
            case "mean": mean = try Self.reals(key, value, positive: false)
            case "std": std = try Self.reals(key, value, positive: true)
            case "seed": seed = try Self.unsigned(key, value)
            case "batch": batch = try Self.integer(key, value, 1 ... 4096)
            default:
                throw Invalid(message: "unknown key '\(key)' (known: disk, offset, records, image, resize, crop, padding, flip, mean, std, seed, batch)")
            }
        }
        for required in ["disk", "records", "image", "batch"] where !seen.contains(required) {
            throw Invalid(message: "'\(required)' is missing")
        }
        if !seen.contains("resize") { (resizeHeight, resizeWidth) = (height, width) }
        guard records > 0 else { throw Invalid(message: "records must be at least 1") }
        guard UInt64(batch) <= records else { throw Invalid(message: "batch \(batch) is larger than the \(records) records") }
        guard seen.contains("crop") || padding == 0 else { throw Invalid(message: "padding needs a crop") }
        if seen.contains("crop") {
            guard cropHeight <= resizeHeight + 2 * padding, cropWidth <= resizeWidth + 2 * padding else {
                throw Invalid(message: "crop \(cropHeight)x\(cropWidth) is larger than the padded \(resizeHeight + 2 * padding)x\(resizeWidth + 2 * padding) image")
            }
        }
        for (name, values) in [("mean", mean), ("std", std)] where values.count != 1 && values.count != channels {
            throw Invalid(message: "\(name) needs 1 or \(channels) values, not \(values.count)")
        }
        guard disk < ranges.count else {
            throw Invalid(message: "disk \(disk) is not granted to this service (the VM has \(ranges.count) disk\(ranges.count == 1 ? "" : "s"))")
        }
        let (bytes, overflow) = records.multipliedReportingOverflow(by: recordBytes)
        let (end, overflow2) = offset.addingReportingOverflow(bytes)
        guard !overflow, !overflow2, end <= ranges[disk].length else {
            throw Invalid(message: "\(records) records of \(recordBytes) bytes from offset \(offset) end beyond disk \(disk) (\(ranges[disk].length) bytes)")
        }
    }

    static func integer(_ key: String, _ value: String, _ range: ClosedRange<Int>) throws(Invalid) -> Int {
        guard let number = Int(value), range.contains(number) else {
            throw Invalid(message: "\(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    static func unsigned(_ key: String, _ value: String) throws(Invalid) -> UInt64 {
        guard let number = UInt64(value) else { throw Invalid(message: "\(key) must be a non-negative integer") }
        return number
    }

    static func shape(_ key: String, _ value: String, channels: Bool) throws(Invalid) -> (Int, Int, Int) {
        let parts = value.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        let form = channels ? "HxWxC" : "HxW"
        guard parts.count == (channels ? 3 : 2), let height = parts[0], let width = parts[1],
              (1 ... 4096).contains(height), (1 ... 4096).contains(width) else {
            throw Invalid(message: "\(key) must be \(form) with H and W in 1...4096")
        }
        guard channels else { return (height, width, 0) }
        guard let c = parts[2], (1 ... 4).contains(c) else { throw Invalid(message: "\(key)'s channels must be 1...4") }
        return (height, width, c)
    }

    static func reals(_ key: String, _ value: String, positive: Bool) throws(Invalid) -> [Double] {
        let values = value.split(separator: "/", omittingEmptySubsequences: false).map { Double($0) }
        guard (1 ... 4).contains(values.count), values.allSatisfy({ $0 != nil && $0!.isFinite && (!positive || $0! > 0) }) else {
            throw Invalid(message: "\(key) must be 1-4 finite numbers separated by '/'\(positive ? ", each above 0" : "")")
        }
        return values.map { $0! }
    }
}

/// Writes `message` as one NUL-terminated line into the host's error buffer.
nonisolated(unsafe) private let descriptor: UnsafeMutablePointer<malv_mlaas_service> = {
    let d = makeServiceDescriptor(kind: MALV_MLAAS_KIND_OS_FOR_ML, name: "preprocess", version: "0.1.0",
                                  description: "data preprocessing offloaded to the host (this slice: pipeline validation only; the GPU pipeline is next)")
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
        vm.pipeline = pipeline
        service.log(MALV_MLAAS_LOG_INFO, "pipeline accepted: \(pipeline.summary) (not run: the GPU pipeline lands in the next slice)")
        return MALV_MLAAS_OK
    }
    d.pointee.detach = { _, vmState in
        if let vmState { Unmanaged<PreprocessVM>.fromOpaque(vmState).release() }
    }
    d.pointee.unload = { serviceState in
        if let serviceState { Unmanaged<PreprocessService>.fromOpaque(serviceState).release() }
    }
    return d
}()

/// A C string with static storage (a string literal's bytes live in the image).
/// The entry symbol (malv_mlaas.h): the same descriptor on every call.
@_cdecl("malv_mlaas_service_v1")
public func malvMLaaSServiceV1() -> UnsafePointer<malv_mlaas_service> {
    UnsafePointer(descriptor)
}
