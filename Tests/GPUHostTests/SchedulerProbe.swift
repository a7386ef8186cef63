@testable import GPUHost
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Scheduler probe", .enabled(if: getenv("GPUHOST_PROBE") != nil))
struct SchedulerProbe {
    @Test func batchCost() throws {
        for backend in Backends.all {
            let scheduler = try GPUScheduler(backend: backend)
            defer { scheduler.shutdown() }
            for size in [32, 48, 64, 96] {
                let client = try BackloggedClient(scheduler, name: "p\(size)", size: size)
                var costs: [UInt64] = []
                for _ in 0 ..< 5 {
                    let r = try scheduler.submit(client.batch, for: client.id).wait()
                    costs.append(try r.get().chargedNanoseconds)
                }
                print("probe \(backend.kind) sgemm \(size): \(costs.map { $0 / 1000 }) us")
            }
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
        }
    }
}
