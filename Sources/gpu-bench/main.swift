// gpu-bench: GPUHost's benchmark. Run through scripts/bench-gpu, which builds this in release
// mode and the direct-Vulkan C harness (bench/vkdirect) beside it.
//
//   gpu-bench plan PLAN                 write the kernel cases as raw dispatches for vkdirect
//   gpu-bench kernels                   one round of the kernel cases through VulkanBackend
//   gpu-bench run --ours R --direct R --json OUT --shares CSV [--seconds S]
//   gpu-bench gemm [--sizes 512,2048] [--seconds S] [--each-variant]
//                                       sgemm TFLOP/s per square size, for comparison with
//                                       PyTorch's back-to-back matmul (scripts/lib/gpucheck/torch_gemm.py)
//
// `run` measures each kernel through VulkanBackend (submit + wait, recorded per batch as the
// backend always does) against vkdirect's numbers for the same SPIR-V, then the scheduler
// with 1/2/4/8 clients under each policy, then a come-and-go scenario for the share plot.
import Foundation
import GPUHost
import Synchronization

struct BenchCase {
    var name: String
    var bufferBytes: [Int]
    var iterations: Int
    var flops: Double?
    var bytesMoved: Double?
    var kernel: ([BufferID]) -> Kernel
}

let mega = 1 << 20
let cases: [BenchCase] = [
    BenchCase(name: "sgemm_256", bufferBytes: [256 * 256 * 4, 256 * 256 * 4, 256 * 256 * 4], iterations: 20,
              flops: 2 * pow(256, 3), bytesMoved: nil) { b in
        .sgemm(SGEMMParams(m: 256, n: 256, k: 256, a: BufferRange(b[0], count: 256 * 256),
                           b: BufferRange(b[1], count: 256 * 256), c: BufferRange(b[2], count: 256 * 256)))
    },
    BenchCase(name: "sgemm_512", bufferBytes: [512 * 512 * 4, 512 * 512 * 4, 512 * 512 * 4], iterations: 8,
              flops: 2 * pow(512, 3), bytesMoved: nil) { b in
        .sgemm(SGEMMParams(m: 512, n: 512, k: 512, a: BufferRange(b[0], count: 512 * 512),
                           b: BufferRange(b[1], count: 512 * 512), c: BufferRange(b[2], count: 512 * 512)))
    },
    BenchCase(name: "axpy_4M", bufferBytes: [4 * mega * 4, 4 * mega * 4], iterations: 20,
              flops: nil, bytesMoved: 12 * Double(4 * mega)) { b in
        .axpy(AxpyParams(count: 4 * mega, alpha: 0.5, x: BufferRange(b[0], count: 4 * mega), y: BufferRange(b[1], count: 4 * mega)))
    },
    BenchCase(name: "scale_4M", bufferBytes: [4 * mega * 4], iterations: 20, flops: nil, bytesMoved: 8 * Double(4 * mega)) { b in
        .scale(ScaleParams(count: 4 * mega, alpha: 1.0001, x: BufferRange(b[0], count: 4 * mega)))
    },
    BenchCase(name: "gelu_4M", bufferBytes: [4 * mega * 4, 4 * mega * 4], iterations: 20, flops: nil,
              bytesMoved: 8 * Double(4 * mega)) { b in
        .activation(ActivationParams(activation: .gelu, count: 4 * mega, input: BufferRange(b[0], count: 4 * mega),
                                     output: BufferRange(b[1], count: 4 * mega)))
    },
    BenchCase(name: "softmax_2048x1000", bufferBytes: [2048 * 1000 * 4, 2048 * 1000 * 4], iterations: 20, flops: nil,
              bytesMoved: 8 * 2048 * 1000) { b in
        .softmax(SoftmaxParams(rows: 2048, columns: 1000, input: BufferRange(b[0], count: 2048 * 1000),
                               output: BufferRange(b[1], count: 2048 * 1000)))
    },
    BenchCase(name: "reduce_rows_2048x2048", bufferBytes: [2048 * 2048 * 4, 2048 * 4], iterations: 20, flops: nil,
              bytesMoved: 4 * 2048 * 2049) { b in
        .reduce(ReduceParams(op: .sum, axis: .perRow, rows: 2048, columns: 2048, input: BufferRange(b[0], count: 2048 * 2048),
                             output: BufferRange(b[1], count: 2048)))
    },
    BenchCase(name: "conv2d_8x16x32x32_k32_3x3", bufferBytes: [8 * 16 * 32 * 32 * 4, 32 * 16 * 9 * 4, 8 * 32 * 32 * 32 * 4],
              iterations: 10, flops: 2 * 8 * 32 * 32 * 32 * 16 * 9, bytesMoved: nil) { b in
        let shape = Conv2DShape(batch: 8, inChannels: 16, height: 32, width: 32, outChannels: 32, kernelHeight: 3,
                                kernelWidth: 3, padY: 1, padX: 1)
        return .conv2dForward(Conv2DForwardParams(shape: shape, input: BufferRange(b[0], count: 8 * 16 * 32 * 32),
                                                  weight: BufferRange(b[1], count: 32 * 16 * 9),
                                                  output: BufferRange(b[2], count: 8 * 32 * 32 * 32)))
    },
]

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("gpu-bench: \(message)\n".utf8))
    exit(1)
}

