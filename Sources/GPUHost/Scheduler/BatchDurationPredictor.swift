/// How long a client's next batch will take on the device, learned online from what its
/// batches cost before: the `learned-slice` policy's model ("ML for OS"; issue #17).
///
/// Two estimators, both updated at every retirement:
/// - per batch signature (the validated kernel list: a training step, a para-vGPU's decode-cache
///   entry), an exponentially weighted mean of its measured device time; a client repeats a few
///   signatures, so this is exact after the first round;
/// - per client, device nanoseconds per unit of work (`ValidatedBatch.kernelWork`), the same
///   kind of mean over every batch, which prices a signature seen for the first time.
///
/// A value type under the scheduler's monitor; reads no clock, so tests drive it directly.
struct BatchDurationPredictor {
    /// Weight of a new measurement: a quarter follows a changed workload within a few batches
    /// and smooths one noisy measurement to a quarter of its error.
    static let learningRate = 0.25
    /// Signatures remembered; the least recently seen goes first.
    static let capacity = 256

    private struct Entry {
        var nanoseconds: Double
        var lastUse: UInt64
        var observations: Int
    }

    private var bySignature: [ObjectIdentifier: (identity: KernelListIdentity, entry: Entry)] = [:]
    private var nanosecondsPerWork: Double?
    private var clock: UInt64 = 0

    /// Signatures with at least one measurement.
    var knownSignatures: Int { bySignature.count }

    /// The expected device time of a batch, or nil before anything was learned.
    mutating func predict(_ signature: KernelListIdentity, work: Double) -> Double? {
        clock += 1
        let key = ObjectIdentifier(signature)
        if var known = bySignature[key], known.identity === signature {
            known.entry.lastUse = clock
            bySignature[key] = known
            return known.entry.nanoseconds
        }
        return nanosecondsPerWork.map { $0 * work }
    }

    /// A batch of `work` units with this signature took `nanoseconds` of device time.
    mutating func observe(_ signature: KernelListIdentity, work: Double, nanoseconds: Double) {
        clock += 1
        let rate = Self.learningRate
        if work > 0 {
            let perWork = nanoseconds / work
            nanosecondsPerWork = nanosecondsPerWork.map { $0 + rate * (perWork - $0) } ?? perWork
        }
        let key = ObjectIdentifier(signature)
        if var known = bySignature[key], known.identity === signature {
            known.entry.nanoseconds += rate * (nanoseconds - known.entry.nanoseconds)
            known.entry.lastUse = clock
            known.entry.observations += 1
            bySignature[key] = known
            return
        }
        if bySignature.count >= Self.capacity, let oldest = bySignature.min(by: { $0.value.entry.lastUse < $1.value.entry.lastUse }) {
            bySignature[oldest.key] = nil
        }
        // The identity is held, so its address cannot be reused by another list while the entry stands.
        bySignature[key] = (signature, Entry(nanoseconds: nanoseconds, lastUse: clock, observations: 1))
    }
}
