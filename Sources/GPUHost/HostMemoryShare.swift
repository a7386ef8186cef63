/// Host memory a backend copies batch transfers to and from in place
/// (`ComputeBackend.shareHostMemory`), for as long as this object lives. Whoever holds it
/// keeps the memory mapped until it is released and the batches that used it have retired;
/// a vGPU holds one per region of its VM's RAM and drops them after its contexts are gone.
public final class HostMemoryShare: @unchecked Sendable {
    /// The bytes shared.
    public let bytes: UnsafeMutableRawBufferPointer
    private let release: () -> Void

    init(bytes: UnsafeMutableRawBufferPointer, release: @escaping () -> Void) {
        self.bytes = bytes
        self.release = release
    }

    deinit { release() }
}
