import GPUHost
import Platform
import PreprocessDraws

/// The native CNN job's data loader, as PyTorch's `DataLoader(num_workers: workers)` runs one:
/// worker threads on the host CPU prepare whole batches ahead of the training loop (at most
/// `2 * workers` ahead, DataLoader's default prefetch factor 2) and hand them over in order.
///
/// Each batch is the MLaaS `preprocess` pipeline's batch for the same description and seed —
/// the shuffle and draws of PreprocessDraws, and the arithmetic of GPUHost's CPU reference
/// kernels (NORMALIZE_U8, RESIZE_BILINEAR, CROP with per-image offsets), which the service's
/// kernels and the guest's lib/preprocess_ref.c equal bit for bit — so the native job trains
/// on exactly the batches the VM forms do. Each worker runs the kernels on its own CPUBackend:
/// GPUHost's reference backend runs a batch on the submitting thread, so the work stays on
/// the worker, where a DataLoader's would be.
public final class MNISTBatchLoader: @unchecked Sendable {
    public struct Pipeline: Sendable {
        public var records: Int
        public var resize: Int
        public var crop: Int
        public var padding: Int
        public var mean: Float
        public var std: Float
        public var seed: UInt64
        public var batch: Int

        public init(records: Int, resize: Int, crop: Int, padding: Int, mean: Float, std: Float, seed: UInt64, batch: Int) {
            self.records = records
            self.resize = resize
            self.crop = crop
            self.padding = padding
            self.mean = mean
            self.std = std
            self.seed = seed
            self.batch = batch
        }

        var geometry: AugmentationGeometry {
            AugmentationGeometry(resizeHeight: resize, resizeWidth: resize, cropHeight: crop, cropWidth: crop,
                                 padding: padding, flip: false)
        }

        public var batchesPerEpoch: Int { records / batch }
    }

    public struct Batch: Sendable {
        /// batch x 1 x crop x crop f32 (NCHW).
        public var images: [Float]
        public var labels: [UInt32]
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    let dataset: MNISTDataset
    public let pipeline: Pipeline
    let total: Int
    private let monitor = Monitor()
    private let changed: Monitor.Condition
    private var ready: [Int: Result<Batch, Failure>] = [:]
    private var claimed = 0
    private var consumed = 0
    private var stopping = false
    private var threads: [NativeThread] = []
    /// Host CPU time the workers spent preparing batches.
    private var workNanoseconds: UInt64 = 0

    /// Starts `workers` threads that prepare batches 0 ..< `total`.
    public init(dataset: MNISTDataset, pipeline: Pipeline, total: Int, workers: Int) throws(Failure) {
        self.dataset = dataset
        self.pipeline = pipeline
        self.total = total
        changed = monitor.makeCondition()
        for w in 0 ..< max(1, workers) {
            do {
                threads.append(try NativeThread(name: "loader-\(w)") { [unowned self] in self.work(window: 2 * max(1, workers)) })
            } catch {
                stop()
                throw Failure(description: "\(error)")
            }
        }
    }

    deinit { stop() }

    public func stop() {
        monitor.withLock {
            stopping = true
            changed.broadcast()
        }
        threads.forEach { $0.join() }
        threads = []
    }

    /// Batch `n`, in order: waits for its worker.
    public func batch(_ n: Int) throws(Failure) -> Batch {
        monitor.lock()
        defer { monitor.unlock() }
        while ready[n] == nil { changed.wait() }
        let result = ready.removeValue(forKey: n)!
        consumed = n + 1
        changed.broadcast()
        return try result.get()
    }

    public var workerNanoseconds: UInt64 { monitor.withLock { workNanoseconds } }

    private func work(window: Int) {
        let backend = CPUBackend()
        while true {
            monitor.lock()
            while !stopping && claimed < total && claimed >= consumed + window { changed.wait() }
            if stopping || claimed >= total {
                monitor.unlock()
                return
            }
            let n = claimed
            claimed += 1
            monitor.unlock()
            let start = threadCPUNanoseconds()
            let result = Result { () throws(Failure) -> Batch in try self.prepare(n, on: backend) }
            let spent = threadCPUNanoseconds() &- start
            monitor.withLock {
                ready[n] = result
                workNanoseconds += spent
                changed.broadcast()
            }
        }
    }

