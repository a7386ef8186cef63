import Histogram
import Platform

extension GPUScheduler {
    static func makeHistogram() -> Histogram<UInt64> {
        // 1 ns .. 1 h at 3 significant digits; autoResize keeps a freak value from being lost.
        var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
        histogram.autoResize = true
        return histogram
    }

    /// Starts a new measurement window: counters, histograms and the slice log restart.
    public func resetMetrics() {
        monitor.withLock {
            windowStart = monotonicNanoseconds()
            busy = 0
            decisions = 0
            decisionOverhead.reset()
            queueing.reset()
            slices = 0
            overruns = 0
            cancelled = 0
            heldBack = 0
            dispatchBusy = 0
            retireBusy = 0
            sliceLog.removeAll()
            for state in clients.values { state.resetWindow() }
        }
    }

    public func metrics() -> SchedulerMetrics {
        monitor.withLock {
            let now = monotonicNanoseconds()
            let window = max(now - windowStart, 1)
            let states = attached
            let totalCharged = states.reduce(UInt64(0)) { $0 + $1.charged }
            let demanding = states.filter { $0.demanded || $0.charged > 0 }
            let weightOf: (ClientState) -> Double = { [configuration] state in
                if case .fixedShare = configuration.policy { return state.configuration.weight }
                return 1
            }
            let demandWeight = demanding.reduce(0) { $0 + weightOf($1) }
            var ratios: [Double] = []
            var maxError = 0.0
            let clientMetrics = states.map { state -> ClientMetrics in
                let account = policy.account(state.id)
                let measured = totalCharged > 0 ? Double(state.charged) / Double(totalCharged) : 0
                let asked = state.demanded || state.charged > 0
                let target = asked && demandWeight > 0 ? weightOf(state) / demandWeight : 0
                var error: Double?
                if asked, totalCharged > 0 {
                    error = measured - target
                    maxError = max(maxError, abs(measured - target))
                    if target > 0 { ratios.append(measured / target) }
                }
                return ClientMetrics(
                    id: state.id, name: state.configuration.name, owner: state.configuration.owner,
                    weight: state.configuration.weight, entitledShare: account?.entitledShare ?? 0, chargedNanoseconds: state.charged, measuredShare: measured,
                    targetShare: target, shareError: error, deviceShare: Double(state.charged) / Double(window),
                    batches: state.batches, failedBatches: state.failed, slices: state.slices,
                    sliceOverruns: state.overruns, overrunNanoseconds: state.overrunNanoseconds,
                    outstandingDebtNanoseconds: UInt64(max(0, account?.debt ?? 0)),
                    cumulativePreemptionNanoseconds: account?.cumulativePreemption ?? 0,
                    queueing: Self.summary(state.latency), queuedBatches: state.queuedSubmissions,
                    memoryInUseBytes: state.memoryInUse, memoryQuotaBytes: state.configuration.memoryQuotaBytes,
                    learnedSlice: batchModel(of: state) != nil, batchesCut: state.batchesCut, piecesMade: state.piecesMade)
            }
            return SchedulerMetrics(
                policy: configuration.policy, timeSliceNanoseconds: policy.timeSlice, windowNanoseconds: window,
                busyNanoseconds: busy, utilisation: Double(busy) / Double(window), clients: clientMetrics,
                jainIndex: SchedulerMetrics.jain(ratios), maxAbsoluteShareError: maxError,
                queueing: Self.summary(queueing), decisions: decisions,
                decisionOverhead: Self.summary(decisionOverhead), slices: slices, sliceOverruns: overruns,
                cancelledBatches: cancelled, heldBackNanoseconds: heldBack, dispatchNanoseconds: dispatchBusy,
                retireNanoseconds: retireBusy, sliceLog: sliceLog.elements,
                removals: removals.elements)
        }
    }

    static func summary(_ histogram: Histogram<UInt64>) -> LatencySummary {
        guard histogram.totalCount > 0 else {
            return LatencySummary(count: 0, p50Nanoseconds: 0, p99Nanoseconds: 0, maxNanoseconds: 0, meanNanoseconds: 0)
        }
        return LatencySummary(count: histogram.totalCount, p50Nanoseconds: histogram.valueAtPercentile(50),
                              p99Nanoseconds: histogram.valueAtPercentile(99), maxNanoseconds: histogram.max,
                              meanNanoseconds: histogram.mean)
    }

    /// Call locked. A slice whose batches have all retired goes into the counters and the log.
    func record(_ slice: SliceScheduler.Slice) {
        slices += 1
        if let state = clients[slice.client] {
            state.slices += 1
            if let overrun = slice.overrun {
                overruns += 1
                state.overruns += 1
                state.overrunNanoseconds += overrun
            }
        }
        sliceLog.append(SliceLogEntry(
            client: slice.client, startNanoseconds: slice.startedAt - epoch, runNanoseconds: slice.charged,
            targetNanoseconds: slice.target, cumulativePreemptionNanoseconds: slice.preemptionAtStart,
            batches: slice.batches))
    }
}
