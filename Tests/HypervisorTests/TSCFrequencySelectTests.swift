import Glibc
import Testing
@testable import Hypervisor

/// On AMD hosts the guest's MSR_K7_HWCR has TscFreqSel (bit 24) set, as real family 10h+ parts
/// do, so Linux does not report "[Firmware Bug]: TSC doesn't count with P0 frequency!".
@Suite(.serialized) struct TSCFrequencySelectTests {
    static var isAMD: Bool {
        guard let kvm = try? KVMSystem(), let leaf0 = try? kvm.supportedCPUID().first(where: { $0.function == 0 }) else {
            return false
        }
        return leaf0.ebx == 0x6874_7541 && leaf0.edx == 0x6974_6e65 && leaf0.ecx == 0x444d_4163
    }

    @Test(.enabled(if: isAMD, "MSR_K7_HWCR exists on AMD CPUs only; this host is not one"))
    func aRingZeroGuestReadsTscFreqSelSet() throws {
        // mov ecx, 0xc0010015 ; rdmsr ; shr eax, 24 ; and eax, 1 ; out 0xf4, eax
        let code: [UInt8] = [0xb9, 0x15, 0x00, 0x01, 0xc0, 0x0f, 0x32, 0xc1, 0xe8, 0x18, 0x83, 0xe0, 0x01, 0xe7, 0xf4, 0xf4]
        let image = TestELF.kernel(code)
        let path = "/tmp/malvvm-test-\(getpid())-hwcr.elf"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = image.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(path) }
        let machine = try Machine(configuration: MachineConfiguration(kernelPath: path, memorySize: 16 << 20),
                                  console: MachineTests.Capture().writer)
        #expect(try machine.run() == .guestExit(code: 1))
    }
}
