#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GPUHost
import Platform
import PreprocessDraws

/// The guest's test=train (Guest/tests/train.c) as a host process: the same data, seed,
/// shuffle, initialisation, MLP 64-128-10, batch, epochs, SGD with momentum and the same
/// kernels in the same order, one `CommandBatch` per epoch submitted through a
/// `GPUScheduler` client exactly as a vGPU context submits the guest's SUBMIT_3D. The
/// guest's GUEST blobs are transferred the way the vGPU does it: the ranges the batch reads
/// are written before it runs and the ranges it writes are read back after.
///
/// Native and in-VM runs therefore differ only by the virtualisation layer, which is the
/// comparison `malvvm bench native` and scripts/bench-vgpu make (the paper's Figure 1).
public final class DigitsMLP {
    public static let inputs = 64, hidden = 128, outputs = 10
    public static let learningRate: Float = 0.05, momentum: Float = 0.9
    public static let passPercent = 95.0
    public static let seed: UInt64 = 0x6d61_6c76_766d_2121

    // Offsets in the flat parameter vector (floats).
    static let pW1 = 0
    static let pB1 = pW1 + inputs * hidden
    static let pW2 = pB1 + hidden
    static let pB2 = pW2 + hidden * outputs
    public static let parameterCount = pB2 + outputs

    public struct Epoch: Sendable {
        public var index: Int
        public var meanLoss: Double
        public var trainAccuracy: Double
        public var testAccuracy: Double
        /// Wall time of the epoch as the guest measures it: shuffle, submission, readback, argmax.
        public var nanoseconds: UInt64
    }

    public struct Summary: Sendable {
        public var epochs: [Epoch]
        public var submissions: Int
        public var commands: Int
        public var totalNanoseconds: UInt64
        public var trainImagesPerSecond: Double
        public var imagesPerSecondWithEvaluation: Double
        public var finalTestAccuracy: Double
        /// Scheduler metrics over the training: charged device time / wall time.
        public var gpuBusyNanoseconds: UInt64
        public var gpuWindowNanoseconds: UInt64
        public var gpuUtilisation: Double
        public var passed: Bool { finalTestAccuracy >= DigitsMLP.passPercent }
    }

    public enum Failure: Error, CustomStringConvertible {
        case scheduler(String, SchedulerError)
        case diverged(epoch: Int)

        public var description: String {
            switch self {
            case let .scheduler(what, error): return "\(what): \(error)"
            case let .diverged(epoch): return "loss diverged in epoch \(epoch)"
            }
        }
    }

    public let dataset: DigitsDataset
    public let scheduler: GPUScheduler
    public let batchSize: Int
    public let epochs: Int
    let client: ClientID

    private var random = SplitMix64(state: DigitsMLP.seed)
    private var perm: [Int]

    // "GUEST" buffers: written or read by the host process.
    private var pixTrain, labTrain, pixTest, loss, logitsTrain, logitsTest: BufferID
    // "HOST3D" buffers: device memory only.
    private var params, grads, velocity, xTrain, xTest, z1, a1, logits, dlogits, da1, dz1, hTrain, hTest: BufferID

    public init(dataset: DigitsDataset, scheduler: GPUScheduler, batchSize: Int = 32, epochs: Int = 20,
                name: String = "train") throws(Failure) {
        self.dataset = dataset
        self.scheduler = scheduler
        self.batchSize = batchSize
        self.epochs = epochs
        perm = Array(0 ..< dataset.trainCount)
        let clientID: ClientID
        do throws(SchedulerError) {
            clientID = try scheduler.addClient(ClientConfiguration(name: name))
        } catch { throw .scheduler("context", error) }
        client = clientID
        let nTrain = dataset.trainCount, nTest = dataset.testCount
        let IN = Self.inputs, HID = Self.hidden, OUT = Self.outputs, P = Self.parameterCount
        func make(_ bytes: Int) throws(Failure) -> BufferID {
            do throws(SchedulerError) { return try scheduler.createBuffer(for: clientID, byteCount: bytes) } catch {
                try? scheduler.removeClient(clientID)
                throw .scheduler("blobs", error)
            }
        }
        pixTrain = try make(nTrain * IN)
        labTrain = try make(nTrain * 4)
        pixTest = try make(nTest * IN)
        loss = try make(nTrain * 4)
        logitsTrain = try make(nTrain * OUT * 4)
        logitsTest = try make(nTest * OUT * 4)
        params = try make(P * 4)
        grads = try make(P * 4)
        velocity = try make(P * 4)
        xTrain = try make(nTrain * IN * 4)
        xTest = try make(nTest * IN * 4)
        z1 = try make(batchSize * HID * 4)
        a1 = try make(batchSize * HID * 4)
        logits = try make(batchSize * OUT * 4)
        dlogits = try make(batchSize * OUT * 4)
        da1 = try make(batchSize * HID * 4)
        dz1 = try make(batchSize * HID * 4)
        hTrain = try make(nTrain * HID * 4)
        hTest = try make(nTest * HID * 4)
    }

