import CKVM
import Glibc

/// An open /dev/kvm: capability queries and VM creation.
public final class KVMSystem: @unchecked Sendable {
    public static let defaultPath = "/dev/kvm"
    /// KVM_GET_API_VERSION has returned 12 since Linux 2.6.22; anything else is not a KVM we know.
    static let expectedAPIVersion: Int32 = 12

    let fd: Int32
    public let vcpuMmapSize: Int

    public init(path: String = KVMSystem.defaultPath) throws(HypervisorError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .kvmUnavailable(path: path, errno: errno) }
        let version = ckvm_get_api_version(fd)
        guard version == Self.expectedAPIVersion else {
            close(fd)
            throw version < 0 ? .system(SystemError("KVM_GET_API_VERSION", errno: -version)) : .kvmAPIVersion(Int(version))
        }
        let mmapSize = ckvm_get_vcpu_mmap_size(fd)
        guard mmapSize > 0 else {
            close(fd)
            throw .system(SystemError("KVM_GET_VCPU_MMAP_SIZE", errno: -mmapSize))
        }
        self.fd = fd
        self.vcpuMmapSize = Int(mmapSize)
    }

    deinit { close(fd) }

    public func checkExtension(_ capability: Int32) -> Int32 {
        max(0, ckvm_check_extension(fd, capability))
    }

    /// How many vCPUs one VM may have: KVM_CAP_MAX_VCPUS, else the recommended KVM_CAP_NR_VCPUS,
    /// else the 4 that api.rst promises when neither is reported.
    public var maximumVCPUs: Int {
        let maximum = checkExtension(Int32(KVM_CAP_MAX_VCPUS))
        if maximum > 0 { return Int(maximum) }
        let recommended = checkExtension(Int32(KVM_CAP_NR_VCPUS))
        return recommended > 0 ? Int(recommended) : 4
    }

    /// The CPUID leaves this host's KVM can present to a guest.
    public func supportedCPUID() throws(HypervisorError) -> [kvm_cpuid_entry2] {
        var capacity: UInt32 = 256
        while true {
            var entries = [kvm_cpuid_entry2](repeating: kvm_cpuid_entry2(), count: Int(capacity))
            var count = capacity
            let result = entries.withUnsafeMutableBufferPointer { ckvm_get_supported_cpuid(fd, $0.baseAddress, &count) }
            if result == -E2BIG, capacity < 4096 {
                capacity *= 2
                continue
            }
            do { _ = try SystemError.check(result, "KVM_GET_SUPPORTED_CPUID") } catch { throw .system(error) }
            return Array(entries.prefix(Int(count)))
        }
    }

    public func createVM() throws(HypervisorError) -> KVMVirtualMachine {
        let vmFD: Int32
        do { vmFD = try SystemError.check(ckvm_create_vm(fd, 0), "KVM_CREATE_VM") } catch { throw .system(error) }
        return KVMVirtualMachine(fd: vmFD, system: self)
    }
}
