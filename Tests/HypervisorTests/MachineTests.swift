import Platform
import Glibc
import Synchronization
import Testing
@testable import Hypervisor

/// Boots tiny hand-assembled 32-bit guests on real KVM: each checks one path of the run loop
/// without depending on the C test guest.
@Suite(.serialized) struct MachineTests {
    final class Capture: Sendable {
        let bytes = Mutex<[UInt8]>([])
        var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
        var writer: ConsoleWriter { ConsoleWriter { chunk in self.bytes.withLock { $0 += chunk } } }
    }

    func boot(_ code: [UInt8], elfClass: TestELF.Class = .elf64, memory: UInt64 = 16 << 20,
              commandLine: String = "") throws -> (Machine, Capture) {
        let path = "/tmp/malvvm-test-\(getpid())-\(code.hashValue).elf"
        let image = TestELF.kernel(code, elfClass: elfClass)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        _ = image.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(path) }
        let capture = Capture()
        let machine = try Machine(configuration: MachineConfiguration(kernelPath: path, commandLine: commandLine,
                                                                      memorySize: memory),
                                  console: capture.writer)
        return (machine, capture)
    }

    // mov dx, 0x3f8 ; mov al, 'O' ; out dx, al ; mov al, 'K' ; out dx, al ; mov al, 10 ; out dx, al
    let printOK: [UInt8] = [0x66, 0xba, 0xf8, 0x03, 0xb0, 0x4f, 0xee, 0xb0, 0x4b, 0xee, 0xb0, 0x0a, 0xee]
    // mov eax, 42 ; out 0xf4, eax ; hlt
    let exit42: [UInt8] = [0xb8, 0x2a, 0, 0, 0, 0xe7, 0xf4, 0xf4]

    @Test(arguments: [TestELF.Class.elf32, .elf64])
    func runsAGuestThatPrintsAndExits(elfClass: TestELF.Class) throws {
        let (machine, console) = try boot(printOK + exit42, elfClass: elfClass)
        #expect(try machine.run() == .guestExit(code: 42))
        #expect(console.text == "OK\n")
        #expect(machine.statistics.portIO == 4)
    }

    @Test func handsTheGuestStartInfoInEBX() throws {
        // mov eax, [ebx] (start_info magic) ; out 0xf4, eax
        let (machine, _) = try boot([0x8b, 0x03, 0xe7, 0xf4, 0xf4], commandLine: "x=1")
        #expect(try machine.run() == .guestExit(code: 0x336e_c578))
    }

    /// String I/O reaches the bus element by element, whether KVM batches it in one exit or
    /// (as PVM does) exits once per byte.
    @Test func stringOutputDeliversEveryByte() throws {
        // mov esi, msg ; mov ecx, 3 ; mov dx, 0x3f8 ; rep outsb ; <exit 42> ; msg: "ab\n"
        let message: [UInt8] = Array("ab\n".utf8)
        let prefixLength = 5 + 5 + 4 + 2
        let messageAddress = UInt32(0x10_0000 + prefixLength + exit42.count)
        var code: [UInt8] = [0xbe]
        code.appendLittleEndian(messageAddress)
        code += [0xb9, 3, 0, 0, 0, 0x66, 0xba, 0xf8, 0x03, 0xf3, 0x6e]
        let (machine, console) = try boot(code + exit42 + message)
        #expect(try machine.run() == .guestExit(code: 42))
        #expect(console.text == "ab\n")
        #expect(machine.statistics.portIO >= 2)
    }

    @Test func reportsATripleFaultWithRegisters() throws {
        // ud2 with no IDT: #UD cannot be delivered, #DF neither, so the CPU shuts down.
        let (machine, _) = try boot([0x0f, 0x0b])
        guard case let .fault(reason, details) = try machine.run() else {
            Issue.record("expected a fault")
            return
        }
        #expect(!reason.isEmpty)
        #expect(details.contains("rip="))
    }

    @Test func stopsASpinningGuestOnRequest() throws {
        let (machine, _) = try boot([0xeb, 0xfe])  // jmp $
        let stopper = try NativeThread {
            usleep(200_000)
            machine.requestStop(.stopped(signal: SIGTERM))
        }
        #expect(try machine.run() == .stopped(signal: SIGTERM))
        stopper.join()
    }

    @Test func unmappedPortsReadAllOnes() throws {
        // in al, 0x80 ; movzx eax, al ; out 0xf4, eax
        let (machine, _) = try boot([0xe4, 0x80, 0x0f, 0xb6, 0xc0, 0xe7, 0xf4, 0xf4])
        #expect(try machine.run() == .guestExit(code: 0xff))
    }

    @Test func refusesAKernelThatDoesNotFit() throws {
        let image = TestELF(segments: [.init(physicalAddress: 0x10_0000, bytes: [0xf4], memorySize: 8 << 20)]).build()
        let path = "/tmp/malvvm-test-\(getpid())-big.elf"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = image.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(path) }
        do {
            _ = try Machine(configuration: MachineConfiguration(kernelPath: path, memorySize: 4 << 20), console: Capture().writer)
            Issue.record("a kernel of 8 MiB was loaded into 4 MiB")
        } catch {
            // The loader's refusal, not any failure (no /dev/kvm would throw too).
            guard case .boot(.segmentOutsideMemory(address: 0x10_0000, size: 8 << 20)) = error else {
                Issue.record("expected segmentOutsideMemory, got \(error)")
                return
            }
        }
    }

    @Test func reportsAMissingKVMDevice() {
        #expect(throws: HypervisorError.self) { try KVMSystem(path: "/nonexistent/kvm") }
    }
}