    deinit {
        try? scheduler.removeClient(client)
    }

    public var stepsPerEpoch: Int { (dataset.trainCount + batchSize - 1) / batchSize }

    /// The guest's libm-free square root (60 Newton steps), so the bounds match to the bit.
    static func newtonSqrt(_ x: Double) -> Double {
        var r = x > 1 ? x : 1
        for _ in 0 ..< 60 { r = 0.5 * (r + x / r) }
        return r
    }

    // MARK: Recording

    private func f32(_ buffer: BufferID, _ offset: Int, _ count: Int) -> BufferRange {
        BufferRange(buffer, offset: offset, count: count)
    }

    private func recordForward(_ batch: inout CommandBatch, rows: Int, x: BufferRange, hpre: BufferRange,
                               hact: BufferRange, out: BufferRange) {
        let IN = Self.inputs, HID = Self.hidden, OUT = Self.outputs
        batch.append(.sgemm(SGEMMParams(m: rows, n: HID, k: IN, alpha: 1, beta: 0, a: x,
                                        b: f32(params, Self.pW1, IN * HID), c: hpre)))
        batch.append(.biasAdd(BiasAddParams(outer: rows, channels: HID, inner: 1, data: hpre,
                                            bias: f32(params, Self.pB1, HID))))
        batch.append(.activation(ActivationParams(activation: .relu, count: rows * HID, input: hpre, output: hact)))
        batch.append(.sgemm(SGEMMParams(m: rows, n: OUT, k: HID, alpha: 1, beta: 0, a: hact,
                                        b: f32(params, Self.pW2, HID * OUT), c: out)))
        batch.append(.biasAdd(BiasAddParams(outer: rows, channels: OUT, inner: 1, data: out,
                                            bias: f32(params, Self.pB2, OUT))))
    }

    private func recordStep(_ batch: inout CommandBatch, first: Int, rows: Int) {
        let IN = Self.inputs, HID = Self.hidden, OUT = Self.outputs, P = Self.parameterCount
        let x = f32(xTrain, first * IN, rows * IN)
        let rz1 = f32(z1, 0, rows * HID), ra1 = f32(a1, 0, rows * HID)
        let rl = f32(logits, 0, rows * OUT), rdl = f32(dlogits, 0, rows * OUT)
        let rda1 = f32(da1, 0, rows * HID), rdz1 = f32(dz1, 0, rows * HID)

        recordForward(&batch, rows: rows, x: x, hpre: rz1, hact: ra1, out: rl)
        batch.append(.softmaxCrossEntropy(SoftmaxCrossEntropyParams(
            rows: rows, classes: OUT, logits: rl, labels: f32(labTrain, first, rows), loss: f32(loss, first, rows),
            logitsGradient: rdl, gradientScale: 1.0 / Float(rows))))
        // dW2 = a1^T dl, db2 = sum_rows dl, da1 = dl W2^T
        batch.append(.sgemm(SGEMMParams(m: HID, n: OUT, k: rows, transposeA: true, alpha: 1, beta: 0,
                                        a: ra1, b: rdl, c: f32(grads, Self.pW2, HID * OUT))))
        batch.append(.reduce(ReduceParams(op: .sum, axis: .perColumn, rows: rows, columns: OUT, input: rdl,
                                          output: f32(grads, Self.pB2, OUT))))
        batch.append(.sgemm(SGEMMParams(m: rows, n: HID, k: OUT, transposeB: true, alpha: 1, beta: 0,
                                        a: rdl, b: f32(params, Self.pW2, HID * OUT), c: rda1)))
        // dz1 = relu'(z1) da1; dW1 = x^T dz1, db1 = sum_rows dz1
        batch.append(.activationBackward(ActivationBackwardParams(activation: .relu, count: rows * HID, input: rz1,
                                                                  outputGradient: rda1, inputGradient: rdz1)))
        batch.append(.sgemm(SGEMMParams(m: IN, n: HID, k: rows, transposeA: true, alpha: 1, beta: 0,
                                        a: x, b: rdz1, c: f32(grads, Self.pW1, IN * HID))))
        batch.append(.reduce(ReduceParams(op: .sum, axis: .perColumn, rows: rows, columns: HID, input: rdz1,
                                          output: f32(grads, Self.pB1, HID))))
        // v = mu v + g; p -= lr v
        let p = f32(params, 0, P), g = f32(grads, 0, P), v = f32(velocity, 0, P)
        batch.append(.scale(ScaleParams(count: P, alpha: Self.momentum, x: v)))
        batch.append(.axpy(AxpyParams(count: P, alpha: 1, x: g, y: v)))
        batch.append(.axpy(AxpyParams(count: P, alpha: -Self.learningRate, x: v, y: p)))
    }

