/// How long one scheduler client's next batch will take on the device, learned online from what
/// its batches cost before: the `learned-slice` service's model ("ML for OS"; issue #17).
///
/// Two estimators, both updated at every retirement:
/// - per batch signature (the host's name for a kernel list: a training step, a para-vGPU's
///   decode-cache entry), an exponentially weighted mean of its measured device time; a client
///   repeats a few signatures, so this is exact after the first round;
/// - per client, device nanoseconds per unit of work, the same kind of mean over every batch,
///   which prices a signature seen for the first time.
///
/// A value type with no clock, so tests drive it directly.
struct DurationPredictor {
    /// Weight of a new measurement: a quarter follows a changed workload within a few batches
    /// and smooths one noisy measurement to a quarter of its error.
    static let learningRate = 0.25
    /// Signatures remembered per client; the least recently seen goes first.
    static let capacity = 256

    private struct Entry {
        var nanoseconds: Double
        var lastUse: UInt64
    }

    private var bySignature: [UInt64: Entry] = [:]
    private var nanosecondsPerWork: Double?
    private var clock: UInt64 = 0
    /// How far predictions of known signatures were from what the batches then took: the sum of
    /// |predicted − measured| / measured, and how many went into it.
    private(set) var relativeErrorSum = 0.0
    private(set) var predictionsChecked = 0

    /// Signatures with at least one measurement.
    var knownSignatures: Int { bySignature.count }

    /// The expected device time of a batch, or nil before anything was learned.
    mutating func predict(signature: UInt64, work: Double) -> Double? {
        clock += 1
        if var known = bySignature[signature] {
            known.lastUse = clock
            bySignature[signature] = known
            return known.nanoseconds
        }
        return nanosecondsPerWork.map { $0 * work }
    }

    /// A batch of `work` units with this signature took `nanoseconds` of device time.
    mutating func observe(signature: UInt64, work: Double, nanoseconds: Double) {
        guard nanoseconds.isFinite, nanoseconds >= 0, work.isFinite, work >= 0 else { return }
        clock += 1
        let rate = Self.learningRate
        if work > 0 {
            let perWork = nanoseconds / work
            nanosecondsPerWork = nanosecondsPerWork.map { $0 + rate * (perWork - $0) } ?? perWork
        }
        if var known = bySignature[signature] {
            if nanoseconds > 0 {
                relativeErrorSum += abs(known.nanoseconds - nanoseconds) / nanoseconds
                predictionsChecked += 1
            }
            known.nanoseconds += rate * (nanoseconds - known.nanoseconds)
            known.lastUse = clock
            bySignature[signature] = known
            return
        }
        if bySignature.count >= Self.capacity, let oldest = bySignature.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            bySignature[oldest.key] = nil
        }
        bySignature[signature] = Entry(nanoseconds: nanoseconds, lastUse: clock)
    }
}
