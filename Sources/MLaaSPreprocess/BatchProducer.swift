import CMLaaS
#if canImport(Glibc)
import Glibc
#endif
import MLaaSServiceSupport
import PreprocessDraws

/// One batch as the guest's NEXT request hears of it (docs/mlaas.md, "preprocess requests").
struct BatchInfo: Equatable {
    /// Which half of the destination resources holds it (batch `sequence` % 2).
    var slot: UInt32
    var count: UInt32
    var epoch: UInt32
    /// The batch's place in its epoch.
    var index: UInt32
    /// Batches handed out before this one.
    var sequence: UInt64
    /// How long the NEXT waited for the batch to be written (0: it was ready: the pipeline
    /// kept ahead of the guest).
    var waitedNanoseconds: UInt64
}

/// A VM's running pipeline: a thread that reads each batch's records from the VM's disk through
/// the host's `read_range` and runs the augmentation on the VM's vGPU context through the host's
/// `gpu` table, into one of two slots of the guest's destination resources, one batch ahead of
/// the guest.
///
/// Double buffering: batch n goes to slot n % 2. The guest's NEXT that returns batch n also
/// says the guest is done with batch n - 1, so from then on batch n + 1 may be written into
/// that batch's slot; batches 0 and 1 are written at once. The host's `run` queues each batch
/// on the context behind what the guest queued before, so a guest submission still reading
/// batch n - 1 runs before it is overwritten, and a NEXT usually finds its batch ready.
///
/// On the GPU, per batch: the uploaded u8 records → NORMALIZE_U8 (scale 1/255, mean, std; NHWC →
/// NCHW f32) → RESIZE_BILINEAR (if the size changes) → one CROP with the uploaded per-image
/// draws (each image at its offset inside `padding` pixels of the normalised black, mirrored
/// where drawn) → the images slot; the labels (u32) are COPY'd into theirs. Four dispatches a
/// batch. Where the channels' blacks differ (one pad value per kernel), a CROP per image and
/// channel and a FLIP_HORIZONTAL per flipped image instead.
final class BatchProducer: @unchecked Sendable {
    private let host: UnsafePointer<malv_mlaas_host>
    private let gpu: UnsafePointer<malv_mlaas_gpu>
    private let vm: UInt64
    private let range: UInt64
    private let pipeline: Pipeline
    private let destination: Pipeline.Destination
    private let scratch: Scratch

    /// Scratch buffers on the context (0: not needed).
    private struct Scratch {
        var pixels: UInt32 = 0
        var normalized: UInt32 = 0
        var resized: UInt32 = 0
        var cropped: UInt32 = 0
        var labels: UInt32 = 0
        /// The batch's draws, u32 (top, left, flip) per image, for the one batched CROP.
        var draws: UInt32 = 0
        var all: [UInt32] { [pixels, normalized, resized, cropped, labels, draws].filter { $0 != 0 } }
    }

    private let monitor = ServiceMonitor()
    /// Batches written and ready; NEXT requests received; guarded by `monitor`.
    private var produced: UInt64 = 0
    private var requested: UInt64 = 0
    private var stopping = false
    private var failure: String?
    private var thread: ServiceThread?
    /// The producer thread's own: the order of the records in the current epoch, and how long
    /// the last batch's reads took (for the debug log).
    private var order: (epoch: UInt64, records: [UInt32])?
    private var lastReadNanoseconds: UInt64 = 0

    struct Refused: Error {
        let message: String
        let status: malv_mlaas_status
    }

