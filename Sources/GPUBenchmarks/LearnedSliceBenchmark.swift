import Foundation
import GPUHost
import Platform
import Synchronization

/// `learned-slice` against equal share with a fixed slice (issue #17, "ML for OS"): one client
/// trains (back-to-back batches many time slices long, as a training step of a large model)
/// while three send small inference-like batches with think time between them. Measured per
/// mode: the small batches' wait (submitted → completed, less their own device time: the time
/// spent behind other work in the scheduler's queue and the device's; p50, p99), the
/// trainer's throughput and slice overruns, and the scheduler's Jain index over the clients'
/// shares. The modes alternate round by round, on one backend, so drifting load favours neither.
public enum LearnedSliceBenchmark {
    public struct Round: Sendable {
        public var learned: Bool
        public var smallQueueingP50Nanoseconds: UInt64
        public var smallQueueingP99Nanoseconds: UInt64
        public var smallBatches: Int
        public var trainerBatchesPerSecond: Double
        public var trainerSliceOverruns: UInt64
        public var trainerSlices: UInt64
        public var piecesPerBatch: Double
        /// The scheduler's Jain index over measured against target shares. The small clients
        /// ask for far less than their equal part, so it is low in both modes; what matters is
        /// that it does not change.
        public var jain: Double
        /// The trainer's device time over its entitlement (a quarter under equal share): the
        /// fairness that matters here, since the small clients get all they ask for.
        public var trainerShareOfEntitlement: Double
        public var utilisation: Double
    }

    public struct Measurement: Sendable {
        public var rounds: [Round]
        public var trainerKernels: Int
        /// The trainer's batch, measured alone, in time slices.
        public var trainerBatchSlices: Double
        public var timeSliceNanoseconds: UInt64

        func median(_ learned: Bool, _ value: (Round) -> Double) -> Double {
            let values = rounds.filter { $0.learned == learned }.map(value).sorted()
            return values.isEmpty ? .nan : values[values.count / 2]
        }

        public func smallP99(learned: Bool) -> Double { median(learned) { Double($0.smallQueueingP99Nanoseconds) } }
        public func smallP50(learned: Bool) -> Double { median(learned) { Double($0.smallQueueingP50Nanoseconds) } }
        public func trainerThroughput(learned: Bool) -> Double { median(learned, \.trainerBatchesPerSecond) }
        public func jain(learned: Bool) -> Double { median(learned, \.jain) }
        public func trainerShareOfEntitlement(learned: Bool) -> Double { median(learned, \.trainerShareOfEntitlement) }
        public func overrunsPerSlice(learned: Bool) -> Double {
            median(learned) { $0.trainerSlices == 0 ? 0 : Double($0.trainerSliceOverruns) / Double($0.trainerSlices) }
        }
    }

    /// Gives VM `vm`'s scheduler clients on `scheduler` the learned-slice model (the MLaaS module,
    /// as `--mlaas learned-slice` would); returns what takes it away again.
    public typealias ModelAttachment = (_ scheduler: GPUScheduler, _ vm: String) throws -> () -> Void

    /// The trainer's VM, as the scheduler knows its client.
    static let trainerVM = "trainer"

    public static func measure(on backend: any ComputeBackend, seconds: Double, rounds: Int, attachModel: ModelAttachment,
                               progress: (String) -> Void = { _ in }) throws(GPUBenchmarkError) -> Measurement {
        do {
            return try measureThrowing(on: backend, seconds: seconds, rounds: rounds, attachModel: attachModel, progress: progress)
        } catch let error as GPUBenchmarkError {
            throw error
        } catch {
            throw GPUBenchmarkError("learned-slice: \(error)")
        }
    }

