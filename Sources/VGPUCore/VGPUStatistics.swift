/// What one para-vGPU has done since it was created: the host-side cost of each submission
/// split into its parts, so a slow job can be traced to the guest, the device or the GPU.
/// Times are nanoseconds on CLOCK_MONOTONIC, summed over submissions.
public struct VGPUStatistics: Hashable, Sendable, Codable {
    /// SUBMIT_3Ds accepted and run to completion (successfully or not).
    public var submissions: UInt64 = 0
    /// SUBMIT_3Ds refused before anything ran (bad stream, foreign resource, over a limit).
    public var refusedSubmissions: UInt64 = 0
    public var commands: UInt64 = 0
    public var streamBytes: UInt64 = 0
    /// Decoding, resolving and validating streams, on the device thread.
    public var decodeNanoseconds: UInt64 = 0
    /// Submissions whose stream the context had sent before in the same resource table:
    /// decoded and validated once, then taken from its `DecodedStreamCache`.
    public var decodeCacheHits: UInt64 = 0
    /// The host's part of moving the GUEST-blob ranges kernels read from guest pages to their
    /// GPU shadows: the copy into the batch's staging memory (or straight into a mapped
    /// buffer). The device's copy out of staging is part of the batch, so of `gpuNanoseconds`.
    public var uploadNanoseconds: UInt64 = 0
    public var uploadBytes: UInt64 = 0
    /// The host's part of bringing the ranges kernels wrote back into guest pages (the copy
    /// out of staging once the batch has run).
    public var downloadNanoseconds: UInt64 = 0
    public var downloadBytes: UInt64 = 0
    /// Waiting in the scheduler's queue for a turn on the GPU.
    public var queueingNanoseconds: UInt64 = 0
    /// GPU time charged by the scheduler.
    public var gpuNanoseconds: UInt64 = 0
    /// Handing batches to the device once the scheduler gave them their turn: lowering,
    /// recording (or finding a recording to replay) and the queue submission.
    public var submitNanoseconds: UInt64 = 0
    /// Submissions that replayed the command buffer recorded for an earlier one with the same
    /// decoded kernels instead of recording anew.
    public var replayedRecordings: UInt64 = 0
    /// Of `uploadBytes` and `downloadBytes`, those the GPU copied straight out of or into guest
    /// RAM (imported as device memory): no host copy, no staging; their time is GPU time.
    public var zeroCopyBytes: UInt64 = 0
    /// From the doorbell's chain being taken off the queue to the response being published.
    public var endToEndNanoseconds: UInt64 = 0
    /// Contexts alive now and GPU memory they hold.
    public var contexts: Int = 0
    public var memoryInUseBytes: Int = 0

    public init() {}

    /// Host time per submission outside the GPU itself (decode, copies, queueing and
    /// thread hand-offs): what the para-virtual path adds to each batch.
    public var overheadNanosecondsPerSubmission: Double? {
        guard submissions > 0 else { return nil }
        let gpu = min(gpuNanoseconds, endToEndNanoseconds)
        return Double(endToEndNanoseconds - gpu) / Double(submissions)
    }
}

extension VGPUStatistics {
    public mutating func add(_ other: VGPUStatistics) {
        submissions += other.submissions
        refusedSubmissions += other.refusedSubmissions
        commands += other.commands
        streamBytes += other.streamBytes
        decodeNanoseconds += other.decodeNanoseconds
        decodeCacheHits += other.decodeCacheHits
        uploadNanoseconds += other.uploadNanoseconds
        uploadBytes += other.uploadBytes
        downloadNanoseconds += other.downloadNanoseconds
        downloadBytes += other.downloadBytes
        queueingNanoseconds += other.queueingNanoseconds
        gpuNanoseconds += other.gpuNanoseconds
        submitNanoseconds += other.submitNanoseconds
        replayedRecordings += other.replayedRecordings
        zeroCopyBytes += other.zeroCopyBytes
        endToEndNanoseconds += other.endToEndNanoseconds
    }
}
