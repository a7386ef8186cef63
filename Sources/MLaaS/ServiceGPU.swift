import CMLaaS

// The host table's `gpu` (ABI 2, malv_mlaas.h): GPUHost kernels on one of the VM's vGPU
// contexts. This file reads the service's C structs into Swift values and checks every field a
// service could get wrong; what runs them is the VM's `ServiceGPU`, which its process binds to
// the VM for each enable (the vGPU the guest asked through), so this module never sees a vGPU.

/// A byte range of a scratch buffer or of a resource of the context.
public struct ServiceGPUBuffer: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case scratch
        case resource
    }

    public var kind: Kind
    public var id: UInt32
    public var offset: UInt64
    public var length: UInt64

    public init(kind: Kind, id: UInt32, offset: UInt64, length: UInt64) {
        self.kind = kind
        self.id = id
        self.offset = offset
        self.length = length
    }
}

/// One kernel of a service's run (malv_mlaas_gpu_op), shapes as the service gave them.
public enum ServiceGPUKernel: Sendable, Equatable {
    case normalizeU8(batch: Int, height: Int, width: Int, channels: Int, scale: Float, mean: [Float], std: [Float],
                     input: ServiceGPUBuffer, output: ServiceGPUBuffer)
    case crop(batch: Int, channels: Int, height: Int, width: Int, top: Int, left: Int, outHeight: Int, outWidth: Int,
              padding: Int, padValue: Float, offsets: ServiceGPUBuffer?, input: ServiceGPUBuffer, output: ServiceGPUBuffer)
    case flipHorizontal(batch: Int, channels: Int, height: Int, width: Int, input: ServiceGPUBuffer, output: ServiceGPUBuffer)
    case resizeBilinear(batch: Int, channels: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                        input: ServiceGPUBuffer, output: ServiceGPUBuffer)
    case copy(input: ServiceGPUBuffer, output: ServiceGPUBuffer)
}

/// Host bytes for a scratch buffer; `bytes` is valid only during the run.
public struct ServiceGPUUpload: @unchecked Sendable {
    public var scratch: UInt32
    public var offset: UInt64
    public var bytes: UnsafeRawBufferPointer
}

/// Why a GPU call failed: a malv_mlaas_status for the service and one line.
public struct ServiceGPUError: Error, Sendable, Equatable {
    public var status: Int32
    public var message: String

    public init(status: Int32, _ message: String) {
        self.status = status
        self.message = message
    }

    public static func notFound(_ message: String) -> Self { Self(status: MALV_MLAAS_E_NOT_FOUND, message) }
    public static func invalid(_ message: String) -> Self { Self(status: MALV_MLAAS_E_INVALID, message) }
    public static func noMemory(_ message: String) -> Self { Self(status: MALV_MLAAS_E_NO_MEMORY, message) }
    public static func failed(_ message: String) -> Self { Self(status: MALV_MLAAS_E_INTERNAL, message) }
}

/// The VM's GPU as a service reaches it: the contexts of the vGPU its guest enabled the
/// service through. Implemented by the VM's process over that vGPU.
public protocol ServiceGPU: AnyObject, Sendable {
    func resourceSize(context: UInt32, resource: UInt32) throws(ServiceGPUError) -> UInt64
    func allocate(context: UInt32, bytes: UInt64) throws(ServiceGPUError) -> UInt32
    func release(context: UInt32, scratch: UInt32)
    /// The uploads, then the kernels as one batch of the context, in order with its own work;
    /// returns when it completed.
    func run(context: UInt32, uploads: [ServiceGPUUpload], kernels: [ServiceGPUKernel]) throws(ServiceGPUError)
}

enum ServiceGPUDecoding {
    /// Kernels (and uploads) one run takes: the compute stream's bound.
    static let maxKernels = 4096

