import GPUHost
import Hypervisor
import Logging
import VGPUCore
import Platform

/// TRANSFER_TO_HOST_3D / TRANSFER_FROM_HOST_3D: bytes between a resource's guest backing and
/// its GPU buffer, run on the owning context's thread so they stay in order with its
/// submissions; and the mapping of backing ranges onto guest RAM that submissions use too.
extension VirtioGPU {
    func transfer(_ request: Request, _ body: WireReader, toHost: Bool) throws(VirtioGPUProtocol.Response) -> Disposition {
        var r = body
        // struct virtio_gpu_box: x y z w h d; then offset, resource_id, level, stride, layer_stride.
        var box: [UInt32] = []
        for _ in 0 ..< 6 { box.append(try r.field32()) }
        let offset = try r.field64()
        let resourceID = try r.field32()
        let level = try r.field32()
        // A blob is a buffer: bytes [x, x + w) of the resource move to or from bytes
        // [offset, offset + w) of its guest backing, as virglrenderer does for buffers. Rows,
        // layers and mip levels do not exist here.
        let (x, y, z, w, h, d) = (box[0], box[1], box[2], box[3], box[4], box[5])
        guard y == 0, z == 0, h == 1, d == 1, level == 0, w > 0 else { throw .errorInvalidParameter }
        let (context, resource, backing, buffer) = try stateLock.withLock {
            () throws(VirtioGPUProtocol.Response) -> (Context, Resource, [BackingEntry], BufferID) in
            guard let context = state.contexts[request.header.contextID] else { throw .errorInvalidContextID }
            guard let resource = ownResource(resourceID, of: context), let buffer = resource.buffer else {
                throw .errorInvalidResourceID
            }
            return (context, resource, resource.backing, buffer)
        }
        guard UInt64(x) + UInt64(w) <= resource.size else { throw .errorInvalidParameter }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(w))
        guard !overflow, end <= backing.totalLength else { throw .errorInvalidParameter }
        let generation = request.generation
        let enqueued = context.worker.enqueue { [self] in
            guard isCurrent(generation) else { return }
            let ok = move(backing, backingOffset: offset, hostOffset: UInt64(x), count: UInt64(w), buffer: buffer,
                          client: context.client, toHost: toHost)
            publish(request, encode(request.header.response(ok ? .okNoData : .errorUnspecified)))
        }
        guard enqueued else { throw .errorInvalidContextID }
        return .deferred
    }

    /// Copies `count` bytes between a resource's guest backing (from `backingOffset`) and its
    /// GPU buffer (from `hostOffset`), straight from or into guest RAM, entry by entry. The
    /// scheduler orders each copy after the context's earlier batches.
    private func move(_ backing: [BackingEntry], backingOffset: UInt64, hostOffset: UInt64, count: UInt64,
                      buffer: BufferID, client: ClientID, toHost: Bool) -> Bool {
        do {
            for piece in try guestPieces(backing, backingOffset: backingOffset, hostOffset: hostOffset, count: count) {
                if toHost {
                    try scheduler.write(buffer, for: client, byteOffset: piece.hostOffset, from: UnsafeRawBufferPointer(piece.guest))
                } else {
                    try scheduler.read(buffer, for: client, byteOffset: piece.hostOffset, into: piece.guest)
                }
            }
        } catch {
            logger.warning("vGPU transfer failed: \(error)", metadata: ["device": "\(name)"])
            return false
        }
        return true
    }

    /// The guest RAM behind bytes `[backingOffset, backingOffset + count)` of a resource's
    /// backing, one piece per backing entry it crosses, each with the offset in the resource's
    /// GPU buffer it corresponds to (`hostOffset` plus its distance from `backingOffset`).
    /// Callers have checked `backingOffset + count` against the backing's length and
    /// `hostOffset + count` against the resource's size; every entry is checked against guest
    /// RAM here.
    func guestPieces(_ backing: [BackingEntry], backingOffset: UInt64, hostOffset: UInt64,
                             count: UInt64) throws(GuestMemoryError) -> [(hostOffset: Int, guest: UnsafeMutableRawBufferPointer)] {
        var pieces: [(hostOffset: Int, guest: UnsafeMutableRawBufferPointer)] = []
        var entryStart: UInt64 = 0
        let wantedEnd = backingOffset + count
        for entry in backing {
            let entryEnd = entryStart + entry.length
            defer { entryStart = entryEnd }
            let lower = max(backingOffset, entryStart)
            let upper = min(wantedEnd, entryEnd)
            guard lower < upper else { continue }
            let guest = try memory.slice(at: GuestAddress(entry.address.raw + (lower - entryStart)), length: upper - lower)
            pieces.append((Int(hostOffset + (lower - backingOffset)), guest))
        }
        return pieces
    }
}