func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

func median(_ values: [UInt64]) -> UInt64 {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

func makeVulkan() -> VulkanBackend {
    do throws(GPUError) {
        return try VulkanBackend(selector: .automatic)
    } catch {
        fail("no Vulkan device: \(error)")
    }
}

// MARK: plan

func writePlan(to path: String) {
    let backend = makeVulkan()
    let maxX = backend.device.maxComputeWorkGroupCount.first ?? 65535
    var text = ""
    for benchCase in cases {
        let ids = benchCase.bufferBytes.indices.map { BufferID(rawValue: UInt64($0 + 1)) }
        let sizes = Dictionary(uniqueKeysWithValues: zip(ids, benchCase.bufferBytes))
        let dispatches: [DispatchDescription]
        do throws(KernelValidationError) {
            dispatches = try benchCase.kernel(ids).dispatchDescriptions(buffers: sizes, order: ids, maxGroupsX: maxX)
        } catch {
            fail("\(benchCase.name): \(error)")
        }
        text += "case \(benchCase.name) \(benchCase.iterations)\n"
        for bytes in benchCase.bufferBytes { text += "buffer \(bytes)\n" }
        for d in dispatches {
            text += "dispatch \(d.shader) \(d.groupsX) \(d.groupsY) \(d.bindings.count) "
                + d.bindings.map(String.init).joined(separator: " ")
                + " \(d.pushConstants.count) " + d.pushConstants.map(String.init).joined(separator: " ") + "\n"
        }
        text += "end\n"
    }
    do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch { fail("cannot write \(path): \(error)") }
}

// MARK: kernels through our backend

struct KernelResult: Codable {
    var name: String
    var unit: String
    var ours: Double
    var direct: Double?
    var oursWallNanoseconds: UInt64
    var directWallNanoseconds: UInt64?
    var oursDeviceNanoseconds: UInt64
    var directDeviceNanoseconds: UInt64?
    /// ours / direct wall time per batch (submit → completion); goal ≤ 1.05.
    var overheadRatio: Double?
}

/// Both sides are measured in alternating rounds (vkdirect, ours, vkdirect, ours) and each
/// keeps its best per-round median, so drift in the machine's load does not land on one side.
func measureKernels(ours: [String: (wall: UInt64, device: UInt64)],
                    direct: [String: (wall: UInt64, device: UInt64)]) -> [KernelResult] {
    cases.compactMap { benchCase in
        guard let mine = ours[benchCase.name] else { return nil }
        func rate(_ nanoseconds: UInt64) -> Double {
            let seconds = Double(max(nanoseconds, 1)) / 1e9
            if let flops = benchCase.flops { return flops / seconds / 1e9 }
            return (benchCase.bytesMoved ?? 0) / seconds / 1e9
        }
        let other = direct[benchCase.name]
        return KernelResult(
            name: benchCase.name, unit: benchCase.flops != nil ? "GFLOP/s" : "GB/s", ours: rate(mine.wall),
            direct: other.map { rate($0.wall) }, oursWallNanoseconds: mine.wall, directWallNanoseconds: other?.wall,
            oursDeviceNanoseconds: mine.device, directDeviceNanoseconds: other?.device,
            overheadRatio: other.map { Double(mine.wall) / Double(max($0.wall, 1)) })
    }
}

/// One round through our backend; prints "NAME WALL_NS DEVICE_NS", as vkdirect does.
func kernelRound(_ backend: VulkanBackend) -> String {
    var text = ""
    for benchCase in cases {
        do throws(GPUError) {
            var ids: [BufferID] = []
            for bytes in benchCase.bufferBytes {
                let id = try backend.createBuffer(byteCount: bytes, placement: .deviceLocal)
                // Same data as vkdirect writes.
                try backend.write(floats: (0 ..< bytes / 4).map { Float($0 % 97) * 0.01 - 0.4 }, to: id)
                ids.append(id)
            }
            let batch = CommandBatch([benchCase.kernel(ids)])
            var walls: [UInt64] = []
            var devices: [UInt64] = []
            for iteration in -2 ..< benchCase.iterations {
                let start = now()
                let completion = try backend.run(batch)
                let wall = now() - start
                if iteration >= 0 {
                    walls.append(wall)
                    devices.append(completion.executionNanoseconds ?? wall)
                }
            }
            for id in ids { try backend.destroyBuffer(id) }
            text += "\(benchCase.name) \(median(walls)) \(median(devices))\n"
        } catch {
            fail("\(benchCase.name): \(error)")
        }
    }
    return text
}

// MARK: sharing

/// A closed-loop client: keeps `depth` batches queued, resubmitting from the completion
/// callback, until stopped.
final class LoadClient: Sendable {
    let id: ClientID
    let batch: CommandBatch
    let scheduler: GPUScheduler
    let running = Atomic<Bool>(false)

    init(_ scheduler: GPUScheduler, name: String, weight: Double, size: Int = 64, kernels: Int = 2) throws {
        self.scheduler = scheduler
        let id = try scheduler.addClient(ClientConfiguration(name: name, weight: weight, memoryQuotaBytes: 64 << 20))
        self.id = id
        let count = size * size
        let buffers = try (0 ..< 3).map { _ in try scheduler.createBuffer(for: id, byteCount: count * 4) }
        let values = [Float](repeating: 0.25, count: count)
        try values.withUnsafeBytes { raw in
            for buffer in buffers { try scheduler.write(buffer, for: id, byteOffset: 0, from: raw) }
        }
        let kernel = Kernel.sgemm(SGEMMParams(m: size, n: size, k: size, a: BufferRange(buffers[0], count: count),
                                              b: BufferRange(buffers[1], count: count), c: BufferRange(buffers[2], count: count)))
        batch = CommandBatch([Kernel](repeating: kernel, count: kernels))
    }

    func start(depth: Int = 2) {
        running.store(true, ordering: .relaxed)
        for _ in 0 ..< depth { submit() }
    }

    func stop() { running.store(false, ordering: .relaxed) }

    private func submit() {
        _ = try? scheduler.submit(batch, for: id) { [self] result in
            if case .success = result, running.load(ordering: .relaxed) { submit() }
        }
    }
}

func weights(_ count: Int) -> [Double] {
    (0 ..< count).map { [1.0, 1, 2, 4][$0 % 4] }
}

func policy(_ name: String, weights: [Double]) -> SchedulingPolicy {
    switch name {
    case "best-effort": return .bestEffort
    case "equal-share": return .equalShare
    default: return .fixedShare(totalWeight: weights.reduce(0, +))
    }
}

struct SharingResult: Codable {
    var policy: String
    var clients: Int
    var utilisation: Double
    var jain: Double
    var maxShareError: Double
    var shares: [Double]
    var targets: [Double]
    var queueingP50Microseconds: Double
    var queueingP99Microseconds: Double
    var queueingMaxMicroseconds: Double
    var decisionOverheadMeanNanoseconds: Double
    var decisionOverheadP99Nanoseconds: UInt64
    var decisions: UInt64
    var slices: UInt64
    var sliceOverruns: UInt64
    var timeSliceMicroseconds: Double
}

func measureSharing(_ backend: VulkanBackend, seconds: Double) -> [SharingResult] {
    var results: [SharingResult] = []
    for policyName in ["best-effort", "equal-share", "fixed-share"] {
        for count in [1, 2, 4, 8] {
            do {
                let w = weights(count)
                let scheduler = try GPUScheduler(backend: backend,
                                                 configuration: SchedulerConfiguration(policy: policy(policyName, weights: w)))
                let clients = try w.enumerated().map { try LoadClient(scheduler, name: "vm\($0.offset)", weight: $0.element) }
                for client in clients { client.start() }
                Thread.sleep(forTimeInterval: 0.3)
                scheduler.resetMetrics()
                Thread.sleep(forTimeInterval: seconds)
                let m = scheduler.metrics()
                for client in clients { client.stop() }
                for client in clients { try scheduler.drain(client.id) }
                scheduler.shutdown()
                let perClient = clients.compactMap { m.client($0.id) }
                results.append(SharingResult(
                    policy: policyName, clients: count, utilisation: m.utilisation, jain: m.jainIndex,
                    maxShareError: m.maxAbsoluteShareError, shares: perClient.map(\.measuredShare),
                    targets: perClient.map(\.targetShare),
                    queueingP50Microseconds: Double(m.queueing.p50Nanoseconds) / 1000,
                    queueingP99Microseconds: Double(m.queueing.p99Nanoseconds) / 1000,
                    queueingMaxMicroseconds: Double(m.queueing.maxNanoseconds) / 1000,
                    decisionOverheadMeanNanoseconds: m.decisionOverhead.meanNanoseconds,
                    decisionOverheadP99Nanoseconds: m.decisionOverhead.p99Nanoseconds, decisions: m.decisions,
                    slices: m.slices, sliceOverruns: m.sliceOverruns,
                    timeSliceMicroseconds: Double(m.timeSliceNanoseconds) / 1000))
                FileHandle.standardError.write(Data("gpu-bench: \(policyName) x\(count) done\n".utf8))
            } catch {
                fail("sharing \(policyName) x\(count): \(error)")
            }
        }
    }
    return results
}

/// Come and go: vm0-vm2 from the start, vm3 joins after 10 ticks, vm0 goes idle after 20,
/// end after 30; every tick (100 ms of sleep) each client's share of device time in that
/// interval. Event rows ("event:...") carry the measured instants for the plot.
func shareTimeline(_ backend: VulkanBackend) -> String {
    var csv = "policy,t,client,weight,share\n"
    for policyName in ["best-effort", "equal-share", "fixed-share"] {
        do {
            let w = weights(4)
            let scheduler = try GPUScheduler(backend: backend,
                                             configuration: SchedulerConfiguration(policy: policy(policyName, weights: w)))
            var clients = try (0 ..< 3).map { try LoadClient(scheduler, name: "vm\($0)", weight: w[$0]) }
            for client in clients { client.start() }
            var last = [ClientID: UInt64]()
            var lastTime = now()
            let start = lastTime
            var late: LoadClient?
            for tick in 1 ... 30 {
                Thread.sleep(forTimeInterval: 0.1)
                if tick == 10 {
                    let joined = try LoadClient(scheduler, name: "vm3", weight: w[3])
                    joined.start()
                    late = joined
                    clients.append(joined)
                    csv += "\(policyName),\(String(format: "%.2f", Double(now() - start) / 1e9)),event:vm3 joins,0,0\n"
                }
                if tick == 20 {
                    clients[0].stop()
                    csv += "\(policyName),\(String(format: "%.2f", Double(now() - start) / 1e9)),event:vm0 idles,0,0\n"
                }
                let m = scheduler.metrics()
                let t = now()
                for (index, client) in clients.enumerated() {
                    guard let metrics = m.client(client.id) else { continue }
                    let delta = metrics.chargedNanoseconds - min(last[client.id] ?? 0, metrics.chargedNanoseconds)
                    last[client.id] = metrics.chargedNanoseconds
                    let share = Double(delta) / Double(max(t - lastTime, 1))
                    csv += "\(policyName),\(String(format: "%.2f", Double(t - start) / 1e9)),vm\(index),\(w[index]),\(String(format: "%.4f", share))\n"
                }
                lastTime = t
            }
            _ = late
            for client in clients { client.stop() }
            for client in clients { try scheduler.drain(client.id) }
            scheduler.shutdown()
        } catch {
            fail("timeline \(policyName): \(error)")
        }
    }
    return csv
}

// MARK: gemm

/// One measured configuration of `gemm`.
struct GemmMeasurement {
    var iterations: Int
    /// Device time per sgemm (timestamps around the whole batch, divided by its kernels).
    var deviceNanoseconds: Double
    /// Wall time per sgemm, submit to completion of the whole batch.
    var wallNanoseconds: Double
    var timing: TimingSource
}

/// Times `size`^3 sgemms the way torch_gemm.py times PyTorch's: many back to back (here, one
/// batch of `iterations` identical kernels; each writes C, so the backend puts a barrier
/// between them, as a CUDA stream serialises kernels), after warm-up, median of five batches.
/// The batch length is picked from one timed call so a batch lasts about `seconds` / 5.
func measureGemm(_ backend: VulkanBackend, size: Int, seconds: Double, variant: SGEMMVariant?) throws -> GemmMeasurement {
    let count = size * size
    var ids: [BufferID] = []
    defer { for id in ids { try? backend.destroyBuffer(id) } }
    for _ in 0 ..< 3 {
        let id = try backend.createBuffer(byteCount: count * 4, placement: .deviceLocal)
        ids.append(id)
    }
    // Same data as the kernels cases (and vkdirect).
    let values = (0 ..< count).map { Float($0 % 97) * 0.01 - 0.4 }
    try backend.write(floats: values, to: ids[0])
    try backend.write(floats: values, to: ids[1])
    let kernel = Kernel.sgemm(SGEMMParams(m: size, n: size, k: size, a: BufferRange(ids[0], count: count),
                                          b: BufferRange(ids[1], count: count), c: BufferRange(ids[2], count: count)))
    func timed(_ iterations: Int) throws -> (device: UInt64, wall: UInt64, timing: TimingSource) {
        let batch = CommandBatch([Kernel](repeating: kernel, count: iterations))
        let start = now()
        let completion = try SGEMMVariant.$forced.withValue(variant) { try backend.run(batch) }
        let wall = now() - start
        return (completion.executionNanoseconds ?? wall, wall, completion.timing)
    }
    // Warm-up: pipeline creation, clocks ramping up.
    _ = try timed(1)
    let single = try timed(1)
    let perBatch = seconds / 5
    let iterations = max(1, min(1000, Int(perBatch * 1e9 / Double(max(single.device, 1)))))
    // A single call already longer than a second (a CPU "GPU") is measured once more, not five times.
    let rounds = Double(single.device) * Double(iterations) > 1e9 ? 1 : 5
    _ = try timed(iterations)
    var device: [Double] = []
    var wall: [Double] = []
    var timing = single.timing
    for _ in 0 ..< rounds {
        let r = try timed(iterations)
        device.append(Double(r.device) / Double(iterations))
        wall.append(Double(r.wall) / Double(iterations))
        timing = r.timing
    }
    func middle(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    return GemmMeasurement(iterations: iterations, deviceNanoseconds: middle(device), wallNanoseconds: middle(wall),
                           timing: timing)
}

/// Prints, per size, one line a script can split into key/value pairs after the size:
///   gemm 512 ours_tflops 7.12 ms 0.0377 variant tile64 iterations 1000 wall_tflops 6.95 timing deviceTimestamps
/// (ours_tflops and ms from device time per sgemm, the variant the backend chooses on its own);
/// with --each-variant also one line per sgemm variant forced at that size:
///   gemm-variant 512 tile128 tflops 4.01 ms 0.0669 iterations 1000 wall_tflops 3.9
func gemm(arguments: [String]) {
    var sizes = [512, 2048]
    var seconds = 1.0
    var eachVariant = false
    var index = 0
    while index < arguments.count {
        switch arguments[index] {
        case "--sizes" where index + 1 < arguments.count:
            sizes = arguments[index + 1].split(separator: ",").compactMap { Int($0) }
            index += 2
        case "--seconds" where index + 1 < arguments.count:
            seconds = Double(arguments[index + 1]) ?? seconds
            index += 2
        case "--each-variant":
            eachVariant = true
            index += 1
        default:
            fail("usage: gpu-bench gemm [--sizes 512,2048] [--seconds S] [--each-variant]")
        }
    }
    guard !sizes.isEmpty, sizes.allSatisfy({ $0 > 0 }) else { fail("gemm: --sizes wants positive integers, e.g. 512,2048") }
    let backend = makeVulkan()
    FileHandle.standardError.write(Data("gpu-bench: gemm on \(backend.device.name) (\(backend.device.driverName ?? "?"))\n".utf8))
    // Four significant digits: TFLOP/s span 0.004 (lavapipe) to 50 (H200).
    func significant(_ value: Double) -> String { String(format: "%.4g", value) }
    func tflops(_ size: Int, _ nanoseconds: Double) -> String {
        significant(2 * pow(Double(size), 3) / max(nanoseconds, 1) / 1e3)
    }
    for size in sizes {
        do {
            let chosen = SGEMMVariant.select(m: size, n: size, k: size)
            let m = try measureGemm(backend, size: size, seconds: seconds, variant: nil)
            print("gemm \(size) ours_tflops \(tflops(size, m.deviceNanoseconds)) ms \(significant(m.deviceNanoseconds / 1e6))"
                + " variant \(chosen.rawValue) iterations \(m.iterations) wall_tflops \(tflops(size, m.wallNanoseconds))"
                + " timing \(m.timing.rawValue)")
            if eachVariant {
                for variant in SGEMMVariant.allCases {
                    let v = try measureGemm(backend, size: size, seconds: seconds, variant: variant)
                    print("gemm-variant \(size) \(variant.rawValue) tflops \(tflops(size, v.deviceNanoseconds))"
                        + " ms \(significant(v.deviceNanoseconds / 1e6)) iterations \(v.iterations)"
                        + " wall_tflops \(tflops(size, v.wallNanoseconds))")
                }
            }
            fflush(stdout)
        } catch {
            fail("gemm \(size): \(error)")
        }
    }
}

// MARK: main

struct Report: Codable {
    var device: String
    var driver: String?
    var kernels: [KernelResult]
    var sharing: [SharingResult]
}

/// Reads "NAME WALL DEVICE ..." lines; a name seen in several rounds keeps its best wall time.
func readRounds(_ path: String) -> [String: (wall: UInt64, device: UInt64)] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { fail("cannot read \(path)") }
    var result: [String: (wall: UInt64, device: UInt64)] = [:]
    for line in text.split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count >= 3, let wall = UInt64(fields[1]), let device = UInt64(fields[2]) else { continue }
        let name = String(fields[0])
        if let seen = result[name], seen.wall <= wall { continue }
        result[name] = (wall, device)
    }
    return result
}

