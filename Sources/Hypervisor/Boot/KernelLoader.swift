/// How the vCPU must be entered for a loaded kernel.
public enum BootProtocol: Sendable, Equatable {
    /// Xen PVH: 32-bit protected mode, paging off, ebx = hvm_start_info.
    case pvh(entry: UInt32)
    /// Linux's 64-bit boot protocol: long mode on identity-mapped page tables at `entry`
    /// (startup_64), rsi = boot_params, whose setup header starts as a copy of `setupHeader`.
    case linux64(entry: UInt64, loadAddress: UInt64, setupHeader: [UInt8])
}

public struct LoadedKernel: Sendable, Equatable {
    public let bootProtocol: BootProtocol
    /// First byte past the memory the kernel occupies (or needs while it starts), above which
    /// an initrd may go.
    public let end: UInt64
    /// The highest address the initrd's last byte may have: the kernel reads it no higher.
    public let initrdLimit: UInt64

    public init(bootProtocol: BootProtocol, end: UInt64, initrdLimit: UInt64 = UInt64(UInt32.max)) {
        self.bootProtocol = bootProtocol
        self.end = end
        self.initrdLimit = initrdLimit
    }
}

/// A kernel image format: puts the image into guest memory and says how to enter it.
public protocol KernelLoader {
    func load(into memory: GuestMemory) throws(BootError) -> LoadedKernel
}

/// Picks the loader by the image's first bytes: an ELF goes through PVH, an image with a
/// Linux setup header ("HdrS") through the 64-bit boot protocol.
public enum KernelImage {
    public static func loader(path: String) throws(BootError) -> any KernelLoader {
        try loader(bytes: try ImageFile.read(path, role: .kernel))
    }

    public static func loader(bytes: [UInt8]) throws(BootError) -> any KernelLoader {
        if bytes.starts(with: [0x7f, 0x45, 0x4c, 0x46]) { return try PVHELFLoader(bytes: bytes) }
        if BzImage.isBzImage(bytes) { return BzImageLoader(image: try BzImage(bytes: bytes)) }
        throw .notAKernel
    }
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
        try self.init(bytes: try ImageFile.read(path, role: .kernel))
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
}