    /// Checks the destination against the context, allocates the scratch buffers and starts
    /// producing.
    init(host: UnsafePointer<malv_mlaas_host>, vm: UInt64, range: UInt64, pipeline: Pipeline,
         destination: Pipeline.Destination) throws(Refused) {
        guard let table = host.pointee.gpu, table.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_gpu>.size),
              let resourceSize = table.pointee.resource_size, let allocate = table.pointee.allocate,
              table.pointee.release != nil, table.pointee.run != nil else {
            throw Refused(message: "this host offers no GPU kernels to services", status: MALV_MLAAS_E_UNSUPPORTED)
        }
        self.host = host
        gpu = table
        self.vm = vm
        self.range = range
        self.pipeline = pipeline
        self.destination = destination
        let context = host.pointee.host_context
        for (what, id, slot) in [("images", destination.images, pipeline.imageSlotBytes), ("labels", destination.labels, pipeline.labelSlotBytes)] {
            let size = resourceSize(context, vm, destination.context, id)
            guard size >= 0 else {
                let status = Int32(clamping: size)
                let why = switch status {
                case MALV_MLAAS_E_NOT_FOUND: "is not a resource attached to and owned by context \(destination.context) of this vGPU"
                case MALV_MLAAS_E_INVALID: "is a GUEST blob (its pages would overwrite the batches); use a HOST3D blob"
                case MALV_MLAAS_E_UNSUPPORTED: "cannot be reached: the enable did not come through a vGPU"
                default: "cannot be used: \(String(cString: malv_mlaas_status_string(status)))"
                }
                throw Refused(message: "\(what) resource \(id) \(why)", status: status)
            }
            guard UInt64(size) >= 2 * slot else {
                throw Refused(message: "\(what) resource \(id) is \(size) bytes; two slots of \(slot) need \(2 * slot)",
                              status: MALV_MLAAS_E_RANGE)
            }
        }
        let p = pipeline
        // Every batch is one run: its kernels must fit one. Where every channel's black is the
        // same, one batched CROP crops and flips all images; otherwise a crop per image and
        // channel, and a flip per image at most.
        let batched = Self.batchedCrop(p)
        let perImage = batched ? 0 : (p.hasCrop ? p.channels : 0) + (p.flip ? 1 : 0)
        let most = 3 + p.batch * perImage + 1
        guard most <= Int(table.pointee.max_kernels) else {
            throw Refused(message: "a batch of \(p.batch) needs up to \(most) kernels; one run takes \(table.pointee.max_kernels) (use a smaller batch)",
                          status: MALV_MLAAS_E_RANGE)
        }
        var wanted: [(WritableKeyPath<Scratch, UInt32>, Int)] = [
            (\.pixels, p.batch * p.pixelBytes),
            (\.normalized, p.batch * p.channels * p.height * p.width * 4),
            (\.labels, p.batch * 4),
        ]
        if p.resizeHeight != p.height || p.resizeWidth != p.width {
            wanted.append((\.resized, p.batch * p.channels * p.resizeHeight * p.resizeWidth * 4))
        }
        if batched && (p.hasCrop || p.flip) { wanted.append((\.draws, p.batch * 3 * 4)) }
        if !batched && p.hasCrop && p.flip { wanted.append((\.cropped, p.batch * p.outValues * 4)) }
        var scratch = Scratch()
        for (field, bytes) in wanted {
            let handle = allocate(context, vm, destination.context, UInt64(bytes))
            guard handle > 0 else {
                for id in scratch.all { table.pointee.release!(context, vm, destination.context, id) }
                let status = Int32(clamping: handle)
                throw Refused(message: "context \(destination.context) cannot hold \(bytes) bytes of scratch: \(String(cString: malv_mlaas_status_string(status)))",
                              status: status)
            }
            scratch[keyPath: field] = UInt32(handle)
        }
        self.scratch = scratch
        guard let thread = ServiceThread({ [self] in produce() }) else {
            for id in scratch.all { table.pointee.release!(context, vm, destination.context, id) }
            throw Refused(message: "cannot start the batch producer thread", status: MALV_MLAAS_E_NO_MEMORY)
        }
        monitor.withLock { self.thread = thread }
    }

    /// The next batch, once it is ready (the guest's NEXT); or why the pipeline stopped.
    func next() -> Result<BatchInfo, Refused> {
        let start = Self.now()
        return monitor.withLock {
            let n = requested
            requested += 1
            monitor.broadcast()
            var waited = false
            while produced <= n && failure == nil && !stopping {
                waited = true
                monitor.wait()
            }
            guard produced > n else {
                requested -= 1
                return .failure(Refused(message: failure ?? "the pipeline was stopped", status: MALV_MLAAS_E_IO))
            }
            let perEpoch = pipeline.batchesPerEpoch
            return .success(BatchInfo(slot: UInt32(n % 2), count: UInt32(pipeline.batch), epoch: UInt32(truncatingIfNeeded: n / perEpoch),
                                      index: UInt32(n % perEpoch), sequence: n,
                                      waitedNanoseconds: waited ? Self.now() - start : 0))
        }
    }

    /// Stops the thread (after the batch it is writing, if any) and frees the scratch buffers.
    func stop() {
        let thread = monitor.withLock { () -> ServiceThread? in
            stopping = true
            monitor.broadcast()
            return self.thread
        }
        thread?.join()
        for id in scratch.all { gpu.pointee.release!(host.pointee.host_context, vm, destination.context, id) }
    }

    private func produce() {
        while true {
            let next = monitor.withLock { () -> UInt64? in
                // Batch m's slot is free once the guest asked for batch m - 1.
                while !stopping && failure == nil && !(produced < 2 || requested >= produced) { monitor.wait() }
                return stopping || failure != nil ? nil : produced
            }
            guard let m = next else { return }
            let start = Self.now()
            let problem = write(batch: m)
            if let log = host.pointee.log {
                "batch \(m) written in \((Self.now() - start) / 1000) us (reading its records \(lastReadNanoseconds / 1000) us)".withCString {
                    log(host.pointee.host_context, Int32(MALV_MLAAS_LOG_DEBUG.rawValue), $0)
                }
            }
            monitor.withLock {
                if let problem { failure = "batch \(m): \(problem)" } else { produced += 1 }
                monitor.broadcast()
            }
        }
    }

    /// Whether one CROP with per-image offsets does the batch's crops and flips: every channel
    /// pads with the same normalised black (one image-wide pad value).
    static func batchedCrop(_ p: Pipeline) -> Bool {
        let scale = Float(1) / Float(255)
        return Set(zip(p.mean, p.std).map { ((Float(0) * scale - Float($0.0)) / Float($0.1)).bitPattern }).count == 1
    }

    /// The monotonic clock in nanoseconds (for the debug log's batch times).
    static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// Reads batch `m`'s records and runs its kernels; nil, or what went wrong.
    private func write(batch m: UInt64) -> String? {
        let p = pipeline
        let epoch = m / p.batchesPerEpoch, index = m % p.batchesPerEpoch
        if order?.epoch != epoch {
            order = (epoch, Augmentation.permutation(records: Int(p.records), seed: p.seed, epoch: epoch))
        }
        let records = order!.records
        let context = host.pointee.host_context
        var pixels = [UInt8](repeating: 0, count: p.batch * p.pixelBytes)
        var labels = [UInt32](repeating: 0, count: p.batch)
        var record = [UInt8](repeating: 0, count: Int(p.recordBytes))
        var draws: [Augmentation.Draw] = []
        let readStart = Self.now()
        for k in 0 ..< p.batch {
            let position = index * UInt64(p.batch) + UInt64(k)
            let r = UInt64(records[Int(position)])
            let got = record.withUnsafeMutableBytes {
                host.pointee.read_range!(context, vm, range, p.offset + r * p.recordBytes, $0.baseAddress, p.recordBytes)
            }
            guard got == Int64(p.recordBytes) else {
                return "reading record \(r): " + (got < 0 ? String(cString: malv_mlaas_status_string(Int32(clamping: got))) : "short read")
            }
            pixels.replaceSubrange(k * p.pixelBytes ..< (k + 1) * p.pixelBytes, with: record[0 ..< p.pixelBytes])
            labels[k] = UInt32(record[p.pixelBytes])
            draws.append(Augmentation.draw(p.geometry, seed: p.seed, epoch: epoch, position: position))
        }
        lastReadNanoseconds = Self.now() - readStart
        let kernels = self.kernels(slot: m % 2, draws: draws)
        let drawWords: [UInt32] = draws.flatMap { draw -> [UInt32] in [UInt32(draw.top), UInt32(draw.left), draw.flip ? 1 : 0] }
        var error = [CChar](repeating: 0, count: Int(MALV_MLAAS_ERROR_MAX))
        let status = pixels.withUnsafeBytes { pixelBytes in
            labels.withUnsafeBytes { labelBytes in drawWords.withUnsafeBytes { drawBytes in
                var uploads = [
                    malv_mlaas_gpu_upload(scratch: scratch.pixels, reserved: 0, offset: 0, bytes: pixelBytes.baseAddress,
                                          length: UInt64(pixelBytes.count)),
                    malv_mlaas_gpu_upload(scratch: scratch.labels, reserved: 0, offset: 0, bytes: labelBytes.baseAddress,
                                          length: UInt64(labelBytes.count)),
                ]
                if scratch.draws != 0 {
                    uploads.append(malv_mlaas_gpu_upload(scratch: scratch.draws, reserved: 0, offset: 0, bytes: drawBytes.baseAddress,
                                                         length: UInt64(drawBytes.count)))
                }
                return uploads.withUnsafeBufferPointer { u in
                    kernels.withUnsafeBufferPointer { k in
                        gpu.pointee.run!(context, vm, destination.context, u.baseAddress, UInt32(u.count), k.baseAddress,
                                         UInt32(k.count), &error, UInt64(error.count))
                    }
                }
            } }
        }
        guard status == MALV_MLAAS_OK else {
            error[error.count - 1] = 0
            let line = String(cString: error)
            return line.isEmpty ? String(cString: malv_mlaas_status_string(status)) : line
        }
        return nil
    }

    /// The batch's kernels, in order (the type comment's pipeline).
    private func kernels(slot: UInt64, draws: [Augmentation.Draw]) -> [malv_mlaas_gpu_kernel] {
        let p = pipeline
        func scratchRef(_ id: UInt32, _ offset: Int, _ length: Int) -> malv_mlaas_gpu_buffer {
            malv_mlaas_gpu_buffer(kind: MALV_MLAAS_GPU_SCRATCH, id: id, offset: UInt64(offset), length: UInt64(length))
        }
        func resourceRef(_ id: UInt32, _ offset: UInt64, _ length: Int) -> malv_mlaas_gpu_buffer {
            malv_mlaas_gpu_buffer(kind: MALV_MLAAS_GPU_RESOURCE, id: id, offset: offset, length: UInt64(length))
        }
        func kernel(_ op: malv_mlaas_gpu_op, _ input: malv_mlaas_gpu_buffer, _ output: malv_mlaas_gpu_buffer,
                    _ shape: (inout malv_mlaas_gpu_kernel) -> Void) -> malv_mlaas_gpu_kernel {
            var k = malv_mlaas_gpu_kernel()
            k.op = op.rawValue
            k.input = input
            k.output = output
            shape(&k)
            return k
        }
        let c = p.channels
        let (h, w) = (p.height, p.width)
        let (rh, rw) = (p.resizeHeight, p.resizeWidth)
        let (oh, ow) = (p.outHeight, p.outWidth)
        let scale = Float(1) / Float(255)
        let mean = p.mean.map { Float($0) }, std = p.std.map { Float($0) }
        var list: [malv_mlaas_gpu_kernel] = []

        list.append(kernel(MALV_MLAAS_GPU_NORMALIZE_U8, scratchRef(scratch.pixels, 0, p.batch * p.pixelBytes),
                           scratchRef(scratch.normalized, 0, p.batch * c * h * w * 4)) { k in
            (k.batch, k.channels, k.height, k.width) = (UInt32(p.batch), UInt32(c), UInt32(h), UInt32(w))
            k.scale = scale
            withUnsafeMutableBytes(of: &k.mean) { m in for i in 0 ..< c { m.storeBytes(of: mean[i], toByteOffset: 4 * i, as: Float.self) } }
            withUnsafeMutableBytes(of: &k.std) { s in for i in 0 ..< c { s.storeBytes(of: std[i], toByteOffset: 4 * i, as: Float.self) } }
        })
        var source = scratch.normalized
        if scratch.resized != 0 {
            list.append(kernel(MALV_MLAAS_GPU_RESIZE_BILINEAR, scratchRef(scratch.normalized, 0, p.batch * c * h * w * 4),
                               scratchRef(scratch.resized, 0, p.batch * c * rh * rw * 4)) { k in
                (k.batch, k.channels, k.height, k.width) = (1 * UInt32(p.batch), UInt32(c), UInt32(h), UInt32(w))
                (k.out_height, k.out_width) = (UInt32(rh), UInt32(rw))
            })
            source = scratch.resized
        }
        let imageBytes = c * oh * ow * 4, sourceImageBytes = c * rh * rw * 4
        let slotBase = slot * p.imageSlotBytes
        func destinationImage(_ n: Int) -> malv_mlaas_gpu_buffer { resourceRef(destination.images, slotBase + UInt64(n * imageBytes), imageBytes) }
        if !p.hasCrop && !p.flip {
            list.append(kernel(MALV_MLAAS_GPU_COPY, scratchRef(source, 0, p.batch * sourceImageBytes),
                               resourceRef(destination.images, slotBase, p.batch * imageBytes)) { _ in })
        }
        // The normalised value of a zero (black) pixel, per channel: what padding holds, so
        // padding then normalising (torchvision's order) and this agree.
        let black = (0 ..< c).map { (Float(0) * scale - mean[$0]) / std[$0] }
        let sameBlack = black.allSatisfy { $0.bitPattern == black[0].bitPattern }
        if scratch.draws != 0 {
            // Every image at its own offset, mirrored where drawn: one dispatch.
            list.append(kernel(MALV_MLAAS_GPU_CROP, scratchRef(source, 0, p.batch * sourceImageBytes),
                               resourceRef(destination.images, slotBase, p.batch * imageBytes)) { k in
                (k.batch, k.channels, k.height, k.width) = (UInt32(p.batch), UInt32(c), UInt32(rh), UInt32(rw))
                (k.out_height, k.out_width) = (UInt32(oh), UInt32(ow))
                k.padding = p.hasCrop ? UInt32(p.padding) : 0
                k.pad_value = black[0]
                k.offsets = scratchRef(scratch.draws, 0, p.batch * 3 * 4)
            })
        }
        for (n, draw) in draws.enumerated() where scratch.draws == 0 {
            if p.hasCrop {
                let target = draw.flip ? scratchRef(scratch.cropped, n * imageBytes, imageBytes) : destinationImage(n)
                // One crop per image, or per channel where the channels' blacks differ.
                let planes = sameBlack ? [(0, c)] : (0 ..< c).map { ($0, 1) }
                for (first, count) in planes {
                    var input = scratchRef(source, n * sourceImageBytes + first * rh * rw * 4, count * rh * rw * 4)
                    var output = target
                    if !sameBlack {
                        input.length = UInt64(count * rh * rw * 4)
                        output.offset += UInt64(first * oh * ow * 4)
                        output.length = UInt64(count * oh * ow * 4)
                    }
                    list.append(kernel(MALV_MLAAS_GPU_CROP, input, output) { k in
                        (k.batch, k.channels, k.height, k.width) = (1, UInt32(count), UInt32(rh), UInt32(rw))
                        (k.top, k.left, k.out_height, k.out_width) = (UInt32(draw.top), UInt32(draw.left), UInt32(oh), UInt32(ow))
                        k.padding = UInt32(p.padding)
                        k.pad_value = black[first]
                    })
                }
                if draw.flip {
                    list.append(kernel(MALV_MLAAS_GPU_FLIP_HORIZONTAL, target, destinationImage(n)) { k in
                        (k.batch, k.channels, k.height, k.width) = (1, UInt32(c), UInt32(oh), UInt32(ow))
                    })
                }
            } else if p.flip {
                let input = scratchRef(source, n * sourceImageBytes, sourceImageBytes)
                if draw.flip {
                    list.append(kernel(MALV_MLAAS_GPU_FLIP_HORIZONTAL, input, destinationImage(n)) { k in
                        (k.batch, k.channels, k.height, k.width) = (1, UInt32(c), UInt32(oh), UInt32(ow))
                    })
                } else {
                    list.append(kernel(MALV_MLAAS_GPU_COPY, input, destinationImage(n)) { _ in })
                }
            }
        }
        list.append(kernel(MALV_MLAAS_GPU_COPY, scratchRef(scratch.labels, 0, p.batch * 4),
                           resourceRef(destination.labels, slot * p.labelSlotBytes, p.batch * 4)) { _ in })
        return list
    }
}
