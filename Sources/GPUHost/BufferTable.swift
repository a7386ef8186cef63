/// A backend's live buffers by id. Ids count up and are never reused, so a stale id held by a
/// client names nothing rather than someone else's buffer.
struct BufferTable<Buffer> {
    private(set) var byID: [BufferID: Buffer] = [:]
    private var next: UInt64 = 1

    mutating func insert(_ buffer: Buffer) -> BufferID {
        let id = BufferID(rawValue: next)
        next += 1
        byID[id] = buffer
        return id
    }

    mutating func remove(_ id: BufferID) throws(GPUError) -> Buffer {
        guard let buffer = byID.removeValue(forKey: id) else { throw .unknownBuffer(id) }
        return buffer
    }

    subscript(id: BufferID) -> Buffer? { byID[id] }
}
