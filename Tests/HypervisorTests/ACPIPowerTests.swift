import Glibc
import Testing
@testable import Hypervisor

/// Hardware-reduced ACPI power-off and reset: the FADT names the registers, the DSDT's `_S5`
/// the sleep type, and a guest's write ends the VM as a power-off (exit 0).
@Suite(.serialized) struct ACPIPowerTests {
    func sum(_ bytes: [UInt8]) -> UInt8 { bytes.reduce(0, &+) }

    @Test func theFADTIsHardwareReducedAndNamesTheRegisters() {
        let fadt = ACPITables.fadt(dsdt: 0xf_0100)
        #expect(fadt.count == 276 && Array(fadt[0..<4]) == Array("FACP".utf8) && fadt[8] == 6)
        #expect(sum(fadt) == 0)
        func u32(_ at: Int) -> UInt32 { fadt[at..<at + 4].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * $1.offset) } }
        func u64(_ at: Int) -> UInt64 { fadt[at..<at + 8].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) } }
        #expect(u32(40) == 0xf_0100 && u64(140) == 0xf_0100)
        #expect(u32(112) & (1 << 20) != 0, "HW_REDUCED_ACPI")
        #expect(u32(112) & (1 << 10) != 0, "RESET_REG_SUP")
        // RESET_REG, SLEEP_CONTROL_REG, SLEEP_STATUS_REG: I/O space, 8 bits, at the device's ports.
        for (offset, port) in [(116, 0x602), (244, 0x600), (256, 0x601)] as [(Int, UInt64)] {
            #expect(fadt[offset] == 1 && fadt[offset + 1] == 8 && u64(offset + 4) == port)
        }
        #expect(fadt[128] == ACPIPowerControl.resetValue)
    }

    @Test func theDSDTSaysS5IsSleepType5() {
        let dsdt = ACPITables.dsdt()
        #expect(sum(dsdt) == 0)
        #expect(Array(dsdt[36...]) == [0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x07, 0x04, 0x0a, 0x05, 0, 0, 0])
    }

    @Test func onlyS5WithSleepEnableOrTheResetValueEndTheVM() {
        final class Seen: @unchecked Sendable { var requests: [ACPIPowerControl.Request] = [] }
        let seen = Seen()
        let device = ACPIPowerControl { seen.requests.append($0) }
        func write(_ offset: UInt64, _ value: UInt8) { [value].withUnsafeBytes { device.write(offset: offset, data: $0) } }
        write(0, 5 << 2)  // S5 without SLP_EN
        write(0, 3 << 2 | 1 << 5)  // S3
        write(2, 7)  // not the reset value
        #expect(seen.requests.isEmpty)
        write(0, 5 << 2 | 1 << 5)
        write(2, 1)
        #expect(seen.requests == [.powerOff, .reset])
    }

    @Test func aGuestPowerOffEndsTheVM() throws {
        // mov dx, 0x600 ; mov al, 0x34 (SLP_TYP 5 | SLP_EN) ; out dx, al ; hlt
        let image = TestELF.kernel([0x66, 0xba, 0x00, 0x06, 0xb0, 0x34, 0xee, 0xf4])
        let path = "/tmp/malvvm-test-\(getpid())-poweroff.elf"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = image.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(path) }
        let machine = try Machine(configuration: MachineConfiguration(kernelPath: path, memorySize: 16 << 20),
                                  console: MachineTests.Capture().writer)
        #expect(try machine.run() == .guestShutdown)
    }
}
