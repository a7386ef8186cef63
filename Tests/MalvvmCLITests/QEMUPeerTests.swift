import Foundation
import Testing

/// The same guest ELF under QEMU and under malvvm: serial output line by line and exit codes.
/// Only what must differ is masked: the memory map (QEMU's comes from its qboot firmware, with
/// ACPI tables, hence also an RSDP) and measured numbers (timings, counter values).
@Suite(.serialized) struct QEMUPeerTests {
    static func masked(_ output: String) -> [String] {
        var lines: [String] = []
        var inMemoryMap = false
        for line in output.split(separator: "\n").map(String.init) {
            if line.hasPrefix("memory map:") { inMemoryMap = true; lines.append("memory map: <masked>"); continue }
            if inMemoryMap && line.hasPrefix("  [") { continue }
            inMemoryMap = false
            lines.append(maskMeasurements(line))
        }
        return lines
    }

    /// Lines that report a measurement (start_info's rsdp, selftest's numbers) keep their words;
    /// each number (decimal or 0x-hex) becomes '#'.
    static func maskMeasurements(_ line: String) -> String {
        let measured = line.hasPrefix("start_info:") || (line.hasPrefix("selftest: ") && line.dropFirst(10).contains(":"))
        guard measured else { return line }
        var out = ""
        var inNumber = false
        for character in line {
            if character.isNumber || (inNumber && (character.isHexDigit || character == "x")) {
                if !inNumber { out.append("#") }
                inNumber = true
            } else {
                out.append(character)
                inNumber = false
            }
        }
        return out
    }

    @Test(arguments: ["hello", "selftest", "unknown"])
    func sameOutputAndExitCodeAsQEMU(test: String) throws {
        let ours = try Harness.boot(test)
        let qemu = try Harness.qemu(test)
        #expect(qemu.status >= 0, "QEMU failed: \(qemu.stderr)")
        #expect(ours.status == qemu.status)
        #expect(Self.masked(ours.stdout) == Self.masked(qemu.stdout))
        #expect(!Self.masked(ours.stdout).isEmpty)
    }

    @Test func bothVMMsBootTheELF32Image() throws {
        #expect(try Harness.boot("hello", kernel: Harness.guest32).status == 0)
        #expect(try Harness.qemu("hello", kernel: Harness.guest32).status == 0)
    }
}
