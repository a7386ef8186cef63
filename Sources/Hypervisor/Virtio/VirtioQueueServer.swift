import Glibc
import Platform

/// Why an activation could not start serving.
public enum VirtioActivationError: Error, Sendable, CustomStringConvertible {
    case ring(index: Int, VirtqueueError)
    case thread(SystemError)

    public var description: String {
        switch self {
        case let .ring(index, error): return "queue \(index): \(error)"
        case let .thread(error): return "device thread: \(error)"
        }
    }
}

/// Serves one activation of a virtio device: the rings the driver laid out, a device thread
/// waiting on the queues' doorbells, completions raised through `interrupt`.
///
/// The PCI transport runs one in the VMM for each DRIVER_OK; the GPU daemon runs one for each
/// VM it serves, on guest memory, doorbells and interrupt eventfds the VM shared with it (the
/// vhost-user model), so the data path never passes through the VM's process.
public final class VirtioQueueServer: Sendable {
    private let worker: DeviceWorker

    /// - Parameters:
    ///   - queues: one entry per queue of the device; nil for a queue the driver did not enable.
    ///   - interrupt: raises the interrupt of the queue given (called on the device thread and
    ///     on whatever threads the device completes requests on).
    ///   - needsReset: the device met a driver error it cannot serve past (called on the
    ///     device thread); the transport sets DEVICE_NEEDS_RESET.
    public init(device: any VirtioDeviceBackend, name: String, features: UInt64, queues: [VirtqueueConfiguration?],
                memory: GuestMemory, doorbells: [EventFD], interrupt: @escaping @Sendable (Int) -> Void,
                needsReset: @escaping @Sendable (VirtqueueError) -> Void) throws(VirtioActivationError) {
        precondition(queues.count == doorbells.count, "one doorbell per queue")
        var rings: [Virtqueue?] = []
        for (index, queue) in queues.enumerated() {
            guard let queue else { rings.append(nil); continue }
            do { rings.append(try Virtqueue(configuration: queue, memory: memory)) } catch {
                throw .ring(index: index, error)
            }
        }
        let context = VirtioQueueContext(negotiatedFeatures: features, queues: rings, interrupt: interrupt)
        do {
            worker = try DeviceWorker(name: name, doorbells: doorbells) { queue in
                do throws(VirtqueueError) { try device.process(queue: queue, context: context) } catch { needsReset(error) }
            }
        } catch { throw .thread(error) }
    }

    /// Stops the device thread (waiting for the pass it is in); the device keeps its state
    /// until its `reset()`.
    public func stop() { worker.stop() }
}

/// The device thread: waits on the queue doorbells (ioeventfds) and a stop eventfd with poll(2),
/// and hands each rung queue to the device. Doorbells never exit to userspace on the vCPU.
/// Devices outside this module (the full-vGPU) run on it too.
public final class DeviceWorker: @unchecked Sendable {
    private let stopSignal: EventFD
    private let thread: NativeThread

    /// Calls `serve(i)` once for every doorbell at start, then whenever doorbell `i` is rung.
    public init(name: String, doorbells: [EventFD], serve: @escaping @Sendable (Int) -> Void) throws(SystemError) {
        let stop = try EventFD()
        stopSignal = stop
        let fds = doorbells.map(\.fileDescriptor)
        do throws(ThreadStartError) {
            thread = try NativeThread(name: name) {
                var polls = ([stop.fileDescriptor] + fds).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
                // Serve once at start: the driver may have queued work before DRIVER_OK.
                for queue in fds.indices { serve(queue) }
                while true {
                    let ready = poll(&polls, nfds_t(polls.count), -1)
                    if ready < 0 && errno == EINTR { continue }
                    guard ready > 0, polls[0].revents == 0 else { return }
                    for queue in fds.indices where polls[queue + 1].revents != 0 {
                        doorbells[queue].drain()
                        serve(queue)
                    }
                }
            }
        } catch { throw SystemError("pthread_create", errno: error.errno) }
    }

    /// Waits for the pass in progress, then ends the thread. Not from the device thread.
    public func stop() {
        stopSignal.signal()
        thread.join()
    }
}
