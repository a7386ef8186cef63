import Glibc
import Platform

/// Why an activation could not start serving.
public enum VirtioActivationError: Error, Sendable, CustomStringConvertible {
    case ring(index: Int, VirtqueueError)
    case thread(SystemError)
    /// A server elsewhere (the GPU daemon) refused the activation or could not be reached.
    case remote(String)

    public var description: String {
        switch self {
        case let .ring(index, error): return "queue \(index): \(error)"
        case let .thread(error): return "device thread: \(error)"
        case let .remote(reason): return reason
        }
    }
}

/// Serves one activation of a virtio device: the rings the driver laid out, a device thread
/// waiting on the queues' doorbells, completions raised through `interrupt`.
///
/// The PCI transport runs one in the VMM for each DRIVER_OK; the GPU daemon runs one for each
/// VM it serves, on guest memory, doorbells and interrupt eventfds the VM shared with it (the
/// vhost-user model), so the data path never passes through the VM's process.
public final class VirtioQueueServer: VirtioQueueService {
    private let worker: DeviceWorker

    /// Builds the rings of `activation` and starts the device thread. `activation.interrupt`
    /// is called on the device thread and on whatever threads the device completes requests
    /// on; `activation.needsReset` on the device thread, when the device met a driver error it
    /// cannot serve past.
    public init(device: any VirtioQueueHandler, activation: VirtioActivation) throws(VirtioActivationError) {
        var rings: [Virtqueue?] = []
        for (index, queue) in activation.queues.enumerated() {
            guard let queue else { rings.append(nil); continue }
            do { rings.append(try Virtqueue(configuration: queue, memory: activation.memory)) } catch {
                throw .ring(index: index, error)
            }
        }
        let context = VirtioQueueContext(negotiatedFeatures: activation.features, queues: rings, interrupt: activation.interrupt)
        let needsReset = activation.needsReset
        do {
            worker = try DeviceWorker(name: activation.name, doorbells: activation.doorbells) { queue in
                do throws(VirtqueueError) { try device.process(queue: queue, context: context) } catch { needsReset(error.description) }
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
