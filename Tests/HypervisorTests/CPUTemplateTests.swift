import CKVM
import Glibc
import Testing
@testable import Hypervisor

/// CPU templates: Firecracker's bitmaps, how modifiers change KVM's CPUID entries, and what a
/// ring-0 guest's cpuid (which KVM answers from the vCPU's table) returns on real KVM.
@Suite(.serialized) struct CPUTemplateTests {
    @Test func parsesFirecrackerBitmaps() throws {
        // Bit 13 cleared, bit 0 set, the rest the host's.
        let bitmap = "0b" + String(repeating: "x", count: 18) + "0" + String(repeating: "x", count: 12) + "1"
        let modifier = try CPUIDModifier(leaf: 1, subleaf: 0, register: .ecx, bitmap: bitmap)
        #expect(modifier.clear == 1 << 13 && modifier.set == 1)
        for bad in ["0b1", "1111", "0b" + String(repeating: "2", count: 32), "0b" + String(repeating: "x", count: 33)] {
            #expect(throws: CPUTemplateError.self) { try CPUIDModifier(leaf: 1, subleaf: 0, register: .ecx, bitmap: bad) }
        }
    }

    @Test func noCX16XSAVEClearsTheFeatureBitsAndEmptiesLeaf0xD() {
        func entry(_ leaf: UInt32, _ subleaf: UInt32, indexed: Bool) -> kvm_cpuid_entry2 {
            var e = kvm_cpuid_entry2()
            e.function = leaf
            e.index = subleaf
            e.flags = indexed ? 1 : 0
            e.eax = .max; e.ebx = .max; e.ecx = .max; e.edx = .max
            return e
        }
        var entries = [entry(1, 0, indexed: false), entry(0xd, 0, indexed: true), entry(0xd, 1, indexed: true),
                       entry(0xd, 2, indexed: true)]
        CPUTemplate.noCX16XSAVE.apply(to: &entries)
        #expect(entries[0].ecx == ~UInt32(1 << 13 | 1 << 26 | 1 << 27 | 1 << 28) && entries[0].edx == .max)
        #expect(entries[1].eax == 0 && entries[1].ebx == 0 && entries[1].ecx == 0 && entries[1].edx == 0)
        #expect(entries[2].eax == 0 && entries[2].edx == 0)
        #expect(entries[3].eax == .max, "subleaf 2 is not in the template")
        var untouched = entries
        CPUTemplate.host.apply(to: &untouched)
        #expect(untouched.map(\.ecx) == entries.map(\.ecx))
    }

    /// mov eax, 1 ; cpuid ; mov eax, ecx ; out 0xf4, eax: the guest exits with CPUID.1:ECX.
    func leaf1ECX(_ template: CPUTemplate) throws -> UInt32 {
        let code: [UInt8] = [0xb8, 1, 0, 0, 0, 0x0f, 0xa2, 0x89, 0xc8, 0xe7, 0xf4, 0xf4]
        let image = TestELF.kernel(code)
        let path = "/tmp/malvvm-test-\(getpid())-cpuid.elf"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = image.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(path) }
        var configuration = MachineConfiguration(kernelPath: path, memorySize: 16 << 20)
        configuration.cpuTemplate = template
        let machine = try Machine(configuration: configuration, console: MachineTests.Capture().writer)
        guard case let .guestExit(code) = try machine.run() else {
            Issue.record("the cpuid guest did not exit")
            return 0
        }
        return code
    }

    /// Only the bits this host's KVM says it supports are KVM's to hide: on PVM a ring-0 cpuid
    /// reports the host CPU's own bits for the rest (XSAVE and AVX among them, docs/linux.md),
    /// whatever the vCPU's table says.
    @Test func aRingZeroGuestSeesTheTemplateForEveryBitKVMControls() throws {
        let supported = try KVMSystem().supportedCPUID().first { $0.function == 1 }?.ecx ?? 0
        let host = try leaf1ECX(.host)
        let hidden = try leaf1ECX(.noCX16XSAVE)
        #expect(host & (1 << 31) != 0, "hypervisor bit")
        for bit in [13, 26, 28] where supported & (1 << bit) != 0 {
            #expect(host & (1 << bit) != 0, "the host template passes bit \(bit) through")
            #expect(hidden & (1 << bit) == 0, "bit \(bit): hidden \(String(hidden, radix: 16)) host \(String(host, radix: 16))")
        }
        #expect(hidden | (1 << 13 | 1 << 26 | 1 << 27 | 1 << 28) == host | (1 << 13 | 1 << 26 | 1 << 27 | 1 << 28),
                "nothing else changes")
    }
}
