import Foundation
import GPUHost
import Platform
import Synchronization

/// The scheduler with 1, 2, 4 and 8 closed-loop clients under each policy (sharing table), and
/// clients coming and going (the share-over-time plot).
public enum SharingBenchmark {
    public static let policies = ["best-effort", "equal-share", "fixed-share"]

    /// Weights 1, 1, 2, 4, repeating: fixed share gets unequal entitlements to enforce.
    static func weights(_ count: Int) -> [Double] {
        (0 ..< count).map { [1.0, 1, 2, 4][$0 % 4] }
    }

    static func policy(_ name: String, weights: [Double]) -> SchedulingPolicy {
        switch name {
        case "best-effort": return .bestEffort
        case "equal-share": return .equalShare
        default: return .fixedShare(totalWeight: weights.reduce(0, +))
        }
    }

    /// Every policy with 1, 2, 4 and 8 clients, `seconds` measured per row after 0.3 s of warm-up.
    public static func table(on backend: any ComputeBackend, seconds: Double,
                             progress: (String) -> Void = { _ in }) throws(GPUBenchmarkError) -> [SharingResult] {
        var results: [SharingResult] = []
        for policyName in policies {
            for count in [1, 2, 4, 8] {
                do {
                    let w = weights(count)
                    let scheduler = try GPUScheduler(backend: backend,
                                                     configuration: SchedulerConfiguration(policy: policy(policyName, weights: w)))
                    defer { scheduler.stop() }
                    let clients = try w.enumerated().map { try LoadClient(scheduler, name: "vm\($0.offset)", weight: $0.element) }
                    for client in clients { client.start() }
                    Thread.sleep(forTimeInterval: 0.3)
                    scheduler.resetMetrics()
                    Thread.sleep(forTimeInterval: seconds)
                    let m = scheduler.metrics()
                    for client in clients { client.stop() }
                    for client in clients { try scheduler.drain(client.id) }
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
                    progress("\(policyName) x\(count) done")
                } catch {
                    throw GPUBenchmarkError("sharing \(policyName) x\(count): \(error)")
                }
            }
        }
        return results
    }

    /// Come and go: vm0-vm2 from the start, vm3 joins after 10 ticks, vm0 goes idle after 20,
    /// end after 30; every tick (100 ms of sleep) each client's share of device time in that
    /// interval, as CSV (policy,t,client,weight,share). Event rows ("event:...") carry the
    /// measured instants for the plot.
    public static func timeline(on backend: any ComputeBackend) throws(GPUBenchmarkError) -> String {
        var csv = "policy,t,client,weight,share\n"
        func seconds(_ t: UInt64) -> String { String(format: "%.2f", Double(t) / 1e9) }
        for policyName in policies {
            do {
                let w = weights(4)
                let scheduler = try GPUScheduler(backend: backend,
                                                 configuration: SchedulerConfiguration(policy: policy(policyName, weights: w)))
                defer { scheduler.stop() }
                var clients = try (0 ..< 3).map { try LoadClient(scheduler, name: "vm\($0)", weight: w[$0]) }
                for client in clients { client.start() }
                var last = [ClientID: UInt64]()
                var lastTime = monotonicNanoseconds()
                let start = lastTime
                for tick in 1 ... 30 {
                    Thread.sleep(forTimeInterval: 0.1)
                    if tick == 10 {
                        let joined = try LoadClient(scheduler, name: "vm3", weight: w[3])
                        joined.start()
                        clients.append(joined)
                        csv += "\(policyName),\(seconds(monotonicNanoseconds() - start)),event:vm3 joins,0,0\n"
                    }
                    if tick == 20 {
                        clients[0].stop()
                        csv += "\(policyName),\(seconds(monotonicNanoseconds() - start)),event:vm0 idles,0,0\n"
                    }
                    let m = scheduler.metrics()
                    let t = monotonicNanoseconds()
                    for (index, client) in clients.enumerated() {
                        guard let metrics = m.client(client.id) else { continue }
                        let delta = metrics.chargedNanoseconds - min(last[client.id] ?? 0, metrics.chargedNanoseconds)
                        last[client.id] = metrics.chargedNanoseconds
                        let share = Double(delta) / Double(max(t - lastTime, 1))
                        csv += "\(policyName),\(seconds(t - start)),vm\(index),\(w[index]),\(String(format: "%.4f", share))\n"
                    }
                    lastTime = t
                }
                for client in clients { client.stop() }
                for client in clients { try scheduler.drain(client.id) }
            } catch {
                throw GPUBenchmarkError("timeline \(policyName): \(error)")
            }
        }
        return csv
    }
}

/// A closed-loop client: keeps `depth` batches of small sgemms queued, resubmitting from the
/// completion callback, until stopped.
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

public struct SharingResult: Codable, Sendable {
    public var policy: String
    public var clients: Int
    public var utilisation: Double
    public var jain: Double
    public var maxShareError: Double
    public var shares: [Double]
    public var targets: [Double]
    public var queueingP50Microseconds: Double
    public var queueingP99Microseconds: Double
    public var queueingMaxMicroseconds: Double
    public var decisionOverheadMeanNanoseconds: Double
    public var decisionOverheadP99Nanoseconds: UInt64
    public var decisions: UInt64
    public var slices: UInt64
    public var sliceOverruns: UInt64
    public var timeSliceMicroseconds: Double
}
