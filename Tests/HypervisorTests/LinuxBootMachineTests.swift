import Glibc
import Testing
@testable import Hypervisor

/// Boots hand-built bzImages (and a PVH ELF with an initrd) on real KVM: the vCPU must arrive at
/// startup_64 in long mode with rsi = boot_params, and find the initrd where the zero page or
/// the PVH module list says.
@Suite(.serialized) struct LinuxBootMachineTests {
    func file(_ bytes: [UInt8], _ suffix: String) -> String {
        let path = "/tmp/malvvm-test-\(getpid())-\(bytes.hashValue)-\(suffix)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        return path
    }

    func boot(kernel: [UInt8], initrd: [UInt8]? = nil, memory: UInt64 = 64 << 20) throws -> MachineExit {
        let kernelPath = file(kernel, "kernel")
        defer { unlink(kernelPath) }
        var configuration = MachineConfiguration(kernelPath: kernelPath, memorySize: memory)
        if let initrd { configuration.initrdPath = file(initrd, "initrd") }
        defer { if let path = configuration.initrdPath { unlink(path) } }
        let machine = try Machine(configuration: configuration, console: MachineTests.Capture().writer)
        return try machine.run()
    }

    @Test func entersStartup64InLongModeWithBootParamsInRSI() throws {
        // mov eax, [rsi + 0x202] (the header's "HdrS") ; out 0xf4, eax ; hlt
        let code: [UInt8] = [0x8b, 0x86, 0x02, 0x02, 0, 0, 0xe7, 0xf4, 0xf4]
        #expect(try boot(kernel: TestBzImage(code: code).build()) == .guestExit(code: 0x5372_6448))
    }

    @Test func runs64BitCode() throws {
        // mov rax, 1 << 32 ; shr rax, 32 ; add eax, 41 ; out 0xf4, eax: 42 only in long mode
        // (in 32-bit mode REX.W decodes as dec eax and the immediate as two instructions).
        let code: [UInt8] = [0x48, 0xb8, 0, 0, 0, 0, 1, 0, 0, 0, 0x48, 0xc1, 0xe8, 0x20, 0x83, 0xc0, 0x29, 0xe7, 0xf4, 0xf4]
        #expect(try boot(kernel: TestBzImage(code: code).build()) == .guestExit(code: 42))
    }

    @Test func handsTheInitrdInBootParams() throws {
        // mov eax, [rsi + 0x218] (ramdisk_image) ; mov eax, [rax] ; out 0xf4, eax
        let code: [UInt8] = [0x8b, 0x86, 0x18, 0x02, 0, 0, 0x8b, 0x00, 0xe7, 0xf4, 0xf4]
        #expect(try boot(kernel: TestBzImage(code: code).build(), initrd: [42, 0, 0, 0, 9]) == .guestExit(code: 42))
    }

    @Test func handsTheInitrdAsTheFirstPVHModule() throws {
        // mov eax, [ebx + 16] (modlist_paddr) ; mov eax, [eax] (paddr) ; mov eax, [eax] ; out 0xf4, eax
        let code: [UInt8] = [0x8b, 0x43, 0x10, 0x8b, 0x00, 0x8b, 0x00, 0xe7, 0xf4, 0xf4]
        #expect(try boot(kernel: TestELF.kernel(code), initrd: [43, 0, 0, 0]) == .guestExit(code: 43))
        // nr_modules
        #expect(try boot(kernel: TestELF.kernel([0x8b, 0x43, 0x0c, 0xe7, 0xf4, 0xf4]), initrd: [1]) == .guestExit(code: 1))
    }

    @Test func refusesAnInitrdThatDoesNotFit() throws {
        do {
            _ = try boot(kernel: TestBzImage().build(), initrd: [UInt8](repeating: 1, count: 13 << 20), memory: 32 << 20)
            Issue.record("a 13 MiB initrd was placed in the 12 MiB above the kernel")
        } catch let error as HypervisorError {
            guard case .boot(.initrdDoesNotFit(size: 13 << 20, space: 12 << 20)) = error else {
                Issue.record("expected initrdDoesNotFit, got \(error)")
                return
            }
        }
    }

    @Test func refusesAnUnreadableInitrd() throws {
        var configuration = MachineConfiguration(kernelPath: "/nonexistent/kernel")
        configuration.initrdPath = "/nonexistent/initrd"
        #expect(BootError.unreadable(path: "/x", errno: ENOENT, role: .initrd).description
            == "cannot read initrd '/x': No such file or directory")
        let kernelPath = file(TestBzImage().build(), "kernel")
        defer { unlink(kernelPath) }
        configuration.kernelPath = kernelPath
        #expect(throws: HypervisorError.self) { try Machine(configuration: configuration, console: MachineTests.Capture().writer) }
    }
}