    /// The trainer's batch shape on this backend (measured): scale kernels of about a quarter
    /// slice each (fewer elements on a slow device), as many as make the batch about `slices`
    /// time slices, at most 256. A batch can only be cut between kernels.
    private static func trainerShape(on backend: any ComputeBackend, slices: Double, slice: UInt64) throws
        -> (kernels: Int, elements: Int) {
        var elements = 1 << 20
        var perKernel = 1.0
        for _ in 0 ..< 3 {
            let buffer = try backend.createBuffer(byteCount: elements * 4, placement: .deviceLocal)
            defer { try? backend.destroyBuffer(buffer) }
            let batch = CommandBatch([Kernel](repeating: .scale(ScaleParams(count: elements, alpha: 1,
                                                                            x: BufferRange(buffer, count: elements))), count: 8))
            var best = UInt64.max
            for _ in 0 ..< 3 {
                let start = monotonicNanoseconds()
                _ = try backend.wait(try backend.submit(batch), timeoutNanoseconds: .max)
                best = min(best, monotonicNanoseconds() - start)
            }
            perKernel = max(1.0, Double(best) / 8)
            let target = Double(slice) / 4
            guard perKernel > target * 1.5, elements > 4096 else { break }
            elements = max(4096, Int(Double(elements) * target / perKernel))
        }
        return (min(256, max(8, Int(slices * Double(slice) / perKernel))), elements)
    }

    private static func measureThrowing(on backend: any ComputeBackend, seconds: Double, rounds: Int,
                                        attachModel: ModelAttachment, progress: (String) -> Void) throws -> Measurement {
        let configuration = SchedulerConfiguration(policy: .equalShare)
        let slice = configuration.timeSlice(forClients: 4)
        let (kernels, elements) = try trainerShape(on: backend, slices: 8, slice: slice)
        var results: [Round] = []
        var batchSlices = 0.0
        for round in 0 ..< rounds * 2 {
            // Alternate which mode goes first in each pair.
            let learned = (round % 2 == 0) == (round / 2 % 2 == 0)
            let scheduler = try GPUScheduler(backend: backend, configuration: configuration)
            defer { scheduler.stop() }
            let detachModel = learned ? try attachModel(scheduler, trainerVM) : {}
            defer { detachModel() }
            let trainer = try Trainer(scheduler, kernels: kernels, elements: elements)
            let smalls = try (0 ..< 3).map { try Inference(scheduler, name: "small\($0)", seed: UInt64(round * 3 + $0 + 1)) }
            trainer.start()
            for small in smalls { small.start() }
            // Warm-up: pipelines, and the predictor's first measurements.
            Thread.sleep(forTimeInterval: min(0.5, seconds / 2))
            scheduler.resetMetrics()
            for small in smalls { small.resetSamples() }
            let trainedBefore = trainer.completed
            let started = monotonicNanoseconds()
            Thread.sleep(forTimeInterval: seconds)
            let elapsed = Double(monotonicNanoseconds() - started) / 1e9
            let metrics = scheduler.metrics()
            let trained = trainer.completed - trainedBefore
            trainer.stop()
            for small in smalls { small.stop() }
            let samples = smalls.flatMap { $0.samples }.sorted()
            guard !samples.isEmpty, let trainerMetrics = metrics.client(trainer.id) else {
                throw GPUBenchmarkError("learned-slice: no small batch ran in round \(round + 1)")
            }
            if !learned { batchSlices = trainer.lastChargedNanoseconds / Double(slice) }
            func percentile(_ p: Double) -> UInt64 { samples[min(samples.count - 1, Int(Double(samples.count) * p))] }
            results.append(Round(
                learned: learned, smallQueueingP50Nanoseconds: percentile(0.5), smallQueueingP99Nanoseconds: percentile(0.99),
                smallBatches: samples.count, trainerBatchesPerSecond: Double(trained) / elapsed,
                trainerSliceOverruns: trainerMetrics.sliceOverruns, trainerSlices: trainerMetrics.slices,
                piecesPerBatch: trainerMetrics.batchesCut == 0 ? 1 : Double(trainerMetrics.piecesMade) / Double(trainerMetrics.batchesCut),
                jain: metrics.jainIndex,
                trainerShareOfEntitlement: trainerMetrics.entitledShare > 0 ? trainerMetrics.deviceShare / trainerMetrics.entitledShare : 0,
                utilisation: metrics.utilisation))
            progress("round \(round / 2 + 1), \(learned ? "learned-slice" : "fixed slice"): small p99 "
                + "\(percentile(0.99) / 1000) µs, trainer \(String(format: "%.1f", Double(trained) / elapsed)) batches/s")
        }
        return Measurement(rounds: results, trainerKernels: kernels, trainerBatchSlices: batchSlices, timeSliceNanoseconds: slice)
    }

