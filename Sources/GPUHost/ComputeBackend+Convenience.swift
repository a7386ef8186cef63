/// Typed host-side helpers over the byte-level protocol requirements: what tests, tools and
/// the CPU-fallback path use to move arrays in and out.
extension ComputeBackend {
    /// Submits and waits without a deadline.
    @discardableResult
    public func run(_ batch: CommandBatch) throws(GPUError) -> BatchCompletion {
        let id = try submit(batch)
        return try wait(id, timeoutNanoseconds: .max)
    }

    @discardableResult
    public func run(_ kernels: Kernel...) throws(GPUError) -> BatchCompletion {
        try run(CommandBatch(kernels))
    }

    public func makeBuffer(floats values: [Float], placement: MemoryPlacement = .deviceLocal) throws(GPUError) -> BufferID {
        let id = try createBuffer(byteCount: max(values.count, 1) * 4, placement: placement)
        try write(floats: values, to: id)
        return id
    }

    public func makeBuffer(uint32s values: [UInt32], placement: MemoryPlacement = .deviceLocal) throws(GPUError) -> BufferID {
        let id = try createBuffer(byteCount: max(values.count, 1) * 4, placement: placement)
        try writeElements(values, to: id, byteOffset: 0)
        return id
    }

    public func makeBuffer(bytes values: [UInt8], placement: MemoryPlacement = .deviceLocal) throws(GPUError) -> BufferID {
        let id = try createBuffer(byteCount: max(values.count, 1), placement: placement)
        try writeElements(values, to: id, byteOffset: 0)
        return id
    }

    public func write(floats values: [Float], to buffer: BufferID, offset: Int = 0) throws(GPUError) {
        try writeElements(values, to: buffer, byteOffset: try byteOffset(offset, stride: 4, buffer))
    }

    public func readFloats(_ buffer: BufferID, offset: Int = 0, count: Int) throws(GPUError) -> [Float] {
        try readElements(buffer, byteOffset: try byteOffset(offset, stride: 4, buffer), count: count)
    }

    public func readUInt32s(_ buffer: BufferID, offset: Int = 0, count: Int) throws(GPUError) -> [UInt32] {
        try readElements(buffer, byteOffset: try byteOffset(offset, stride: 4, buffer), count: count)
    }

    private func byteOffset(_ offset: Int, stride: Int, _ buffer: BufferID) throws(GPUError) -> Int {
        let (bytes, overflow) = offset.multipliedReportingOverflow(by: stride)
        guard offset >= 0, !overflow else {
            throw .bufferAccessOutOfBounds(buffer, byteOffset: offset, byteCount: 0, capacity: capacity(of: buffer) ?? 0)
        }
        return bytes
    }

    private func writeElements<T: BitwiseCopyable>(_ values: [T], to buffer: BufferID, byteOffset: Int) throws(GPUError) {
        guard !values.isEmpty else { return }
        var failure: GPUError?
        values.withUnsafeBytes { raw in
            do throws(GPUError) {
                try write(buffer, byteOffset: byteOffset, from: raw)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    private func readElements<T: BitwiseCopyable>(_ buffer: BufferID, byteOffset: Int, count: Int) throws(GPUError) -> [T] {
        guard count > 0 else {
            if count < 0 {
                throw .bufferAccessOutOfBounds(buffer, byteOffset: byteOffset, byteCount: count,
                                               capacity: capacity(of: buffer) ?? 0)
            }
            return []
        }
        // Bound the allocation by the buffer before making it: a bogus count must fail as an
        // access error, not as an allocation trap.
        guard let bytes = capacity(of: buffer) else { throw .unknownBuffer(buffer) }
        guard count <= bytes / MemoryLayout<T>.stride else {
            let (wanted, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
            throw .bufferAccessOutOfBounds(buffer, byteOffset: byteOffset, byteCount: overflow ? .max : wanted,
                                           capacity: bytes)
        }
        var failure: GPUError?
        let values = [T](unsafeUninitializedCapacity: count) { storage, initialized in
            do throws(GPUError) {
                try read(buffer, byteOffset: byteOffset, into: UnsafeMutableRawBufferPointer(storage))
                initialized = count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return values
    }
}
