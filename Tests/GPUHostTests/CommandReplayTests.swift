@testable import GPUHost
import Logging
import Testing

/// A validated batch submitted again replays the command buffer recorded for it (issue #18:
/// recording is most of a real driver's host time per training step). Replaying must never
/// run stale commands: each submission's own host data goes in and comes out, and anything a
/// recording depends on — a destroyed buffer, another transfer layout, other kernels — makes
/// the backend record again.
@Suite("Command buffer replay", .enabled(if: Backends.hasVulkan))
struct CommandReplayTests {
    /// y = 2x + y over 64 floats, x and y uploaded from the host and y downloaded, on buffers
    /// of its own backend (so slot counts are this test's alone).
    final class AxpyJob {
        static let count = 64
        let backend: VulkanBackend
        let x: BufferID
        let y: BufferID
        let hostX = HostArea(count: count * 4)
        let hostY = HostArea(count: count * 4)

        init(staging: VulkanBackendOptions.Staging) throws {
            backend = try VulkanBackend(options: VulkanBackendOptions(staging: staging), logger: Logger(label: "replay.tests"))
            x = try backend.createBuffer(byteCount: Self.count * 4, placement: .deviceLocal)
            y = try backend.createBuffer(byteCount: Self.count * 4 + 64, placement: .deviceLocal)
        }

        /// The batch, with y at `yOffset` floats into its buffer.
        func validated(alpha: Float = 2, yOffset: Int = 0) throws -> ValidatedBatch {
            let batch = CommandBatch(
                [.axpy(AxpyParams(count: Self.count, alpha: alpha, x: BufferRange(x, count: Self.count),
                                  y: BufferRange(y, offset: yOffset, count: Self.count)))],
                uploads: [HostTransfer(buffer: x, byteOffset: 0, host: hostX.bytes),
                          HostTransfer(buffer: y, byteOffset: yOffset * 4, host: hostY.bytes)],
                downloads: [HostTransfer(buffer: y, byteOffset: yOffset * 4, host: hostY.bytes)])
            return try ValidatedBatch(batch, capacity: { backend.capacity(of: $0) })
        }

        /// Fills the host sides for `round`, runs `batch` and checks y came back as 2x + y
        /// (alpha x + y); returns whether the backend replayed a recording.
        func run(_ batch: ValidatedBatch, round: Int, alpha: Float = 2) throws -> Bool {
            for i in 0 ..< Self.count {
                hostX.bytes.storeBytes(of: Float(i + round), toByteOffset: i * 4, as: Float.self)
                hostY.bytes.storeBytes(of: Float(100 * round), toByteOffset: i * 4, as: Float.self)
            }
            let completion = try backend.wait(try backend.submit(batch), timeoutNanoseconds: .max)
            let got = (0 ..< Self.count).map { hostY.bytes.load(fromByteOffset: $0 * 4, as: Float.self) }
            #expect(got == (0 ..< Self.count).map { alpha * Float($0 + round) + Float(100 * round) }, "round \(round)")
            return completion.replayedRecording
        }
    }

    @Test("a repeated batch replays its recording with each submission's own data", arguments: VulkanBackendOptions.Staging.allCases)
    func repeatedBatchReplays(staging: VulkanBackendOptions.Staging) throws {
        let job = try AxpyJob(staging: staging)
        let batch = try job.validated()
        let replayed = try (0 ..< 6).map { try job.run(batch, round: $0) }
        #expect(replayed == [false, true, true, true, true, true])
        // A replay skips re-checking the kernels, never the transfers: one past its buffer is refused.
        var overrun = batch
        overrun.uploads = [HostTransfer(buffer: job.x, byteOffset: 8, host: job.hostX.bytes)]
        #expect(throws: GPUError.self) { try job.backend.submit(overrun) }
        #expect(try job.run(batch, round: 6) == true)
    }

    @Test("batches that alternate each keep a recording", arguments: VulkanBackendOptions.Staging.allCases)
    func alternatingBatchesReplay(staging: VulkanBackendOptions.Staging) throws {
        let job = try AxpyJob(staging: staging)
        let (double, triple) = (try job.validated(alpha: 2), try job.validated(alpha: 3))
        var replayed: [Bool] = []
        for round in 0 ..< 5 {
            replayed.append(try job.run(double, round: round, alpha: 2))
            replayed.append(try job.run(triple, round: round, alpha: 3))
        }
        // Each is recorded once it shows it repeats (its second submission), then replayed.
        #expect(replayed.dropFirst(4).allSatisfy { $0 }, "\(replayed)")
    }

    @Test("a destroyed buffer, another layout or a new validation records again", arguments: VulkanBackendOptions.Staging.allCases)
    func changesRecordAgain(staging: VulkanBackendOptions.Staging) throws {
        let job = try AxpyJob(staging: staging)
        let batch = try job.validated()
        #expect(try job.run(batch, round: 0) == false)
        #expect(try job.run(batch, round: 1) == true)
        // Any destroyed buffer may have been one the recording names.
        try job.backend.destroyBuffer(try job.backend.createBuffer(byteCount: 16, placement: .deviceLocal))
        #expect(try job.run(batch, round: 2) == false)
        #expect(try job.run(batch, round: 3) == true)
        // The same kernels validated again are a new kernel list.
        let again = try job.validated()
        #expect(try job.run(again, round: 4) == false)
        // Same kernels, the transfers moved (y elsewhere in its buffer): other copy regions.
        let moved = try job.validated(yOffset: 16)
        #expect(try job.run(moved, round: 5) == false)
        #expect(try job.run(moved, round: 6) == true)
    }

    @Test("batches that never repeat share one slot and its staging")
    func oneOffBatchesShareASlot() throws {
        let job = try AxpyJob(staging: .always)
        for round in 0 ..< 12 {
            #expect(try job.run(try job.validated(), round: round) == false)
        }
        #expect(job.backend.stagingAllocationCount == 1)
    }
}
