import CKVM
import Glibc

/// KVM's binary statistics (KVM_GET_STATS_FD, Linux 5.14+): the kernel's own counters of a VM or
/// vCPU, such as `exits`, `io_exits`, `mmio_exits`, `halt_exits`. Only the process that owns the
/// VM may read them, so malvvm reports them itself.
public enum KVMStatistics {
    /// Reads every counter of `fd` (a VM or vCPU descriptor) as name → first value.
    static func read(from fd: Int32) throws(SystemError) -> [String: UInt64] {
        let statsFD = try SystemError.check(ckvm_get_stats_fd(fd), "KVM_GET_STATS_FD")
        defer { close(statsFD) }
        func pread(_ count: Int, at offset: Int) throws(SystemError) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: count)
            let got = bytes.withUnsafeMutableBytes { Glibc.pread(statsFD, $0.baseAddress, count, off_t(offset)) }
            guard got == count else { throw SystemError("read KVM statistics", errno: got < 0 ? errno : EIO) }
            return bytes
        }
        func u32(_ b: [UInt8], _ o: Int) -> Int { Int(b.littleEndian(UInt32.self, at: o)) }
        // Header: flags, name_size, num_desc, id_offset, desc_offset, data_offset.
        let header = try pread(24, at: 0)
        let nameSize = u32(header, 4), count = u32(header, 8), descriptorOffset = u32(header, 16), dataOffset = u32(header, 20)
        guard nameSize > 0, nameSize <= 256, count <= 4096 else { throw SystemError("KVM statistics header", errno: EINVAL) }
        // Descriptor: flags (u32), exponent (s16), size (u16), offset (u32), bucket_size (u32), name.
        let descriptorSize = 16 + nameSize
        let descriptors = try pread(descriptorSize * count, at: descriptorOffset)
        var result: [String: UInt64] = [:]
        for index in 0..<count {
            let base = index * descriptorSize
            let size = Int(descriptors.littleEndian(UInt16.self, at: base + 6))
            let offset = u32(descriptors, base + 8)
            guard size >= 1 else { continue }
            let nameBytes = descriptors[(base + 16)..<(base + descriptorSize)].prefix { $0 != 0 }
            result[String(decoding: nameBytes, as: UTF8.self)] = try pread(8, at: dataOffset + offset).littleEndianValue
        }
        return result
    }
}

extension KVMVCPU {
    public func statistics() throws(SystemError) -> [String: UInt64] { try KVMStatistics.read(from: fd) }
}

extension KVMVirtualMachine {
    public func statistics() throws(SystemError) -> [String: UInt64] { try KVMStatistics.read(from: fd) }
}