    /// Shuffles the train set (host side) and records one epoch's batch.
    private func recordEpoch(firstEpoch: Bool, pixels: inout [UInt8], labels: inout [UInt32]) -> CommandBatch {
        let nTrain = dataset.trainCount, nTest = dataset.testCount
        let IN = Self.inputs, HID = Self.hidden, OUT = Self.outputs
        var i = nTrain - 1
        while i > 0 {
            let j = Int(random.next() % UInt64(i + 1))
            perm.swapAt(i, j)
            i -= 1
        }
        dataset.trainPixels.withUnsafeBufferPointer { src in
            pixels.withUnsafeMutableBufferPointer { dst in
                for r in 0 ..< nTrain {
                    let from = perm[r] * IN, to = r * IN
                    for c in 0 ..< IN { dst[to + c] = src[from + c] }
                }
            }
        }
        for r in 0 ..< nTrain { labels[r] = UInt32(dataset.trainLabels[perm[r]]) }

        var batch = CommandBatch()
        batch.kernels.reserveCapacity(2 + stepsPerEpoch * 15 + 10)
        // u8 NHWC (N x 8 x 8 x 1) -> f32 NCHW, (v - 0) / 16
        batch.append(.normalizeU8(NormalizeParams(batch: nTrain, height: 8, width: 8, channels: 1, scale: 1, mean: [0],
                                                  std: [16], input: BufferRange(pixTrain, offset: 0, count: nTrain * IN),
                                                  output: f32(xTrain, 0, nTrain * IN))))
        if firstEpoch {
            batch.append(.normalizeU8(NormalizeParams(batch: nTest, height: 8, width: 8, channels: 1, scale: 1, mean: [0],
                                                      std: [16], input: BufferRange(pixTest, offset: 0, count: nTest * IN),
                                                      output: f32(xTest, 0, nTest * IN))))
        }
        var first = 0
        while first < nTrain {
            recordStep(&batch, first: first, rows: min(batchSize, nTrain - first))
            first += batchSize
        }
        recordForward(&batch, rows: nTrain, x: f32(xTrain, 0, nTrain * IN), hpre: f32(hTrain, 0, nTrain * HID),
                      hact: f32(hTrain, 0, nTrain * HID), out: f32(logitsTrain, 0, nTrain * OUT))
        recordForward(&batch, rows: nTest, x: f32(xTest, 0, nTest * IN), hpre: f32(hTest, 0, nTest * HID),
                      hact: f32(hTest, 0, nTest * HID), out: f32(logitsTest, 0, nTest * OUT))
        return batch
    }

    private func correct(_ out: [Float], rows: Int, label: (Int) -> Int) -> Int {
        let OUT = Self.outputs
        var ok = 0
        for r in 0 ..< rows {
            var best = 0
            for c in 1 ..< OUT where out[r * OUT + c] > out[r * OUT + best] { best = c }
            if best == label(r) { ok += 1 }
        }
        return ok
    }

    // MARK: Transfers

    private func write<T>(_ buffer: BufferID, _ values: [T], _ what: String) throws(Failure) {
        let outcome: Result<Void, SchedulerError> = values.withUnsafeBytes { raw in
            do throws(SchedulerError) {
                try scheduler.write(buffer, for: client, byteOffset: 0, from: raw)
                return .success(())
            } catch { return .failure(error) }
        }
        if case let .failure(error) = outcome { throw .scheduler(what, error) }
    }

    // MARK: Training

