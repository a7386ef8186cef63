/// How long a client's batches take on the device: what the `learned-slice` policy ("ML for
/// OS"; issue #17) predicts, so that the scheduler can cut a batch that would hold the device for
/// many slices into slice-sized pieces. The model itself is an MLaaS service's (the VM selects
/// it; docs/mlaas.md): the scheduler only asks it before queueing a batch and tells it what the
/// batch cost once it retired.
///
/// Both calls run with the scheduler's lock held: answer from memory, never block, never call
/// the scheduler.
public protocol BatchDurationModel: AnyObject, Sendable {
    /// The expected device time of a batch about to be queued, in nanoseconds; nil: nothing is
    /// known, and the batch goes whole. `signature` names the batch's kernel list
    /// (`KernelListIdentity.serial`); `work` is its kernels' work (`ValidatedBatch.kernelWork`),
    /// which prices a list never seen before from the client's others.
    func predict(client: ClientID, signature: UInt64, work: Double) -> Double?
    /// A batch (all its pieces) retired after `nanoseconds` of device time.
    func observe(client: ClientID, signature: UInt64, work: Double, nanoseconds: Double)
}

extension GPUScheduler {
    /// Installs `model` (nil: removes the one installed) for every client, present and future,
    /// whose owner is VM `vm`. From the next batch they queue, one predicted to run longer than
    /// a slice and a half is cut into pieces at kernel boundaries (`cut`). When this returns, a
    /// model it replaced or removed is no longer called.
    public func setBatchModel(_ model: (any BatchDurationModel)?, forVM vm: String) {
        monitor.withLock { batchModels[vm] = model }
    }

    /// Call locked. The model the client's batches are cut by, if its VM has one.
    func batchModel(of state: ClientState) -> (any BatchDurationModel)? {
        guard let vm = state.configuration.owner?.vm else { return nil }
        return batchModels[vm]
    }
}
