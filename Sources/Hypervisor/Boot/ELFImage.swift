/// The parts of an x86 ELF executable a loader needs: where its bytes go, and its PVH entry.
///
/// Both ELF32 and ELF64 are read, as QEMU does: a PVH kernel is often an ELF64 vmlinux, while
/// small test kernels are commonly ELF32 images carrying 64-bit code.
public struct ELFImage: Sendable {
    public enum Class: Sendable { case elf32, elf64 }

    public struct LoadSegment: Equatable, Sendable {
        public let physicalAddress: UInt64
        public let fileOffset: UInt64
        public let fileSize: UInt64
        public let memorySize: UInt64
    }

    static let machineX86: UInt16 = 3
    static let machineX86_64: UInt16 = 62
    static let typeExecutable: UInt16 = 2
    static let programLoad: UInt32 = 1
    static let programNote: UInt32 = 4
    /// Xen's XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit physical entry point of the PVH boot ABI.
    static let notePhys32Entry: UInt32 = 18

    public let elfClass: Class
    public let machine: UInt16
    public let entry: UInt64
    public let segments: [LoadSegment]
    public let pvhEntry: UInt32?

    public init(bytes: [UInt8]) throws(BootError) {
        let reader = ByteReader(bytes)
        guard bytes.count >= 16, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46 else {
            throw .notELF
        }
        switch bytes[4] {
        case 1: elfClass = .elf32
        case 2: elfClass = .elf64
        default: throw .unsupportedELF("unknown ELF class \(bytes[4])")
        }
        guard bytes[5] == 1 else { throw .unsupportedELF("big-endian ELF") }
        let is64 = elfClass == .elf64
        guard bytes.count >= (is64 ? 64 : 52) else { throw .truncated("ELF header") }

        let type = try reader.u16(16)
        machine = try reader.u16(18)
        guard machine == Self.machineX86 || machine == Self.machineX86_64 else {
            throw .unsupportedELF("machine \(machine) is not x86")
        }
        guard type == Self.typeExecutable else { throw .unsupportedELF("type \(type) is not an executable") }
        entry = is64 ? try reader.u64(24) : UInt64(try reader.u32(24))
        let headerOffset = is64 ? try reader.u64(32) : UInt64(try reader.u32(28))
        let headerSize = UInt64(try reader.u16(is64 ? 54 : 42))
        let headerCount = UInt64(try reader.u16(is64 ? 56 : 44))
        guard headerSize >= (is64 ? 56 : 32) else { throw .truncated("program header size \(headerSize)") }

        var segments: [LoadSegment] = []
        var pvhEntry: UInt32?
        for index in 0..<headerCount {
            let (product, overflow) = index.multipliedReportingOverflow(by: headerSize)
            guard !overflow, let base = Self.checkedSum(headerOffset, product) else { throw .truncated("program header \(index)") }
            let header = try ProgramHeader(reader, at: base, is64: is64)
            guard let fileEnd = Self.checkedSum(header.offset, header.fileSize), fileEnd <= UInt64(bytes.count) else {
                throw .truncated("segment \(index) lies beyond the end of the file")
            }
            switch header.type {
            case Self.programLoad where header.memorySize > 0:
                guard header.fileSize <= header.memorySize else { throw .truncated("segment \(index) file size exceeds memory size") }
                segments.append(LoadSegment(physicalAddress: header.physicalAddress, fileOffset: header.offset,
                                            fileSize: header.fileSize, memorySize: header.memorySize))
            case Self.programNote:
                if let found = try Self.findPVHEntry(reader, from: header.offset, size: header.fileSize) { pvhEntry = found }
            default:
                break
            }
        }
        self.segments = segments
        self.pvhEntry = pvhEntry
    }

    private struct ProgramHeader {
        let type: UInt32
        let offset: UInt64
        let physicalAddress: UInt64
        let fileSize: UInt64
        let memorySize: UInt64

        init(_ reader: ByteReader, at base: UInt64, is64: Bool) throws(BootError) {
            type = try reader.u32(base)
            if is64 {
                offset = try reader.u64(base + 8)
                physicalAddress = try reader.u64(base + 24)
                fileSize = try reader.u64(base + 32)
                memorySize = try reader.u64(base + 40)
            } else {
                offset = UInt64(try reader.u32(base + 4))
                physicalAddress = UInt64(try reader.u32(base + 12))
                fileSize = UInt64(try reader.u32(base + 16))
                memorySize = UInt64(try reader.u32(base + 20))
            }
        }
    }

    /// Walks the notes of one PT_NOTE segment (name "Xen", type 18, 4- or 8-byte address).
    private static func findPVHEntry(_ reader: ByteReader, from start: UInt64, size: UInt64) throws(BootError) -> UInt32? {
        var cursor = start
        let end = start + size
        while cursor + 12 <= end {
            let nameSize = UInt64(try reader.u32(cursor))
            let descSize = UInt64(try reader.u32(cursor + 4))
            let type = try reader.u32(cursor + 8)
            let nameStart = cursor + 12
            let descStart = nameStart + align4(nameSize)
            let next = descStart + align4(descSize)
            guard nameSize < 256, descSize < 4096, next <= end else { throw .truncated("ELF note at offset \(cursor)") }
            let name = try reader.bytes(nameStart, count: nameSize)
            if type == notePhys32Entry && name.prefix(3) == [0x58, 0x65, 0x6e] {  // "Xen"
                switch descSize {
                case 4: return try reader.u32(descStart)
                case 8:
                    let address = try reader.u64(descStart)
                    guard address <= UInt64(UInt32.max) else { throw .unsupportedELF("PVH entry above 4 GiB") }
                    return UInt32(address)
                default: throw .truncated("PVH entry note of \(descSize) bytes")
                }
            }
            cursor = next
        }
        return nil
    }

    private static func align4(_ value: UInt64) -> UInt64 { (value + 3) & ~3 }

    static func checkedSum(_ a: UInt64, _ b: UInt64) -> UInt64? {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : sum
    }
}

/// Bounds-checked little-endian reads from a file image; a read past the end is a typed error.
struct ByteReader {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func bytes(_ offset: UInt64, count: UInt64) throws(BootError) -> ArraySlice<UInt8> {
        guard let end = ELFImage.checkedSum(offset, count), end <= UInt64(bytes.count) else {
            throw .truncated("read of \(count) bytes at offset \(offset)")
        }
        return bytes[Int(offset)..<Int(end)]
    }

    func value<T: FixedWidthInteger>(_ offset: UInt64, as: T.Type) throws(BootError) -> T {
        let slice = try bytes(offset, count: UInt64(MemoryLayout<T>.size))
        var result: T = 0
        for (shift, byte) in slice.enumerated() { result |= T(byte) << (8 * shift) }
        return result
    }

    func u16(_ offset: UInt64) throws(BootError) -> UInt16 { try value(offset, as: UInt16.self) }
    func u32(_ offset: UInt64) throws(BootError) -> UInt32 { try value(offset, as: UInt32.self) }
    func u64(_ offset: UInt64) throws(BootError) -> UInt64 { try value(offset, as: UInt64.self) }
}
