import Glibc

/// How the vCPU must be entered for a loaded kernel.
public enum BootProtocol: Sendable, Equatable {
    /// Xen PVH: 32-bit protected mode, paging off, ebx = hvm_start_info.
    case pvh(entry: UInt32)
}

public struct LoadedKernel: Sendable, Equatable {
    public let bootProtocol: BootProtocol
    /// First byte past the highest loaded segment, where an initrd may follow.
    public let end: UInt64
}

/// A kernel image format: puts the image into guest memory and says how to enter it.
/// PVH ELF is the first; a bzImage loader joins it for Linux's 64-bit boot protocol.
public protocol KernelLoader {
    func load(into memory: GuestMemory) throws(BootError) -> LoadedKernel
}

/// Loads a PVH ELF (ELF32 or ELF64) at its physical addresses.
public struct PVHELFLoader: KernelLoader {
    public let image: ELFImage
    private let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(BootError) {
        self.image = try ELFImage(bytes: bytes)
        self.bytes = bytes
        guard image.pvhEntry != nil else { throw .noPVHEntry }
        guard !image.segments.isEmpty else { throw .noLoadableSegments }
    }

    public init(path: String) throws(BootError) {
        try self.init(bytes: try Self.readFile(path))
    }

    public func load(into memory: GuestMemory) throws(BootError) -> LoadedKernel {
        guard let entry = image.pvhEntry else { throw .noPVHEntry }
        var end: UInt64 = 0
        // Check every segment before writing any, so a bad image leaves memory untouched.
        for segment in image.segments {
            guard segment.physicalAddress >= X86BootLayout.kernelAreaStart else {
                throw .segmentInBootArea(address: segment.physicalAddress, size: segment.memorySize)
            }
            guard memory.contains(GuestAddress(segment.physicalAddress), length: segment.memorySize) else {
                throw .segmentOutsideMemory(address: segment.physicalAddress, size: segment.memorySize)
            }
            end = max(end, segment.physicalAddress + segment.memorySize)
        }
        for segment in image.segments {
            let start = GuestAddress(segment.physicalAddress)
            let fileBytes = bytes[Int(segment.fileOffset)..<Int(segment.fileOffset + segment.fileSize)]
            do {
                let target = try memory.slice(at: start, length: segment.memorySize)
                fileBytes.withUnsafeBytes { source in
                    target.copyMemory(from: source)
                    target[source.count...].initializeMemory(as: UInt8.self, repeating: 0)
                }
            } catch {
                throw .segmentOutsideMemory(address: segment.physicalAddress, size: segment.memorySize)
            }
        }
        return LoadedKernel(bootProtocol: .pvh(entry: entry), end: end)
    }

    static func readFile(_ path: String) throws(BootError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .unreadable(path: path, errno: EISDIR) }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .unreadable(path: path, errno: count < 0 ? errno : EIO) }
            done += count
        }
        return bytes
    }
}
