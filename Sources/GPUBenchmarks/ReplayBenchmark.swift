import GPUHost
import Platform

/// What a repeated training epoch costs the host to hand to the device: recorded afresh every
/// time (as before command-buffer replay, and as for a batch validated anew) against replaying
/// the recording of one validated batch (a para-vGPU's decode-cache hit). The batch has the
/// shape of the guest's `test=train` epoch: an MLP 64-128-10 step of 15 kernels, 45 steps.
/// On lavapipe the device time hides the difference; on a real GPU the host's recording is
/// most of a small epoch's cost, which is what this measures.
public enum ReplayBenchmark {
    public struct Measurement: Sendable {
        public var kernels: Int
        public var rounds: Int
        /// Median host time in `submit` per batch: lowering, recording or finding the recording,
        /// queue submission (`BatchCompletion.submitNanoseconds`).
        public var recordSubmitNanoseconds: Double
        public var replaySubmitNanoseconds: Double
        /// Median wall time per batch, submit to completion.
        public var recordWallNanoseconds: Double
        public var replayWallNanoseconds: Double
        /// Median device time per batch (the same work either way).
        public var deviceNanoseconds: Double?
    }

    /// `rounds` batches each way, alternating (so drifting load favours neither), after one
    /// warm-up of each.
    package static func measure(on backend: VulkanBackend, steps: Int = 45, rounds: Int = 20) throws(GPUBenchmarkError) -> Measurement {
        do {
            return try measureThrowing(on: backend, steps: steps, rounds: rounds)
        } catch {
            throw GPUBenchmarkError("replay: \(error)")
        }
    }

    private static func measureThrowing(on backend: VulkanBackend, steps: Int, rounds: Int) throws -> Measurement {
        let (batch, inputs, hidden, classes) = (32, 64, 128, 10)
        var ids: [BufferID] = []
        defer { for id in ids { try? backend.destroyBuffer(id) } }
        func buffer(_ count: Int) throws -> BufferRange {
            let id = try backend.createBuffer(byteCount: count * 4, placement: .deviceLocal)
            ids.append(id)
            try backend.write(floats: (0 ..< count).map { Float($0 % 13) * 0.01 - 0.06 }, to: id)
            return BufferRange(id, count: count)
        }
        let x = try buffer(batch * inputs), w1 = try buffer(inputs * hidden), b1 = try buffer(hidden)
        let h = try buffer(batch * hidden), a = try buffer(batch * hidden), w2 = try buffer(hidden * classes)
        let b2 = try buffer(classes), o = try buffer(batch * classes), loss = try buffer(batch)
        let dO = try buffer(batch * classes), dW2 = try buffer(hidden * classes), db2 = try buffer(classes)
        let dA = try buffer(batch * hidden), dH = try buffer(batch * hidden), dW1 = try buffer(inputs * hidden)
        let db1 = try buffer(hidden)
        let labelsID = try backend.makeBuffer(uint32s: (0 ..< batch).map { UInt32($0 % classes) })
        ids.append(labelsID)
        let labels = BufferRange(labelsID, count: batch)
        let step: [Kernel] = [
            .sgemm(SGEMMParams(m: batch, n: hidden, k: inputs, a: x, b: w1, c: h)),
            .biasAdd(BiasAddParams(outer: batch, channels: hidden, data: h, bias: b1)),
            .activation(ActivationParams(activation: .relu, count: batch * hidden, input: h, output: a)),
            .sgemm(SGEMMParams(m: batch, n: classes, k: hidden, a: a, b: w2, c: o)),
            .biasAdd(BiasAddParams(outer: batch, channels: classes, data: o, bias: b2)),
            .softmaxCrossEntropy(SoftmaxCrossEntropyParams(rows: batch, classes: classes, logits: o, labels: labels,
                                                           loss: loss, logitsGradient: dO)),
            .sgemm(SGEMMParams(m: hidden, n: classes, k: batch, transposeA: true, a: a, b: dO, c: dW2)),
            .reduce(ReduceParams(op: .sum, axis: .perColumn, rows: batch, columns: classes, input: dO, output: db2)),
            .sgemm(SGEMMParams(m: batch, n: hidden, k: classes, transposeB: true, a: dO, b: w2, c: dA)),
            .activationBackward(ActivationBackwardParams(activation: .relu, count: batch * hidden, input: h,
                                                         outputGradient: dA, inputGradient: dH)),
            .sgemm(SGEMMParams(m: inputs, n: hidden, k: batch, transposeA: true, a: x, b: dH, c: dW1)),
            .reduce(ReduceParams(op: .sum, axis: .perColumn, rows: batch, columns: hidden, input: dH, output: db1)),
            .axpy(AxpyParams(count: inputs * hidden, alpha: -0.01, x: dW1, y: w1)),
            .axpy(AxpyParams(count: hidden, alpha: -0.01, x: db1, y: b1)),
            .axpy(AxpyParams(count: hidden * classes, alpha: -0.01, x: dW2, y: w2)),
        ]
        let epoch = CommandBatch(Array([[Kernel]](repeating: step, count: steps).joined()))
        let capacity = { (id: BufferID) in backend.capacity(of: id) }
        let replayed = try ValidatedBatch(epoch, capacity: capacity)
        func timed(_ validated: ValidatedBatch) throws -> (submit: Double, wall: Double, device: Double?, replayed: Bool) {
            let start = monotonicNanoseconds()
            let completion = try backend.wait(try backend.submit(validated), timeoutNanoseconds: .max)
            let wall = Double(monotonicNanoseconds() - start)
            return (Double(completion.submitNanoseconds), wall, completion.executionNanoseconds.map(Double.init),
                    completion.replayedRecording)
        }
        // Warm-up: pipelines, and the replayed batch's recording (recorded once it repeats).
        for _ in 0 ..< 2 {
            _ = try timed(try ValidatedBatch(epoch, capacity: capacity))
            _ = try timed(replayed)
        }
        var record: [(submit: Double, wall: Double, device: Double?, replayed: Bool)] = []
        var replay: [(submit: Double, wall: Double, device: Double?, replayed: Bool)] = []
        for _ in 0 ..< rounds {
            record.append(try timed(try ValidatedBatch(epoch, capacity: capacity)))
            replay.append(try timed(replayed))
        }
        guard record.allSatisfy({ !$0.replayed }), replay.allSatisfy(\.replayed) else {
            throw GPUBenchmarkError("replay: the backend did not replay exactly the repeated batch")
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let devices = (record + replay).compactMap(\.device)
        return Measurement(kernels: epoch.kernels.count, rounds: rounds,
                           recordSubmitNanoseconds: median(record.map(\.submit)),
                           replaySubmitNanoseconds: median(replay.map(\.submit)),
                           recordWallNanoseconds: median(record.map(\.wall)), replayWallNanoseconds: median(replay.map(\.wall)),
                           deviceNanoseconds: devices.isEmpty ? nil : median(devices))
    }
}
