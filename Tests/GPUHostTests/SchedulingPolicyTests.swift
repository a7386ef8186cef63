@testable import GPUHost
import Testing

/// Drives a `SliceScheduler` the way the scheduler's two threads do, one batch on the device
/// at a time, on a clock that moves only when told: a batch "runs" by advancing the clock by
/// its cost, and that cost is what it is charged. No device, no threads, so every number
/// below is exact and every run the same.
final class PolicyBench {
    var policy: SliceScheduler
    var now: UInt64 = 1_000_000_000
    /// Each client's queued batches, as their costs in ns.
    private var queues: [ClientID: [UInt64]] = [:]
    /// Clients whose next batch waits for their own batches to retire (a transfer batch).
    var blocked: Set<ClientID> = []
    private var nextID: UInt32 = 1
    private(set) var finished: [SliceScheduler.Slice] = []
    /// The client of every slice opened, in order.
    private(set) var picks: [ClientID] = []
    private(set) var charged: [ClientID: UInt64] = [:]
    private(set) var decisions: [SliceScheduler.Decision] = []
    /// Clients whose submitted batches are cut into this many equal pieces (as a batch-duration
    /// model has the scheduler do); the policy hears of a submission once its last piece retires.
    var piecesPerSubmission: [ClientID: Int] = [:]
    private var piecesRetired: [ClientID: Int] = [:]

    init(_ policy: SchedulingPolicy, timeSlice: UInt64? = nil, averagingFactor: Int = 33) {
        self.policy = SliceScheduler(configuration: SchedulerConfiguration(
            policy: policy, timeSliceNanoseconds: timeSlice, averagingFactor: averagingFactor), now: now)
    }

    func demand(_ id: ClientID) -> SliceScheduler.Demand {
        guard queues[id]?.isEmpty == false else { return .idle }
        return blocked.contains(id) ? .blocked : .ready
    }

    func add(weight: Double = 1) -> ClientID {
        let id = ClientID(rawValue: nextID)
        nextID += 1
        policy.attach(id, weight: weight, at: now) { self.demand($0) }
        return id
    }

    func submit(_ id: ClientID, cost: UInt64, count: Int = 1) {
        policy.workQueued(for: id, at: now) { self.demand($0) }
        queues[id, default: []] += [UInt64](repeating: cost, count: count)
    }

    func detach(_ id: ClientID) {
        policy.detach(id, at: now) { self.finished.append($0) }
    }

    /// One batch to the device and back; false when the policy let nobody run.
    @discardableResult
    func step() -> Bool {
        if !policy.mayContinueSlice(at: now, demand: { self.demand($0) }) {
            policy.closeCurrentSlice(at: now, demand: { self.demand($0) }, finished: { self.finished.append($0) })
            let decision = policy.decide(at: now) { self.demand($0) }
            decisions.append(decision)
            guard let client = decision.client else { return false }
            policy.openSlice(for: client, at: now)
            picks.append(client)
        }
        guard let client = policy.current?.client, let cost = queues[client]?.first,
              let dispatch = policy.dispatch() else { return false }
        queues[client]?.removeFirst()
        now += cost
        policy.retire(dispatch, charged: cost) { self.finished.append($0) }
        charged[client, default: 0] += cost
        if let pieces = piecesPerSubmission[client] {
            let done = (piecesRetired[client, default: 0] + 1) % pieces
            piecesRetired[client] = done
            if done == 0 { policy.submissionRetired(client, charged: cost * UInt64(pieces)) }
        } else {
            policy.submissionRetired(client, charged: cost)
        }
        return true
    }

    /// Runs until `deadline`, sleeping to `wakeAt` as the dispatching thread does when every
    /// client with work is over its share.
    func run(until deadline: UInt64) {
        while now < deadline {
            if step() { continue }
            guard let wake = policy.wakeAt else { now = deadline; return }
            now = min(max(wake, now + 1), deadline)
        }
    }

    func run(for nanoseconds: UInt64) { run(until: now + nanoseconds) }

    func share(_ id: ClientID) -> Double {
        let total = charged.values.reduce(0, +)
        return total == 0 ? 0 : Double(charged[id, default: 0]) / Double(total)
    }
}

