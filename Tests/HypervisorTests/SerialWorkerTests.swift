import Dispatch
import Glibc
import Platform
import Testing

/// `SerialWorker` runs jobs in order on its thread and keeps nothing of a job once it has run:
/// a job's closure holds what it works on, and a vGPU context that holds its worker would
/// otherwise never be freed (gpud kept every served VM's guest memory mapped that way).
@Suite struct SerialWorkerTests {
    final class Payload: Sendable {}

    @Test func aJobThatRanIsReleasedAtOnce() throws {
        let worker = try SerialWorker(name: "test-worker")
        defer { worker.stop(wait: true) }
        weak var released: Payload?
        let ran = DispatchSemaphore(value: 0)
        do {
            let payload = Payload()
            released = payload
            worker.enqueue {
                _ = payload
                ran.signal()
            }
        }
        ran.wait()
        // The worker drops the job before running it; give its thread the moment to leave the
        // closure after the signal.
        let deadline = DispatchTime.now() + .seconds(5)
        while released != nil && DispatchTime.now() < deadline { usleep(1_000) }
        #expect(released == nil, "the worker still holds a job it ran")
    }

    @Test func jobsRunInOrderAndStopLetsQueuedOnesFinish() throws {
        let worker = try SerialWorker(name: "test-worker")
        let order = LockedOrder()
        for index in 0 ..< 200 { worker.enqueue { order.append(index) } }
        worker.stop(wait: true)
        #expect(order.values == Array(0 ..< 200))
        #expect(!worker.enqueue {}, "a stopped worker accepted a job")
    }

    final class LockedOrder: @unchecked Sendable {
        private let lock = DispatchSemaphore(value: 1)
        private var stored: [Int] = []
        func append(_ value: Int) { lock.wait(); stored.append(value); lock.signal() }
        var values: [Int] { lock.wait(); defer { lock.signal() }; return stored }
    }
}
