import Foundation

// libFuzzer's entry when its own main() is not linked (scripts/fuzz links
// libclang_rt.fuzzer_no_main): runs the fuzzing loop with libFuzzer's command-line flags.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

nonisolated(unsafe) private var oneInput: (UnsafeRawBufferPointer) -> Void = { _ in }

/// The driver every fuzz target (Fuzz/<Target>/main.swift) hands its one-input function to.
public enum Fuzz {
    /// Runs libFuzzer over `body` with the process's arguments (libFuzzer's: a corpus directory,
    /// `-max_total_time=`, `-runs=`, or input files to replay). With `MALVVM_FUZZ_SEEDS=DIR` in
    /// the environment it writes `seeds` (valid examples of the format, built by the target's own
    /// encoder) as DIR/seed-N instead, for scripts/fuzz to start the corpus from.
    public static func main(seeds: () -> [[UInt8]], _ body: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
        if let directory = ProcessInfo.processInfo.environment["MALVVM_FUZZ_SEEDS"] {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for (index, seed) in seeds().enumerated() {
                _ = FileManager.default.createFile(atPath: "\(directory)/seed-\(index)", contents: Data(seed))
            }
            exit(0)
        }
        oneInput = body
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            oneInput(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        })
    }
}

/// Reads a fuzz input front to back; past its end every read is zero, so any input is usable.
public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var position = 0

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public var remaining: Int { max(bytes.count - position, 0) }
    public var isEmpty: Bool { remaining == 0 }

    public mutating func u8() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    public mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
    public mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }

    /// Up to `count` bytes (fewer at the end of the input).
    public mutating func take(_ count: Int) -> [UInt8] {
        let n = min(max(count, 0), remaining)
        defer { position += n }
        return Array(bytes[position ..< position + n])
    }

    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// Builds little-endian byte images for seeds: a guest-memory picture, a message.
public struct ByteImage {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    public mutating func put(_ value: some FixedWidthInteger, at offset: Int) {
        let size = MemoryLayout.size(ofValue: value)
        if bytes.count < offset + size { bytes += [UInt8](repeating: 0, count: offset + size - bytes.count) }
        for i in 0 ..< size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    public mutating func put(_ data: [UInt8], at offset: Int) {
        if bytes.count < offset + data.count { bytes += [UInt8](repeating: 0, count: offset + data.count - bytes.count) }
        bytes.replaceSubrange(offset ..< offset + data.count, with: data)
    }

    public mutating func append(_ value: some FixedWidthInteger) { put(value, at: bytes.count) }
    public mutating func append(_ data: [UInt8]) { put(data, at: bytes.count) }
}

/// A split virtqueue's rings packed from guest address 0 (descriptors, then the available ring,
/// then the used ring), the layout the virtqueue, virtio-blk and virtio-gpu targets read their
/// input into: a short input already describes whole chains.
public struct PackedRing {
    public let size: UInt16
    public var descriptors: UInt64 { 0 }
    public var available: UInt64 { UInt64(size) * 16 }
    public var used: UInt64 { (available + 6 + 2 * UInt64(size) + 3) & ~3 }
    /// First byte past the rings (where a seed's buffers can go).
    public var end: UInt64 { used + 6 + 8 * UInt64(size) }

    public init(size: UInt16) { self.size = size }

    /// Puts descriptor `index` into `image`.
    public func descriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0,
                           into image: inout ByteImage, table: UInt64? = nil) {
        let base = Int(table ?? descriptors) + Int(index) * 16
        image.put(address, at: base)
        image.put(length, at: base + 8)
        image.put(flags, at: base + 12)
        image.put(next, at: base + 14)
    }

    /// Offers `heads` in order (available ring entries and index).
    public func offer(_ heads: [UInt16], into image: inout ByteImage) {
        for (slot, head) in heads.enumerated() { image.put(head, at: Int(available) + 4 + 2 * (slot % Int(size))) }
        image.put(UInt16(heads.count), at: Int(available) + 2)
    }

    public static let next: UInt16 = 1, write: UInt16 = 2, indirect: UInt16 = 4
}

/// A minimal PVH ELF (one PT_LOAD at 1 MiB, a PT_NOTE with XEN_ELFNOTE_PHYS32_ENTRY): the ELF
/// loader's seed, and the kernel the full-vGPU target's machine is created with.
public func minimalPVHELF(elf64: Bool, code: [UInt8] = [0xf4]) -> [UInt8] {
    var image = ByteImage()
    let headerSize = elf64 ? 64 : 52, phSize = elf64 ? 56 : 32
    let phOffset = headerSize, noteOffset = headerSize + 2 * phSize
    let note: [UInt8] = {
        var n = ByteImage()
        n.append(UInt32(4)); n.append(UInt32(4)); n.append(UInt32(18))
        n.append(Array("Xen\0".utf8)); n.append(UInt32(0x10_0000))
        return n.bytes
    }()
    let codeOffset = noteOffset + note.count
    image.append([0x7f, 0x45, 0x4c, 0x46, elf64 ? 2 : 1, 1, 1, 0])
    image.put(UInt16(2), at: 16)                       // ET_EXEC
    image.put(UInt16(elf64 ? 62 : 3), at: 18)          // x86-64 / i386
    image.put(UInt32(1), at: 20)
    if elf64 {
        image.put(UInt64(0x10_0000), at: 24)
        image.put(UInt64(phOffset), at: 32)
        image.put(UInt16(headerSize), at: 52)
        image.put(UInt16(phSize), at: 54)
        image.put(UInt16(2), at: 56)
    } else {
        image.put(UInt32(0x10_0000), at: 24)
        image.put(UInt32(phOffset), at: 28)
        image.put(UInt16(headerSize), at: 40)
        image.put(UInt16(phSize), at: 42)
        image.put(UInt16(2), at: 44)
    }
    func programHeader(_ index: Int, type: UInt32, offset: Int, address: UInt64, fileSize: Int, memorySize: Int) {
        let base = phOffset + index * phSize
        image.put(type, at: base)
        if elf64 {
            image.put(UInt32(7), at: base + 4)
            image.put(UInt64(offset), at: base + 8)
            image.put(address, at: base + 16)
            image.put(address, at: base + 24)
            image.put(UInt64(fileSize), at: base + 32)
            image.put(UInt64(memorySize), at: base + 40)
            image.put(UInt64(4096), at: base + 48)
        } else {
            image.put(UInt32(offset), at: base + 4)
            image.put(UInt32(address), at: base + 8)
            image.put(UInt32(address), at: base + 12)
            image.put(UInt32(fileSize), at: base + 16)
            image.put(UInt32(memorySize), at: base + 20)
            image.put(UInt32(7), at: base + 24)
            image.put(UInt32(4096), at: base + 28)
        }
    }
    programHeader(0, type: 1, offset: codeOffset, address: 0x10_0000, fileSize: code.count, memorySize: 4096)
    programHeader(1, type: 4, offset: noteOffset, address: 0, fileSize: note.count, memorySize: note.count)
    image.put(note, at: noteOffset)
    image.put(code, at: codeOffset)
    return image.bytes
}
