import Platform

/// Feature bits every transport knows (virtio 1.2 §6).
public enum VirtioFeature {
    public static let indirectDescriptors: UInt64 = 1 << 28
    public static let eventIndex: UInt64 = 1 << 29
    public static let version1: UInt64 = 1 << 32
}

/// Device status bits (virtio 1.2 §2.1).
public enum VirtioStatus {
    public static let acknowledge: UInt8 = 1
    public static let driver: UInt8 = 2
    public static let driverOK: UInt8 = 4
    public static let featuresOK: UInt8 = 8
    public static let needsReset: UInt8 = 0x40
    public static let failed: UInt8 = 0x80
}

/// A virtio device's own behaviour, independent of the transport that carries it.
///
/// The transport negotiates features and holds the queue configuration; at DRIVER_OK it hands
/// the device everything it needs to serve (`activate`, Cloud Hypervisor's
/// `VirtioDevice::activate`): a device served in this process starts a device thread, one
/// served elsewhere (the GPU daemon, the vhost-user model) passes the rings, doorbells and
/// interrupt eventfds on. Either way the transport and the daemon run the same path.
public protocol VirtioDeviceBackend: AnyObject, Sendable {
    /// The virtio device ID (2 = block, 16 = GPU).
    var deviceType: UInt16 { get }
    /// Device-specific and transport features offered; VERSION_1 is added by the transport.
    var offeredFeatures: UInt64 { get }
    /// The largest size of each queue.
    var queueMaximumSizes: [UInt16] { get }
    var configurationSize: Int { get }
    /// PCI class, subclass and programming interface for the device.
    var pciClass: (UInt8, UInt8, UInt8) { get }

    func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer)
    func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer)
    /// DRIVER_OK: starts serving `activation`'s queues. The service ends when the returned
    /// handle is stopped (then `reset()` follows), or, for a device without a handle, at
    /// `reset()`. Throw to put the device into DEVICE_NEEDS_RESET.
    func activate(_ activation: VirtioActivation) throws(VirtioActivationError) -> (any VirtioQueueService)?
    /// The driver reset the device: drop any state from the last activation.
    func reset()
}

/// A device whose queues this process serves: the default activation starts a device thread
/// (`VirtioQueueServer`) that calls `process` whenever a doorbell rings.
public protocol VirtioQueueHandler: VirtioDeviceBackend {
    /// The driver rang queue `index`'s doorbell (called on the device thread). Serve what is
    /// available and call `context.completed(queue:)`; throw to put the device into NEEDS_RESET.
    func process(queue index: Int, context: VirtioQueueContext) throws(VirtqueueError)
}

extension VirtioQueueHandler {
    public func activate(_ activation: VirtioActivation) throws(VirtioActivationError) -> (any VirtioQueueService)? {
        try VirtioQueueServer(device: self, activation: activation)
    }
}

/// A running activation, stopped before the device is reset.
public protocol VirtioQueueService: AnyObject, Sendable {
    /// Stops serving (waiting for the pass in progress); the device keeps its state until its `reset()`.
    func stop()
}

/// Everything one activation needs, whoever serves it.
public struct VirtioActivation: Sendable {
    /// Names the device thread.
    public let name: String
    public let features: UInt64
    /// One per queue; nil for a queue the driver did not enable.
    public let queues: [VirtqueueConfiguration?]
    public let memory: GuestMemory
    /// The queues' doorbells (KVM ioeventfds), one per queue.
    public let doorbells: [EventFD]
    /// The irqfd of each queue's MSI-X vector, for a server outside this process; nil where
    /// the driver gave the queue none. Writing it is the interrupt; the MSI-X table detaches it
    /// from KVM while the vector is masked, so a write then becomes the pending bit.
    public let interruptFDs: [EventFD?]
    /// Raises queue `i`'s interrupt from this process (any thread).
    public let interrupt: @Sendable (Int) -> Void
    /// Puts the device into DEVICE_NEEDS_RESET with a config interrupt (any thread).
    public let needsReset: @Sendable (String) -> Void