private let ms: UInt64 = 1_000_000

@Suite("Scheduling policy on a fake clock")
struct SchedulingPolicyTests {
    @Test("best effort: round robin over the clients with work, skipping the idle and the blocked")
    func bestEffortRoundRobin() {
        let bench = PolicyBench(.bestEffort)
        let a = bench.add(), b = bench.add(), c = bench.add(), d = bench.add()
        // One-batch slices: a batch of a whole time slice fills one.
        for id in [a, b, d] { bench.submit(id, cost: 2 * ms, count: 3) }
        for _ in 0 ..< 6 { bench.step() }
        #expect(bench.picks == [a, b, d, a, b, d], "c has no work")
        // b waits for its own transfer batch: it loses its turn, but it had work, so the
        // decisions still count.
        bench.blocked = [b]
        bench.submit(c, cost: 2 * ms, count: 2)
        for _ in 0 ..< 3 { bench.step() }
        #expect(bench.picks.suffix(3) == [a, c, d])
        #expect(bench.decisions.allSatisfy { $0.anyWork })
        #expect(bench.policy.wakeAt == nil)
    }

    @Test("equal share splits device time equally, whatever the weights and batch sizes")
    func equalShareSplitsEqually() {
        let bench = PolicyBench(.equalShare)
        // Weights mean nothing here; batch sizes differ by 7:3.
        let a = bench.add(weight: 3), b = bench.add(weight: 1)
        bench.submit(a, cost: 700_000, count: 10_000)
        bench.submit(b, cost: 300_000, count: 10_000)
        bench.run(for: 1_000 * ms)
        #expect(bench.policy.account(a)?.entitledShare == 0.5)
        #expect(abs(bench.share(a) - 0.5) < 0.01, "a got \(bench.share(a))")
        #expect(abs(bench.share(b) - 0.5) < 0.01, "b got \(bench.share(b))")
    }

    @Test("fixed share: weights 3 and 1 get 3:1 of the charged time")
    func fixedShareWeights() {
        let bench = PolicyBench(.fixedShare(totalWeight: 4))
        let a = bench.add(weight: 3), b = bench.add(weight: 1)
        bench.submit(a, cost: 250_000, count: 10_000)
        bench.submit(b, cost: 250_000, count: 10_000)
        bench.run(for: 1_000 * ms)
        #expect(bench.policy.account(a)?.entitledShare == 0.75)
        #expect(bench.policy.account(b)?.entitledShare == 0.25)
        #expect(abs(bench.share(a) - 0.75) < 0.01, "a got \(bench.share(a))")
        let ratio = Double(bench.charged[a, default: 0]) / Double(bench.charged[b, default: 1])
        #expect(abs(ratio - 3) < 0.1, "a:b = \(ratio)")
    }

    @Test("an idle client banks no more than its bucket: two slices")
    func idleShareIsNotBanked() {
        let bench = PolicyBench(.fixedShare(totalWeight: 2))
        let a = bench.add()
        // A second of idling is worth 500 ms of a's share; the bucket keeps 2 slices of it.
        bench.run(for: 1_000 * ms)
        bench.submit(a, cost: ms / 2, count: 1_000)
        bench.run(for: 100 * ms)
        let slice = bench.policy.timeSlice
        let used = bench.charged[a, default: 0]
        // 100 ms at a share of 1/2, the bucket's two slices, and the one batch that may
        // start with tokens left.
        #expect(used <= 50 * ms + 2 * slice + ms / 2, "a ran \(used) ns in 100 ms")
        #expect(used >= 50 * ms, "a ran \(used) ns in 100 ms")
    }

