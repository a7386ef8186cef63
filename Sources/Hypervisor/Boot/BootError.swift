import Glibc

public enum BootError: Error, Equatable, CustomStringConvertible, Sendable {
    case unreadable(path: String, errno: Int32)
    case notELF
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
        case let .unreadable(path, errno):
            return "cannot read kernel '\(path)': \(String(cString: strerror(errno)))"
        case .notELF:
            return "kernel is not an ELF file"
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