    static func buffer(_ raw: malv_mlaas_gpu_buffer, _ name: String) throws(ServiceGPUError) -> ServiceGPUBuffer {
        let kind: ServiceGPUBuffer.Kind
        switch raw.kind {
        case MALV_MLAAS_GPU_SCRATCH: kind = .scratch
        case MALV_MLAAS_GPU_RESOURCE: kind = .resource
        default: throw .invalid("\(name): kind \(raw.kind) is neither scratch (1) nor resource (2)")
        }
        guard raw.length > 0 else { throw .invalid("\(name) is empty") }
        return ServiceGPUBuffer(kind: kind, id: raw.id, offset: raw.offset, length: raw.length)
    }

    /// A service's kernel, with every field its op does not use required to be 0 (so a later
    /// ABI can give them meaning).
    static func kernel(_ k: malv_mlaas_gpu_kernel, index: Int) throws(ServiceGPUError) -> ServiceGPUKernel {
        let at = "kernel \(index)"
        let input = try buffer(k.input, "\(at) input"), output = try buffer(k.output, "\(at) output")
        let noOffsets = withUnsafeBytes(of: k.offsets) { $0.allSatisfy { $0 == 0 } }
        let offsets = noOffsets ? nil : try buffer(k.offsets, "\(at) offsets")
        guard offsets == nil || k.op == UInt32(MALV_MLAAS_GPU_CROP.rawValue) else {
            throw .invalid("\(at): only CROP takes offsets")
        }
        func int(_ value: UInt32) -> Int { Int(value) }
        let mean = withUnsafeBytes(of: k.mean) { Array($0.bindMemory(to: Float.self)) }
        let std = withUnsafeBytes(of: k.std) { Array($0.bindMemory(to: Float.self)) }
        func unused(_ fields: [UInt32], floats: [Float] = []) throws(ServiceGPUError) {
            guard fields.allSatisfy({ $0 == 0 }), floats.allSatisfy({ $0.bitPattern == 0 }) else {
                throw .invalid("\(at): a field op \(k.op) does not use is not 0")
            }
        }
        switch k.op {
        case UInt32(MALV_MLAAS_GPU_NORMALIZE_U8.rawValue):
            try unused([k.out_height, k.out_width, k.top, k.left, k.padding], floats: [k.pad_value])
            let channels = int(k.channels)
            guard (1 ... 4).contains(channels) else { throw .invalid("\(at): channels must be 1-4") }
            try unused([], floats: Array(mean[channels...]) + Array(std[channels...]))
            return .normalizeU8(batch: int(k.batch), height: int(k.height), width: int(k.width), channels: channels, scale: k.scale,
                                mean: Array(mean[..<channels]), std: Array(std[..<channels]), input: input, output: output)
        case UInt32(MALV_MLAAS_GPU_CROP.rawValue):
            try unused([], floats: [k.scale] + mean + std)
            return .crop(batch: int(k.batch), channels: int(k.channels), height: int(k.height), width: int(k.width),
                         top: int(k.top), left: int(k.left), outHeight: int(k.out_height), outWidth: int(k.out_width),
                         padding: int(k.padding), padValue: k.pad_value, offsets: offsets, input: input, output: output)
        case UInt32(MALV_MLAAS_GPU_FLIP_HORIZONTAL.rawValue):
            try unused([k.out_height, k.out_width, k.top, k.left, k.padding], floats: [k.scale, k.pad_value] + mean + std)
            return .flipHorizontal(batch: int(k.batch), channels: int(k.channels), height: int(k.height), width: int(k.width),
                                   input: input, output: output)
        case UInt32(MALV_MLAAS_GPU_RESIZE_BILINEAR.rawValue):
            try unused([k.top, k.left, k.padding], floats: [k.scale, k.pad_value] + mean + std)
            return .resizeBilinear(batch: int(k.batch), channels: int(k.channels), height: int(k.height), width: int(k.width),
                                   outHeight: int(k.out_height), outWidth: int(k.out_width), input: input, output: output)
        case UInt32(MALV_MLAAS_GPU_COPY.rawValue):
            try unused([k.batch, k.channels, k.height, k.width, k.out_height, k.out_width, k.top, k.left, k.padding],
                       floats: [k.scale, k.pad_value] + mean + std)
            return .copy(input: input, output: output)
        default:
            throw .invalid("\(at): unknown op \(k.op)")
        }
    }
}

