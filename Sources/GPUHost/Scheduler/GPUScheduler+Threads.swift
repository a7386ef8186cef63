import Platform

extension GPUScheduler {
    /// Stops the scheduler thread after the batches on the device have retired; queued
    /// batches fail with `stopped`. Idempotent.
    public func stop() {
        monitor.lock()
        stopping = true
        var dropped: [PendingBatch] = []
        for state in clients.values { dropped += state.dropQueue().pending }
        workAvailable.signal()
        dispatched.signal()
        while threadsRunning > 0 { progress.wait() }
        monitor.unlock()
        for pending in dropped { pending.ticket.finish(.failure(.stopped)) }
    }

    /// Two threads, so handing batches over never waits for the device: the dispatching
    /// thread decides and records while earlier batches run, and the retiring thread waits
    /// for them in order, charges them and completes their tickets. With one thread doing
    /// both, every batch's host-side cost (recording, queue submission, waking the waiter)
    /// sat between two device runs, and clients sharing the device could never get more done
    /// together than one got alone.
    func startThreads() throws(SchedulerError) {
        threadsRunning = 2
        let context = Unmanaged.passRetained(self)
        let retainedAgain = Unmanaged.passRetained(self)
        do {
            _ = try NativeThread(name: "gpu-dispatch", detached: true) { context.takeRetainedValue().dispatchLoop() }
        } catch {
            context.release()
            retainedAgain.release()
            threadsRunning = 0
            throw .invalidConfiguration("cannot start the scheduler's dispatching thread (errno \(error.errno))")
        }
        do {
            _ = try NativeThread(name: "gpu-retire", detached: true) { retainedAgain.takeRetainedValue().retireLoop() }
        } catch {
            retainedAgain.release()
            monitor.withLock { stopping = true; threadsRunning -= 1; workAvailable.signal() }
            throw .invalidConfiguration("cannot start the scheduler's retiring thread (errno \(error.errno))")
        }
    }

    /// Whether one more batch may go to the device: below the count limit, and, past the
    /// first, only while what is queued there is expected to finish within a time slice. Short
    /// batches then queue several deep (their host-side costs overlap the device's work),
    /// while long ones never stack up ahead of another client's turn.
    private var deviceHasRoom: Bool {
        inFlight.count == 0
            || (inFlight.count < configuration.maxBatchesInFlight * max(1, backend.lanes)
                && policy.inFlightEstimate < Double(policy.timeSlice))
    }

    private func dispatchLoop() {
        monitor.lock()
        while true {
            let now = monotonicNanoseconds()
            if !stopping, deviceHasRoom, let entry = takeNextBatch(now) {
                var batch = entry.batch ?? .empty
                // Each client on a queue of its own (as far as the device has them): one
                // client's batches keep their order, different clients' run side by side.
                batch.lane = Int(entry.client.id.rawValue) % max(1, backend.lanes)
                entry.batch = nil
                // The device call happens unlocked: clients keep submitting and the retiring
                // thread keeps retiring meanwhile (the CPU backend runs the batch inside submit).
                monitor.unlock()
                let handing = monotonicNanoseconds()
                let submitted: Result<SubmissionID, GPUError>
                do throws(GPUError) {
                    submitted = .success(try backend.submit(batch))
                } catch {
                    submitted = .failure(error)
                }
                let handed = monotonicNanoseconds()
                monitor.lock()
                dispatchBusy += handed - handing
                switch submitted {
                case let .success(id): entry.submission = id
                case let .failure(error): entry.failure = error
                }
                entry.dispatched = true
                dispatched.signal()
                continue
            }
            if stopping && inFlight.isEmpty { break }
            if let wake = policy.wakeAt, !stopping {
                // Work is queued but every client that has some is over its share: the
                // device idles on purpose. Counted, so "not work-conserving" is measurable.
                let from = monotonicNanoseconds()
                workAvailable.wait(until: wake)
                heldBack += monotonicNanoseconds() - from
            } else {
                workAvailable.wait()
            }
        }
        threadsRunning -= 1
        dispatched.signal()
        progress.broadcast()
        monitor.unlock()
    }

    /// Retires batches as the device finishes them: one wait covers every dispatched batch,
    /// and every batch found finished is retired at that wake-up, oldest first. A client's
    /// batches share a lane, so they finish, and retire, in their order.
    private func retireLoop() {
        monitor.lock()
        while true {
            let dispatchedNow = inFlight.filter(\.dispatched)
            guard !dispatchedNow.isEmpty else {
                if stopping && inFlight.isEmpty && threadsRunning == 1 { break }
                dispatched.wait()
                continue
            }
            // Handing over failed: nothing runs, it retires at once with its error.
            let refused = dispatchedNow.filter { $0.submission == nil }
            let waiting = dispatchedNow.compactMap(\.submission)
            monitor.unlock()
            var collecting = monotonicNanoseconds()
            var outcomes: [(InFlightBatch, Result<BatchCompletion, GPUError>)] = refused.map {
                ($0, .failure($0.failure ?? .unknownSubmission(SubmissionID(rawValue: 0))))
            }
            if !waiting.isEmpty {
                // Bounded, so batches dispatched meanwhile join the next wait.
                let finished: [SubmissionID]
                do throws(GPUError) {
                    finished = refused.isEmpty ? try backend.waitForAny(waiting, timeoutNanoseconds: 2_000_000) : []
                } catch {
                    finished = []
                    logger.error("GPUHost scheduler: waiting for the device failed: \(error)")
                }
                collecting = monotonicNanoseconds()
                for entry in dispatchedNow {
                    guard let id = entry.submission, finished.contains(id) else { continue }
                    do throws(GPUError) {
                        outcomes.append((entry, .success(try backend.wait(id, timeoutNanoseconds: .max))))
                    } catch {
                        outcomes.append((entry, .failure(error)))
                    }
                }
            }
            let finishedAt = monotonicNanoseconds()
            monitor.lock()
            retireBusy += finishedAt - collecting
            var results: [(BatchTicket, Result<ScheduledCompletion, SchedulerError>)] = []
            for (entry, outcome) in outcomes {
                inFlight.removeAll { $0 === entry }
                if let result = retire(entry, outcome, at: finishedAt) { results.append((entry.ticket, result)) }
            }
            if !outcomes.isEmpty {
                // Room on the device, and perhaps a client whose transfer batch may go now.
                workAvailable.signal()
                monitor.unlock()
                for (ticket, result) in results { ticket.finish(result) }
                monitor.lock()
            }
        }
        threadsRunning -= 1
        progress.broadcast()
        monitor.unlock()
    }
}