    public init(name: String, features: UInt64, queues: [VirtqueueConfiguration?], memory: GuestMemory, doorbells: [EventFD],
                interruptFDs: [EventFD?], interrupt: @escaping @Sendable (Int) -> Void,
                needsReset: @escaping @Sendable (String) -> Void) {
        precondition(queues.count == doorbells.count && queues.count == interruptFDs.count, "one doorbell and interrupt per queue")
        self.name = name
        self.features = features
        self.queues = queues
        self.memory = memory
        self.doorbells = doorbells
        self.interruptFDs = interruptFDs
        self.interrupt = interrupt
        self.needsReset = needsReset
    }
}

/// What a device sees of its activated queues: the rings and a way to interrupt the driver.
public final class VirtioQueueContext: @unchecked Sendable {
    public let negotiatedFeatures: UInt64
    public let queues: [Virtqueue?]
    let interrupt: (Int) -> Void

    init(negotiatedFeatures: UInt64, queues: [Virtqueue?], interrupt: @escaping (Int) -> Void) {
        self.negotiatedFeatures = negotiatedFeatures
        self.queues = queues
        self.interrupt = interrupt
    }

    /// Used entries were added to `queue`: interrupt the driver if it wants to hear of them.
    public func completed(queue index: Int) {
        guard let queue = queues[index] else { return }
        if queue.needsInterrupt() { interrupt(index) }
    }

    /// What a device did with one chain a drain handed it.
    public enum ChainOutcome: Equatable, Sendable {
        /// Answered: the drain returns the chain to the driver at once, with `length` bytes
        /// written into its writable buffers.
        case used(length: UInt32)
        /// The device keeps the chain and returns it itself (`Virtqueue.pushUsed`): in the
        /// drain's `endOfBatch` (a batch answered together), or later from another thread,
        /// holding the drain's `ringLock`.
        case kept
    }

    /// The device loop every queue uses: serve each available chain until the queue stays
    /// empty with notifications re-armed, then decide once whether to interrupt the driver.
    ///
    /// - `serve` runs on the calling thread, outside `ringLock`, for every chain in the order
    ///   the driver offered them.
    /// - `endOfBatch` runs each time the queue is found empty, before notifications are
    ///   re-armed: a device that keeps chains to answer them together (block merging
    ///   contiguous requests) returns them there, so nothing is held across the re-arm.
    /// - `ringLock`: for a queue whose chains other threads return too (the para-vGPU's
    ///   completion threads), the lock they hold around `pushUsed`. The ring is not
    ///   thread-safe, so every ring operation of the drain (taking chains, returning answered
    ///   ones, re-arming, the interrupt decision) runs under it. Nil: only this thread touches
    ///   the ring.
    ///
    /// A chain that cannot be taken (a malformed descriptor chain, an available index that
    /// jumped) ends the drain with its error, before the chain is served, without
    /// `endOfBatch` or an interrupt: the driver broke the ring, and the device must be reset
    /// (`VirtioQueueServer` turns the error into DEVICE_NEEDS_RESET).
    public func drain(queue index: Int, ringLock: Monitor? = nil,
                      serve: (DescriptorChain, Virtqueue) -> ChainOutcome,
                      endOfBatch: (Virtqueue) -> Void = { _ in }) throws(VirtqueueError) {
        guard queues.indices.contains(index), let queue = queues[index] else { return }
        func onRing<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
            guard let ringLock else { return try body() }
            return try ringLock.withLock(body)
        }
        var served = false
        repeat {
            while let chain = try onRing({ () throws(VirtqueueError) in try queue.popChain() }) {
                served = true
                if case let .used(length) = serve(chain, queue) {
                    onRing { queue.pushUsed(head: chain.head, length: length) }
                }
            }
            endOfBatch(queue)
            // Re-arm notifications; if the driver added work meanwhile, go round again.
        } while onRing({ queue.enableNotification() })
        // One interrupt decision for the whole drain (chains returned later raise their own).
        if served { onRing { completed(queue: index) } }
    }
}
