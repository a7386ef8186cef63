import Glibc

public enum BootError: Error, Equatable, CustomStringConvertible, Sendable {
    case unreadable(path: String, errno: Int32, role: ImageFile.Role = .kernel)
    case notELF
    /// Neither an ELF nor an image with a Linux setup header.
    case notAKernel
    case bzImageProtocolTooOld(version: UInt16)
    case truncatedBzImage(String)
    case bzImageNotLoadedHigh
    case bzImageWithout64BitEntry(version: UInt16)
    case kernelDoesNotFit(address: UInt64, size: UInt64, memory: UInt64)
    case emptyInitrd
    case initrdDoesNotFit(size: UInt64, space: UInt64)
    case unsupportedELF(String)
    case truncated(String)
    case noPVHEntry
    case noLoadableSegments
    case segmentOutsideMemory(address: UInt64, size: UInt64)
    case segmentInBootArea(address: UInt64, size: UInt64)
    case commandLineTooLong(length: Int, limit: Int)
    case memoryMapTooLarge(entries: Int, limit: Int)
    case bootAreaOutsideMemory

    public var description: String {
        switch self {
        case let .unreadable(path, errno, role):
            return "cannot read \(role.rawValue) '\(path)': \(String(cString: strerror(errno)))"
        case .notELF:
            return "kernel is not an ELF file"
        case .notAKernel:
            return "kernel is neither an ELF (PVH) nor a bzImage (no \"HdrS\" setup header)"
        case let .bzImageProtocolTooOld(version):
            return "bzImage uses boot protocol \(BzImage.format(version)); malvvm needs \(BzImage.format(BzImage.minimumVersion)) or later"
        case let .truncatedBzImage(what):
            return "bzImage is truncated or corrupt: \(what)"
        case .bzImageNotLoadedHigh:
            return "bzImage is a zImage (LOADED_HIGH clear): only kernels loaded at 1 MiB are supported"
        case let .bzImageWithout64BitEntry(version):
            return "bzImage has no 64-bit entry point (XLF_KERNEL_64 clear, protocol \(BzImage.format(version))): boot a 64-bit kernel of protocol 2.12 or later"
        case let .kernelDoesNotFit(address, size, memory):
            return "kernel needs \(MemorySize.format(size)) from 0x\(String(address, radix: 16)) but the VM has \(MemorySize.format(memory)) of RAM below 3 GiB; give the VM more memory"
        case .emptyInitrd:
            return "initrd is empty"
        case let .initrdDoesNotFit(size, space):
            return "initrd of \(MemorySize.format(size)) does not fit in the \(MemorySize.format(space)) between the kernel and the highest address it reads an initrd from; give the VM more memory"
        case let .unsupportedELF(why):
            return "unsupported ELF kernel: \(why)"
        case let .truncated(what):
            return "ELF kernel is truncated or corrupt: \(what)"
        case .noPVHEntry:
            return "ELF kernel has no PVH entry point (no XEN_ELFNOTE_PHYS32_ENTRY note); build it with PVH support"
        case .noLoadableSegments:
            return "ELF kernel has no loadable segments"
        case let .segmentOutsideMemory(address, size):
            return "ELF kernel segment at 0x\(String(address, radix: 16)) (\(size) bytes) does not fit in guest memory; give the VM more memory"
        case let .segmentInBootArea(address, size):
            return "ELF kernel segment at 0x\(String(address, radix: 16)) (\(size) bytes) overlaps the boot information area below 1 MiB"
        case let .commandLineTooLong(length, limit):
            return "kernel command line is \(length) bytes; the limit is \(limit)"
        case let .memoryMapTooLarge(entries, limit):
            return "memory map has \(entries) entries; the limit is \(limit)"
        case .bootAreaOutsideMemory:
            return "guest memory does not cover the boot information area below 1 MiB"
        }
    }
}
