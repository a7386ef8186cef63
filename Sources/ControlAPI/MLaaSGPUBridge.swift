import GPUHost
import MLaaS
import VGPUCore

/// A VM's vGPU as its MLaaS services compute on it: MLaaS's `ServiceGPU` (what the service's
/// host table calls, in the C ABI's terms) over the vGPU's `MLaaSContextGPU` (contexts,
/// resources and GPUHost kernels). The one place that sees both: the registry never sees a
/// vGPU, and the vGPU never sees a service.
final class MLaaSGPUBridge: ServiceGPU, @unchecked Sendable {
    let device: any MLaaSContextGPU

    init(_ device: any MLaaSContextGPU) { self.device = device }

    func resourceSize(context: UInt32, resource: UInt32) throws(ServiceGPUError) -> UInt64 {
        do throws(MLaaSGPUError) { return try device.mlaasResourceSize(context: context, resource: resource) } catch {
            throw Self.error(error)
        }
    }

    func allocate(context: UInt32, bytes: UInt64) throws(ServiceGPUError) -> UInt32 {
        guard bytes <= UInt64(Int.max) else { throw .noMemory("a scratch buffer of \(bytes) bytes") }
        do throws(MLaaSGPUError) { return try device.mlaasAllocate(context: context, bytes: Int(bytes)) } catch {
            throw Self.error(error)
        }
    }

    func release(context: UInt32, scratch: UInt32) { device.mlaasRelease(context: context, scratch: scratch) }

    func run(context: UInt32, uploads: [ServiceGPUUpload], kernels: [ServiceGPUKernel]) throws(ServiceGPUError) {
        let moves = uploads.map { MLaaSUpload(scratch: $0.scratch, offset: $0.offset, bytes: $0.bytes) }
        do throws(MLaaSGPUError) {
            try device.mlaasRun(context: context, uploads: moves) { (resolve: MLaaSResolve) throws(MLaaSGPUError) -> [Kernel] in
                var built: [Kernel] = []
                for kernel in kernels { built.append(try Self.kernel(kernel, resolve)) }
                return built
            }
        } catch {
            throw Self.error(error)
        }
    }

    /// A service's kernel as GPUHost's, its operands resolved on the context (f32 elements
    /// except NORMALIZE_U8's u8 input).
    static func kernel(_ kernel: ServiceGPUKernel, _ resolve: MLaaSResolve) throws(MLaaSGPUError) -> Kernel {
        func range(_ buffer: ServiceGPUBuffer, _ element: Int) throws(MLaaSGPUError) -> BufferRange {
            let name: MLaaSBufferName = buffer.kind == .scratch ? .scratch(buffer.id) : .resource(buffer.id)
            return try resolve(name, buffer.offset, buffer.length, element)
        }
        switch kernel {
        case let .normalizeU8(batch, height, width, channels, scale, mean, std, input, output):
            return .normalizeU8(NormalizeParams(batch: batch, height: height, width: width, channels: channels, scale: scale,
                                                mean: mean, std: std, input: try range(input, 1), output: try range(output, 4)))
        case let .crop(batch, channels, height, width, top, left, outHeight, outWidth, padding, padValue, offsets, input, output):
            return .crop(CropParams(batch: batch, channels: channels, height: height, width: width, top: top, left: left,
                                    outHeight: outHeight, outWidth: outWidth, padding: padding, padValue: padValue,
                                    offsets: try offsets.map { buffer throws(MLaaSGPUError) in try range(buffer, 4) },
                                    input: try range(input, 4), output: try range(output, 4)))
        case let .flipHorizontal(batch, channels, height, width, input, output):
            return .flipHorizontal(FlipParams(batch: batch, channels: channels, height: height, width: width,
                                              input: try range(input, 4), output: try range(output, 4)))
        case let .resizeBilinear(batch, channels, height, width, outHeight, outWidth, input, output):
            return .resizeBilinear(ResizeParams(batch: batch, channels: channels, height: height, width: width,
                                                outHeight: outHeight, outWidth: outWidth,
                                                input: try range(input, 4), output: try range(output, 4)))
        case let .copy(input, output):
            // As the compute stream's COPY: a crop that keeps one row of every word (f32
            // covers u32 labels too: the words are moved, not computed on).
            let source = try range(input, 4), destination = try range(output, 4)
            guard source.count == destination.count else {
                throw MLaaSGPUError(.invalid, "copy of \(source.count) words into \(destination.count)")
            }
            return .crop(CropParams(batch: 1, channels: 1, height: 1, width: source.count, top: 0, left: 0,
                                    outHeight: 1, outWidth: source.count, input: source, output: destination))
        }
    }

    static func error(_ error: MLaaSGPUError) -> ServiceGPUError {
        switch error.reason {
        case .notFound: .notFound(error.message)
        case .invalid: .invalid(error.message)
        case .noMemory: .noMemory(error.message)
        case .failed: .failed(error.message)
        }
    }
}