    @Test("a client whose batches are cut into pieces banks two whole batches, not two pieces")
    func aCutBatchIsBankedWhole() {
        let bench = PolicyBench(.equalShare)
        let a = bench.add(), b = bench.add()
        let slice = bench.policy.timeSlice
        // a's 24 ms batches go to the device in eight pieces of 3 ms.
        bench.piecesPerSubmission[a] = 8
        bench.submit(a, cost: 3 * ms, count: 8 * 4)
        bench.submit(b, cost: ms / 2, count: 100)
        bench.run(for: 400 * ms)
        #expect(bench.charged[a] == 96 * ms)
        #expect(bench.policy.account(a)?.submissionEstimate == Double(24 * ms))
        #expect(bench.policy.account(a)?.batchEstimate == Double(3 * ms))
        // A pause (the host delaying a's next batch) refills a's bucket up to two whole batches:
        // more than the two slices or two pieces it would otherwise stop at.
        bench.run(for: 1_000 * ms)
        bench.policy.refill(bench.now)
        let tokens = bench.policy.account(a)?.tokens ?? 0
        #expect(tokens == Double(48 * ms), "a banked \(tokens) ns; a slice is \(slice) ns")
    }

    @Test("an overrun shortens the next slices, 1/averagingFactor of the debt each, by at most 3/4",
          arguments: [(8, [2, 1, 1, 1, 1, 1, 1, 1, 1, 2].map { $0 * ms }),
                      (2, [2 * ms, ms / 2, ms / 2, ms / 2, ms / 2, ms / 2, 3 * ms / 2, 2 * ms])])
    func overrunDebt(averagingFactor: Int, targets: [UInt64]) {
        let bench = PolicyBench(.bestEffort, timeSlice: 2 * ms, averagingFactor: averagingFactor)
        let a = bench.add()
        // One batch overruns its 2 ms slice by 8 ms; light batches then fill the slices exactly.
        bench.submit(a, cost: 10 * ms)
        bench.submit(a, cost: ms / 10, count: 1_000)
        for _ in 0 ..< 200 where bench.finished.count < targets.count { bench.step() }
        #expect(bench.finished.map(\.target) == targets)
        #expect(bench.finished.first?.overrun == 8 * ms)
        #expect(bench.finished.dropFirst().allSatisfy { $0.overrun == nil })
        #expect(bench.policy.account(a)?.debt == 0)
    }

    @Test("when every client with work is out of tokens, wakeAt is when the first may run again")
    func wakeAtWhenAllWait() throws {
        let bench = PolicyBench(.equalShare)
        // c never has work: its third of the device stays idle, so a and b run dry.
        let a = bench.add(), b = bench.add(), c = bench.add()
        for id in [a, b] { bench.submit(id, cost: 10 * ms, count: 2) }
        // Each 10 ms batch overdraws its client's 2 ms of tokens; while one still has
        // tokens, it runs and nobody sleeps.
        for _ in 0 ..< 2 {
            #expect(bench.step())
            #expect(bench.policy.wakeAt == nil)
        }
        #expect(bench.picks == [a, b])
        #expect(!bench.step())
        #expect(bench.decisions.last?.anyWork == true)
        let wake = try #require(bench.policy.wakeAt)
        #expect(wake > bench.now)
        #expect(try #require(bench.policy.account(c)).tokens > 0, "an idle client's tokens do not count")
        // Just before, still nobody; at it, the first client whose bucket has refilled.
        #expect(bench.policy.decide(at: wake - 2_000) { bench.demand($0) }.client == nil)
        #expect(bench.policy.decide(at: wake) { bench.demand($0) }.client == a)
    }

    @Test("a removed client is never picked again", arguments: [SchedulingPolicy.bestEffort, .equalShare])
    func removedClientIsNeverPicked(policy: SchedulingPolicy) {
        let bench = PolicyBench(policy)
        let a = bench.add(), b = bench.add(), c = bench.add()
        for id in [a, b, c] { bench.submit(id, cost: ms / 2, count: 1_000) }
        for _ in 0 ..< 100 where bench.policy.current?.client != b { bench.step() }
        #expect(bench.policy.current?.client == b)
        let picked = bench.picks.count
        // Still with work queued, mid-slice: the policy alone must keep it off the device.
        bench.detach(b)
        #expect(bench.policy.current == nil)
        #expect(bench.finished.last?.client == b)
        bench.run(for: 50 * ms)
        bench.policy.forget(b)
        bench.run(for: 50 * ms)
        #expect(bench.picks.count > picked + 10)
        #expect(!bench.picks[picked...].contains(b))
        #expect(bench.policy.account(a)?.entitledShare == 0.5)
        #expect(bench.policy.clientIDs == [a, c])
    }
}