    private var permutationCache: (epoch: UInt64, order: [UInt32])?

    private func order(epoch: UInt64) -> [UInt32] {
        monitor.withLock {
            if let cached = permutationCache, cached.epoch == epoch { return cached.order }
            let order = Augmentation.permutation(records: pipeline.records, seed: pipeline.seed, epoch: epoch)
            permutationCache = (epoch, order)
            return order
        }
    }

    /// Batch n: the records and draws of its epoch and index, through the reference kernels.
    private func prepare(_ n: Int, on backend: CPUBackend) throws(Failure) -> Batch {
        let p = pipeline
        let side = MNISTDataset.side, pixels = side * side, record = MNISTDataset.recordBytes
        let epoch = UInt64(n / p.batchesPerEpoch), index = n % p.batchesPerEpoch
        let order = self.order(epoch: epoch)
        var raw = [UInt8](repeating: 0, count: p.batch * pixels)
        var labels = [UInt32](repeating: 0, count: p.batch)
        var offsets = [UInt32](repeating: 0, count: p.batch * 3)
        for k in 0 ..< p.batch {
            let position = index * p.batch + k
            let r = Int(order[position])
            raw.replaceSubrange(k * pixels ..< (k + 1) * pixels,
                                with: dataset.trainRecords[r * record ..< r * record + pixels])
            labels[k] = UInt32(dataset.trainLabel(r))
            let draw = Augmentation.draw(p.geometry, seed: p.seed, epoch: epoch, position: UInt64(position))
            offsets[3 * k] = UInt32(draw.top)
            offsets[3 * k + 1] = UInt32(draw.left)
        }
        do throws(GPUError) {
            let input = try backend.makeBuffer(bytes: raw)
            let draws = try backend.makeBuffer(uint32s: offsets)
            let normalized = try backend.createBuffer(byteCount: p.batch * pixels * 4, placement: .deviceLocal)
            let resized = try backend.createBuffer(byteCount: p.batch * p.resize * p.resize * 4, placement: .deviceLocal)
            let out = try backend.createBuffer(byteCount: p.batch * p.crop * p.crop * 4, placement: .deviceLocal)
            defer { [input, draws, normalized, resized, out].forEach { try? backend.destroyBuffer($0) } }
            // The service's order: normalise, resize, then one crop inside the padding of the
            // normalised black (torchvision pads before normalising; black maps to this value).
            let black = (0 * (1 / Float(255)) - p.mean) / p.std
            _ = try backend.run(
                .normalizeU8(NormalizeParams(batch: p.batch, height: side, width: side, channels: 1, scale: 1 / Float(255),
                                             mean: [p.mean], std: [p.std],
                                             input: BufferRange(input, offset: 0, count: p.batch * pixels),
                                             output: BufferRange(normalized, offset: 0, count: p.batch * pixels))),
                .resizeBilinear(ResizeParams(batch: p.batch, channels: 1, height: side, width: side, outHeight: p.resize,
                                             outWidth: p.resize, input: BufferRange(normalized, offset: 0, count: p.batch * pixels),
                                             output: BufferRange(resized, offset: 0, count: p.batch * p.resize * p.resize))),
                .crop(CropParams(batch: p.batch, channels: 1, height: p.resize, width: p.resize, top: 0, left: 0,
                                 outHeight: p.crop, outWidth: p.crop, padding: p.padding, padValue: black,
                                 offsets: BufferRange(draws, offset: 0, count: p.batch * 3),
                                 input: BufferRange(resized, offset: 0, count: p.batch * p.resize * p.resize),
                                 output: BufferRange(out, offset: 0, count: p.batch * p.crop * p.crop))))
            let images = try backend.readFloats(out, offset: 0, count: p.batch * p.crop * p.crop)
            return Batch(images: images, labels: labels)
        } catch {
            throw Failure(description: "preparing batch \(n): \(error)")
        }
    }
}