/// The `gpu` table every host table points at (its callbacks find the VM's GPU through the
/// host context); allocated once, never freed, as the descriptor of a module is.
enum ServiceGPUTable {
    nonisolated(unsafe) static let shared: UnsafeMutablePointer<malv_mlaas_gpu> = {
        let table = UnsafeMutablePointer<malv_mlaas_gpu>.allocate(capacity: 1)
        table.initialize(to: malv_mlaas_gpu())
        table.pointee.struct_size = UInt32(MemoryLayout<malv_mlaas_gpu>.size)
        table.pointee.max_kernels = UInt32(ServiceGPUDecoding.maxKernels)
        table.pointee.resource_size = { context, vm, ctx, resource in
            guard let host = HostContext.from(context) else { return Int64(MALV_MLAAS_E_INVALID) }
            do throws(ServiceGPUError) {
                return Int64(clamping: try host.gpu(vm: vm).resourceSize(context: ctx, resource: resource))
            } catch { return Int64(error.status) }
        }
        table.pointee.allocate = { context, vm, ctx, bytes in
            guard let host = HostContext.from(context) else { return Int64(MALV_MLAAS_E_INVALID) }
            do throws(ServiceGPUError) {
                guard bytes > 0, bytes <= UInt64(Int.max) else { throw .invalid("a scratch buffer of \(bytes) bytes") }
                return Int64(try host.allocate(vm: vm, context: ctx, bytes: bytes))
            } catch { return Int64(error.status) }
        }
        table.pointee.release = { context, vm, ctx, scratch in
            HostContext.from(context)?.release(vm: vm, context: ctx, scratch: scratch)
        }
        table.pointee.run = { context, vm, ctx, uploads, uploadCount, kernels, kernelCount, error, capacity in
            guard let host = HostContext.from(context) else { return MALV_MLAAS_E_INVALID }
            do throws(ServiceGPUError) {
                guard Int(uploadCount) <= ServiceGPUDecoding.maxKernels, Int(kernelCount) <= ServiceGPUDecoding.maxKernels else {
                    throw .invalid("at most \(ServiceGPUDecoding.maxKernels) uploads and kernels per run")
                }
                guard uploadCount == 0 || uploads != nil, kernelCount == 0 || kernels != nil else {
                    throw .invalid("NULL uploads or kernels")
                }
                var decodedUploads: [ServiceGPUUpload] = []
                for i in 0 ..< Int(uploadCount) {
                    let u = uploads![i]
                    guard u.reserved == 0, u.length > 0, u.length <= UInt64(Int.max), let bytes = u.bytes else {
                        throw .invalid("upload \(i): reserved must be 0, and bytes non-NULL and non-empty")
                    }
                    decodedUploads.append(ServiceGPUUpload(scratch: u.scratch, offset: u.offset,
                                                           bytes: UnsafeRawBufferPointer(start: bytes, count: Int(u.length))))
                }
                var decoded: [ServiceGPUKernel] = []
                for i in 0 ..< Int(kernelCount) { decoded.append(try ServiceGPUDecoding.kernel(kernels![i], index: i)) }
                try host.gpu(vm: vm).run(context: ctx, uploads: decodedUploads, kernels: decoded)
                return MALV_MLAAS_OK
            } catch let failure {
                ServiceGPUTable.writeLine(failure.message, error, capacity)
                return failure.status
            }
        }
        return table
    }()

    static func writeLine(_ message: String, _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: UInt64) {
        guard let buffer, capacity > 0 else { return }
        let bytes = Array(message.utf8.prefix(Int(min(capacity, 4096)) - 1))
        for (index, byte) in bytes.enumerated() { buffer[index] = CChar(bitPattern: byte) }
        buffer[bytes.count] = 0
    }
}
