/// The last few compute streams one context submitted, each with what decoding, resolving and
/// validating it produced. A training loop submits the same stream every step (same kernels,
/// same buffers, same ranges): on a real GPU the host's decode of ~500 commands (~0.8 ms on the
/// H200 host, 2026-12-04) was a sixth of the step, so a repeat costs a comparison instead.
///
/// An entry holds only while the world it was validated in holds: `generation` is the
/// device's resource-table generation, which every change to a resource, its backing, a
/// context's attachments or its buffers bumps. The stream is compared whole, byte for byte:
/// a hit is exactly the bytes that were validated, in exactly that table.
public struct DecodedStreamCache<Decoded> {
    public static var capacity: Int { 4 }

    private struct Entry {
        let stream: [UInt8]
        let generation: UInt64
        let decoded: Decoded
    }

    /// Most recently used first.
    private var entries: [Entry] = []

    public init() {}

    /// What `stream` decoded to, if it was decoded in this `generation`.
    public mutating func lookup(_ stream: [UInt8], generation: UInt64) -> Decoded? {
        guard let index = entries.firstIndex(where: { $0.generation == generation && $0.stream == stream }) else { return nil }
        let entry = entries.remove(at: index)
        entries.insert(entry, at: 0)
        return entry.decoded
    }

    /// Remembers `decoded` for `stream` as validated in `generation`; the least recently used
    /// entry goes when the cache is full, and entries of older generations go at once.
    public mutating func insert(_ stream: [UInt8], generation: UInt64, decoded: Decoded) {
        entries.removeAll { $0.generation != generation || $0.stream == stream }
        entries.insert(Entry(stream: stream, generation: generation, decoded: decoded), at: 0)
        if entries.count > Self.capacity { entries.removeLast(entries.count - Self.capacity) }
    }
}