    /// The training client: one long batch after another, each waited for.
    private final class Trainer: @unchecked Sendable {
        let id: ClientID
        let scheduler: GPUScheduler
        let batch: ValidatedBatch
        private let state = Mutex((running: true, completed: 0, charged: 0.0))
        private var thread: Thread?
        private let finished = DispatchSemaphore(value: 0)

        init(_ scheduler: GPUScheduler, kernels: Int, elements count: Int) throws {
            self.scheduler = scheduler
            id = try scheduler.addClient(ClientConfiguration(name: "trainer", owner: ClientOwner(vm: LearnedSliceBenchmark.trainerVM,
                                                                                                vgpu: "vgpu0")))
            let buffer = try scheduler.createBuffer(for: id, byteCount: count * 4)
            let range = BufferRange(buffer, count: count)
            // One validation, resubmitted: a para-vGPU's decode-cache hit every step.
            batch = try ValidatedBatch(CommandBatch([Kernel](repeating: .scale(ScaleParams(count: count, alpha: 1, x: range)),
                                                            count: kernels)),
                                       capacity: { _ in count * 4 })
        }

        var completed: Int { state.withLock { $0.completed } }
        var lastChargedNanoseconds: Double { state.withLock { $0.charged } }

        func start() {
            let thread = Thread { [self] in
                while state.withLock({ $0.running }) {
                    guard let ticket = try? scheduler.submit(batch, for: id), case let .success(done) = ticket.wait() else { break }
                    state.withLock { $0.completed += 1; $0.charged = Double(done.chargedNanoseconds) }
                }
                finished.signal()
            }
            self.thread = thread
            thread.start()
        }

        func stop() {
            state.withLock { $0.running = false }
            finished.wait()
        }
    }

    /// An inference-like client: a small batch, waited for, then 0.5-2.5 ms of think time.
    private final class Inference: @unchecked Sendable {
        let scheduler: GPUScheduler
        let id: ClientID
        let batch: ValidatedBatch
        private let state: Mutex<(running: Bool, samples: [UInt64], random: UInt64)>
        private let finished = DispatchSemaphore(value: 0)

        init(_ scheduler: GPUScheduler, name: String, seed: UInt64) throws {
            self.scheduler = scheduler
            id = try scheduler.addClient(ClientConfiguration(name: name))
            let buffer = try scheduler.createBuffer(for: id, byteCount: 4096 * 4)
            batch = try ValidatedBatch(CommandBatch([.scale(ScaleParams(count: 4096, alpha: 1, x: BufferRange(buffer, count: 4096)))]),
                                       capacity: { _ in 4096 * 4 })
            state = Mutex((true, [], seed &* 0x9E37_79B9_7F4A_7C15 | 1))
        }

        var samples: [UInt64] { state.withLock { $0.samples } }
        func resetSamples() { state.withLock { $0.samples.removeAll() } }

        func start() {
            Thread { [self] in
                while true {
                    guard state.withLock({ $0.running }), let ticket = try? scheduler.submit(batch, for: id),
                          case let .success(done) = ticket.wait() else { break }
                    let pause = state.withLock { state -> UInt64 in
                        let latency = done.completedAt - min(done.enqueuedAt, done.completedAt)
                        state.samples.append(latency - min(latency, done.batch.executionNanoseconds ?? 0))
                        // xorshift64: a reproducible think time per client and round.
                        state.random ^= state.random << 13
                        state.random ^= state.random >> 7
                        state.random ^= state.random << 17
                        return 500_000 + state.random % 2_000_000
                    }
                    Thread.sleep(forTimeInterval: Double(pause) / 1e9)
                }
                finished.signal()
            }.start()
        }

        func stop() {
            state.withLock { $0.running = false }
            finished.wait()
        }
    }
}
