import Hypervisor

/// The control queue's fence timelines: each fenced request's place in line on its timeline,
/// taken when the device thread receives it.
///
/// A Linux driver takes fence N as the retirement of every earlier fence of N's timeline, so a
/// fenced response must not reach the driver before the earlier fenced responses of its
/// timeline, whatever finished first: a response that arrives early waits here until the ones
/// before it are answered. Timelines are independent of each other (a context's rings exist so
/// that one ring's slow work does not hold back another's fences).
///
/// Not thread-safe: the device keeps it under its port lock, together with the ring that the
/// released responses go into, so releasing and returning chains happen in one order.
struct FenceTimelines {
    enum Timeline: Hashable {
        /// Fenced without INFO_RING_IDX: the device-wide fence timeline.
        case global
        case ring(context: UInt32, index: UInt8)
    }

    /// A fenced request waiting for its turn; its response once it has one.
    final class PendingFence {
        let chain: DescriptorChain
        fileprivate(set) var response: [UInt8]?
        init(chain: DescriptorChain) { self.chain = chain }
    }

    private var pending: [Timeline: [PendingFence]] = [:]

    /// Puts a fenced request's chain at the end of `timeline`.
    mutating func enqueue(_ chain: DescriptorChain, on timeline: Timeline) -> PendingFence {
        let fence = PendingFence(chain: chain)
        pending[timeline, default: []].append(fence)
        return fence
    }

    /// Records `fence`'s response and takes off `timeline` the responses now free to go, in
    /// order: the answered ones at its front (none while an earlier fence is unanswered).
    mutating func answer(_ fence: PendingFence, with response: [UInt8],
                         on timeline: Timeline) -> [(chain: DescriptorChain, response: [UInt8])] {
        fence.response = response
        guard var waiting = pending[timeline] else { return [] }
        var released: [(chain: DescriptorChain, response: [UInt8])] = []
        while released.count < waiting.count, let ready = waiting[released.count].response {
            released.append((waiting[released.count].chain, ready))
        }
        waiting.removeFirst(released.count)
        pending[timeline] = waiting.isEmpty ? nil : waiting
        return released
    }
}