func fmt(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }

func run(arguments: [String]) {
    var options: [String: String] = [:]
    var index = 0
    while index + 1 < arguments.count {
        options[arguments[index]] = arguments[index + 1]
        index += 2
    }
    guard let json = options["--json"], let sharesPath = options["--shares"] else {
        fail("usage: gpu-bench run --ours RESULTS --direct RESULTS --json OUT --shares CSV [--seconds S]")
    }
    let seconds = options["--seconds"].flatMap(Double.init) ?? 2.0
    let direct = options["--direct"].map(readRounds) ?? [:]
    let ours = options["--ours"].map(readRounds) ?? [:]
    let backend = makeVulkan()
    let kernels = measureKernels(ours: ours, direct: direct)
    let sharing = measureSharing(backend, seconds: seconds)
    let timeline = shareTimeline(backend)

    var kernelTable = TextTable(header: ["kernel", "unit", "ours", "direct", "ours us", "direct us", "ratio"],
                                rightAligned: [2, 3, 4, 5, 6])
    for k in kernels {
        kernelTable.append([k.name, k.unit, fmt(k.ours), k.direct.map { fmt($0) } ?? "-",
                            fmt(Double(k.oursWallNanoseconds) / 1000, 0),
                            k.directWallNanoseconds.map { fmt(Double($0) / 1000, 0) } ?? "-",
                            k.overheadRatio.map { fmt($0, 3) } ?? "-"])
    }
    var shareTable = TextTable(header: ["policy", "clients", "util", "jain", "max err", "p50 q us", "p99 q us",
                                        "decision ns", "p99 ns", "slices", "overruns"],
                               rightAligned: Set(1 ... 10))
    for s in sharing {
        shareTable.append([s.policy, "\(s.clients)", fmt(s.utilisation, 3), fmt(s.jain, 4), fmt(s.maxShareError, 4),
                           fmt(s.queueingP50Microseconds, 0), fmt(s.queueingP99Microseconds, 0),
                           fmt(s.decisionOverheadMeanNanoseconds, 0), "\(s.decisionOverheadP99Nanoseconds)",
                           "\(s.slices)", "\(s.sliceOverruns)"])
    }
    print("GPUHost benchmark on \(backend.device.name) (\(backend.device.driverName ?? "?"))")
    print("\nKernels: median wall time per batch (submit to completion), best of alternating rounds;")
    print("ratio = ours / direct Vulkan, same SPIR-V and grid (goal <= 1.05)")
    print(kernelTable.render())
    print("\nSharing: sgemm 64^3 x2 batches, closed loop depth 2, \(fmt(seconds, 1)) s per row; decision overhead goal < 5000 ns")
    print(shareTable.render())

    let report = Report(device: backend.device.name, driver: backend.device.driverName, kernels: kernels, sharing: sharing)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    do {
        try encoder.encode(report).write(to: URL(fileURLWithPath: json))
        try timeline.write(toFile: sharesPath, atomically: true, encoding: .utf8)
    } catch {
        fail("cannot write results: \(error)")
    }
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "plan":
    guard arguments.count == 2 else { fail("usage: gpu-bench plan PLAN") }
    writePlan(to: arguments[1])
case "kernels":
    print(kernelRound(makeVulkan()), terminator: "")
case "run":
    run(arguments: Array(arguments.dropFirst()))
case "gemm":
    gemm(arguments: Array(arguments.dropFirst()))
default:
    fail("usage: gpu-bench plan PLAN | kernels | run --ours R --direct R --json OUT --shares CSV [--seconds S]"
        + " | gemm [--sizes 512,2048] [--seconds S] [--each-variant]")
}
