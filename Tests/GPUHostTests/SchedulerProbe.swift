@testable import GPUHost
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Probes that print what the scheduler measures (run with GPUHOST_PROBE=1 when tuning), and
/// check the least those numbers must satisfy.
@Suite("Scheduler probe", .enabled(if: getenv("GPUHOST_PROBE") != nil))
struct SchedulerProbe {
    @Test func batchCost() throws {
        for backend in Backends.all {
            let scheduler = try GPUScheduler(backend: backend)
            defer { scheduler.shutdown() }
            var medians: [Int: UInt64] = [:]
            for size in [32, 48, 64, 96] {
                let client = try BackloggedClient(scheduler, name: "p\(size)", size: size)
                var costs: [UInt64] = []
                for _ in 0 ..< 5 {
                    let r = try scheduler.submit(client.batch, for: client.id).wait()
                    costs.append(try r.get().chargedNanoseconds)
                }
                print("probe \(backend.kind) sgemm \(size): \(costs.map { $0 / 1000 }) us")
                #expect(costs.allSatisfy { $0 > 0 }, "every batch is charged a measured time")
                medians[size] = costs.sorted()[costs.count / 2]
            }
            // 27x the arithmetic must not be charged less: the charge follows the work.
            #expect(medians[96]! >= medians[32]!, "\(backend.kind): sgemm 96 charged \(medians[96]!) ns < sgemm 32 \(medians[32]!) ns")
        }
    }
}

@Suite("Scheduler utilisation probe", .enabled(if: getenv("GPUHOST_PROBE") != nil))
struct SchedulerUtilProbe {
    @Test func utilisation() throws {
        for policy in [SchedulingPolicy.bestEffort, .equalShare, .fixedShare(totalWeight: 2)] {
            let scheduler = try GPUScheduler(backend: CPUBackend(), configuration: SchedulerConfiguration(policy: policy))
            defer { scheduler.shutdown() }
            let a = try BackloggedClient(scheduler, name: "a", size: 32)
            let b = try BackloggedClient(scheduler, name: "b", size: 32)
            try a.start(); try b.start()
            sleepSeconds(0.2)
            scheduler.resetMetrics()
            sleepSeconds(1)
            let m = scheduler.metrics()
            a.stop(); b.stop()
            print("probe \(policy): util \(m.utilisation) decisions \(m.decisions) slices \(m.slices) overhead p50 \(m.decisionOverhead.p50Nanoseconds) batches \(m.clients.map(\.batches)) share \(m.clients.map(\.measuredShare))")
            // Two equal backlogged clients split the device evenly under every policy. (The
            // utilisation printed is the host overhead's measure: batches this small, ~30 µs on
            // the CPU backend, leave the device idle while the scheduler thread hands over.)
            #expect(m.clients.allSatisfy { $0.batches > 0 }, "\(policy): a client never ran")
            #expect(m.clients.allSatisfy { abs($0.measuredShare - 0.5) < 0.05 }, "\(policy): shares \(m.clients.map(\.measuredShare))")
        }
    }
}