    /// Runs the job; `report` is called after every epoch.
    public func train(report: (Epoch) -> Void = { _ in }) throws(Failure) -> Summary {
        let nTrain = dataset.trainCount, nTest = dataset.testCount
        let IN = Self.inputs, HID = Self.hidden, OUT = Self.outputs

        // Parameters: uniform +-sqrt(6 / (fan_in + fan_out)), biases 0; velocity starts at 0.
        var p = [Float](repeating: 0, count: Self.parameterCount)
        let b1 = Float(Self.newtonSqrt(6.0 / Double(IN + HID))), b2 = Float(Self.newtonSqrt(6.0 / Double(HID + OUT)))
        for i in 0 ..< IN * HID { p[Self.pW1 + i] = random.uniform(b1) }
        for i in 0 ..< HID * OUT { p[Self.pW2 + i] = random.uniform(b2) }
        try write(params, p, "upload")

        var pixels = [UInt8](repeating: 0, count: nTrain * IN)
        var labels = [UInt32](repeating: 0, count: nTrain)
        var lossValues = [Float](repeating: 0, count: nTrain)
        var outTrain = [Float](repeating: 0, count: nTrain * OUT)
        var outTest = [Float](repeating: 0, count: nTest * OUT)
        let testLabels = dataset.testLabels
        var testPixels = dataset.testPixels

        scheduler.resetMetrics()
        var results: [Epoch] = []
        var submissions = 0, commands = 0
        var total: UInt64 = 0
        var testAccuracy = 0.0
        for e in 1 ... epochs {
            let t0 = monotonicNanoseconds()
            var batch = recordEpoch(firstEpoch: e == 1, pixels: &pixels, labels: &labels)
            commands += batch.kernels.count
            // What the vGPU does for the guest's GUEST blobs, in the same one submission: the
            // ranges the batch reads go in before its kernels and the ranges it wrote come back
            // after them (HostTransfer), so native and VM pay the same copies.
            let outcome: Result<ScheduledCompletion, SchedulerError> = pixels.withUnsafeMutableBytes { pixelBytes in
                labels.withUnsafeMutableBytes { labelBytes in
                    testPixels.withUnsafeMutableBytes { testPixelBytes in
                        lossValues.withUnsafeMutableBytes { lossBytes in
                            outTrain.withUnsafeMutableBytes { trainBytes in
                                outTest.withUnsafeMutableBytes { testBytes in
                                    batch.uploads = [HostTransfer(buffer: pixTrain, byteOffset: 0, host: pixelBytes),
                                                     HostTransfer(buffer: labTrain, byteOffset: 0, host: labelBytes)]
                                    if e == 1 { batch.uploads.append(HostTransfer(buffer: pixTest, byteOffset: 0, host: testPixelBytes)) }
                                    batch.downloads = [HostTransfer(buffer: loss, byteOffset: 0, host: lossBytes),
                                                       HostTransfer(buffer: logitsTrain, byteOffset: 0, host: trainBytes),
                                                       HostTransfer(buffer: logitsTest, byteOffset: 0, host: testBytes)]
                                    do throws(SchedulerError) { return try scheduler.submit(batch, for: client).wait() } catch {
                                        return .failure(error)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            submissions += 1
            if case let .failure(error) = outcome { throw .scheduler("epoch submission", error) }

            var sum = 0.0
            for value in lossValues { sum += Double(value) }
            let okTrain = correct(outTrain, rows: nTrain) { Int(labels[$0]) }
            let okTest = correct(outTest, rows: nTest) { Int(testLabels[$0]) }
            let elapsed = monotonicNanoseconds() - t0
            total += elapsed
            let meanLoss = sum / Double(nTrain)
            testAccuracy = 100.0 * Double(okTest) / Double(nTest)
            let epoch = Epoch(index: e, meanLoss: meanLoss, trainAccuracy: 100.0 * Double(okTrain) / Double(nTrain),
                              testAccuracy: testAccuracy, nanoseconds: elapsed)
            results.append(epoch)
            report(epoch)
            if meanLoss.isNaN || meanLoss > 1e6 { throw .diverged(epoch: e) }
        }
        let metrics = scheduler.metrics()
        let seconds = Double(total) / 1e9
        return Summary(
            epochs: results, submissions: submissions, commands: commands, totalNanoseconds: total,
            trainImagesPerSecond: Double(epochs * nTrain) / seconds,
            imagesPerSecondWithEvaluation: Double(epochs * (2 * nTrain + nTest)) / seconds,
            finalTestAccuracy: testAccuracy, gpuBusyNanoseconds: metrics.busyNanoseconds,
            gpuWindowNanoseconds: metrics.windowNanoseconds, gpuUtilisation: metrics.utilisation)
    }
}
