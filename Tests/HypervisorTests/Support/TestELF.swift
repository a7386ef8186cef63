import Hypervisor

/// Builds small ELF images in memory, so loader tests control every byte they feed in.
struct TestELF {
    enum Class { case elf32, elf64 }

    struct Segment {
        var physicalAddress: UInt64
        var bytes: [UInt8]
        var memorySize: UInt64? = nil
    }

    var elfClass: Class = .elf64
    var machine: UInt16 = 62
    var type: UInt16 = 2
    var segments: [Segment] = []
    /// nil leaves the PVH note out; `noteDescriptorSize` 8 writes a 64-bit address.
    var pvhEntry: UInt32? = 0x10_0000
    var noteDescriptorSize = 4

    var is64: Bool { elfClass == .elf64 }
    var headerSize: Int { is64 ? 64 : 52 }
    var programHeaderSize: Int { is64 ? 56 : 32 }

    func note() -> [UInt8] {
        guard let entry = pvhEntry else { return [] }
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(UInt32(4))  // "Xen\0"
        bytes.appendLittleEndian(UInt32(noteDescriptorSize))
        bytes.appendLittleEndian(UInt32(18))
        bytes += Array("Xen\0".utf8)
        if noteDescriptorSize == 8 { bytes.appendLittleEndian(UInt64(entry)) } else { bytes.appendLittleEndian(entry) }
        return bytes
    }

    func build() -> [UInt8] {
        let note = note()
        let headerCount = segments.count + (note.isEmpty ? 0 : 1)
        var dataOffset = headerSize + headerCount * programHeaderSize
        var out: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        out.appendLittleEndian(type)
        out.appendLittleEndian(machine)
        out.appendLittleEndian(UInt32(1))
        if is64 {
            out.appendLittleEndian(UInt64(pvhEntry ?? 0))
            out.appendLittleEndian(UInt64(headerSize))  // phoff
            out.appendLittleEndian(UInt64(0))  // shoff
        } else {
            out.appendLittleEndian(UInt32(pvhEntry ?? 0))
            out.appendLittleEndian(UInt32(headerSize))
            out.appendLittleEndian(UInt32(0))
        }
        out.appendLittleEndian(UInt32(0))  // flags
        out.appendLittleEndian(UInt16(headerSize))
        out.appendLittleEndian(UInt16(programHeaderSize))
        out.appendLittleEndian(UInt16(headerCount))
        out.appendLittleEndian(UInt16(0))
        out.appendLittleEndian(UInt16(0))
        out.appendLittleEndian(UInt16(0))
        precondition(out.count == headerSize)

        var payload: [UInt8] = []
        func programHeader(type: UInt32, offset: Int, address: UInt64, fileSize: Int, memorySize: UInt64) {
            if is64 {
                out.appendLittleEndian(type)
                out.appendLittleEndian(UInt32(5))
                out.appendLittleEndian(UInt64(offset))
                out.appendLittleEndian(address)
                out.appendLittleEndian(address)
                out.appendLittleEndian(UInt64(fileSize))
                out.appendLittleEndian(memorySize)
                out.appendLittleEndian(UInt64(4096))
            } else {
                out.appendLittleEndian(type)
                out.appendLittleEndian(UInt32(offset))
                out.appendLittleEndian(UInt32(address))
                out.appendLittleEndian(UInt32(address))
                out.appendLittleEndian(UInt32(fileSize))
                out.appendLittleEndian(UInt32(memorySize))
                out.appendLittleEndian(UInt32(5))
                out.appendLittleEndian(UInt32(4096))
            }
        }
        for segment in segments {
            programHeader(type: 1, offset: dataOffset, address: segment.physicalAddress, fileSize: segment.bytes.count,
                          memorySize: segment.memorySize ?? UInt64(segment.bytes.count))
            payload += segment.bytes
            dataOffset += segment.bytes.count
        }
        if !note.isEmpty {
            programHeader(type: 4, offset: dataOffset, address: 0, fileSize: note.count, memorySize: 0)
            payload += note
        }
        return out + payload
    }

    /// A one-segment PVH kernel at 1 MiB whose 32-bit code is `code`.
    static func kernel(_ code: [UInt8], elfClass: Class = .elf64) -> [UInt8] {
        TestELF(elfClass: elfClass, segments: [Segment(physicalAddress: 0x10_0000, bytes: code)]).build()
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    mutating func patchLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        Swift.withUnsafeBytes(of: value.littleEndian) { bytes in
            for (index, byte) in bytes.enumerated() { self[offset + index] = byte }
        }
    }
}
