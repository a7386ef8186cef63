import Foundation
import Testing

/// Debian's own kernel (scripts/fetch-kernel puts it in Guest/build/linux/), as far as this
/// host's KVM lets it go (docs/linux.md): ring 0 is emulated here, so the bzImage is followed
/// into its decompressor and the vmlinux up to the lines that show what malvvm handed it.
/// Skipped, with the reason, where the kernel has not been fetched: tests never use the network.
@Suite(.serialized) struct LinuxKernelTests {
    static let directory = Harness.packageRoot.appendingPathComponent("Guest/build/linux").path
    static let bzImage = directory + "/vmlinuz"
    static let vmlinux = directory + "/vmlinux"
    static let earlyConsole = "earlyprintk=serial,ttyS0,115200 console=ttyS0 nokaslr"

    static func initrd() throws -> String {
        let path = NSTemporaryDirectory() + "malvvm-kernel-initrd-\(getpid())"
        try Data(repeating: 0x5a, count: 64 << 10).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: bzImage),
                   "no Debian bzImage in Guest/build/linux: run scripts/fetch-kernel"))
    func debiansBzImageReadsItsCommandLineInItsDecompressor() throws {
        let initrd = try Self.initrd()
        defer { try? FileManager.default.removeItem(atPath: initrd) }
        let vm = try BackgroundProcess(["run", "--kernel", Self.bzImage, "--initrd", initrd, "--memory", "512M",
                                        "--cmdline", Self.earlyConsole, "--api-socket", "none"])
        // The decompressor found boot_params in rsi, the command line through cmd_line_ptr, and
        // the serial port earlyprintk names: the 64-bit entry worked.
        #expect(vm.waitForOutput("KASLR disabled: 'nokaslr' on cmdline.", timeout: 300), "\(vm.output)")
        vm.kill(SIGTERM)
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: vmlinux),
                   "no Debian vmlinux in Guest/build/linux: run scripts/fetch-kernel"),
          .timeLimit(.minutes(8)))
    func debiansVmlinuxFindsTheInitrdTheMPTableTheFADTAndBothCPUsWithoutAFirmwareBug() throws {
        let initrd = try Self.initrd()
        defer { try? FileManager.default.removeItem(atPath: initrd) }
        let vm = try BackgroundProcess(["run", "--kernel", Self.vmlinux, "--initrd", initrd, "--memory", "512M", "--cpus", "2",
                                        "--cmdline", Self.earlyConsole, "--api-socket", "none"])
        // Minutes on a loaded host: ring 0 is emulated by this host's KVM.
        #expect(vm.waitForOutput("smpboot: Allowing 2 CPUs", timeout: 400), "\(vm.output)")
        vm.kill(SIGTERM)
        let output = vm.output
        // 512 MiB: the 64 KiB initrd ends at the top of RAM, page-aligned.
        #expect(output.contains("RAMDISK: [mem 0x1fff0000-0x1fffffff]"), "\(output)")
        #expect(output.contains("found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]"), "\(output)")
        #expect(output.contains("ACPI: FACP 0x"), "\(output)")
        #expect(output.contains("ACPI: DSDT 0x"), "\(output)")
        // HWCR.TscFreqSel is set on AMD hosts (TSCFrequencySelectTests).
        #expect(!output.contains("TSC doesn't count with P0 frequency"), "\(output)")
    }

    // MARK: The same boot lines as under QEMU (house rule 7)

    static let qemu = "/usr/bin/qemu-system-x86_64"
    /// Both kernels' command line: one serial console, and nothing that depends on the host's
    /// CPU bugs or on where KASLR puts things.
    static let comparedCommandLine = "earlyprintk=serial,ttyS0,115200 console=ttyS0 noxsave mitigations=off nokaslr"
    /// The last line compared, the one after `Memory:`: the kernel has read every table and the
    /// memory map, and set up its memory, by then (about 30 s of kernel time here; minutes on a
    /// busy host). It stops a little later, on instructions this host's KVM cannot emulate.
    static let comparedUntil = "SLUB: HWalign="

    /// A kernel log as both machines can be compared: the kernel's own lines from the first one
    /// up to `comparedUntil`, timestamps dropped, numbers masked (addresses, sizes and versions
    /// differ between any two boots; `0x…` becomes `Nx#`).
    static func masked(_ log: String) -> [String] {
        var lines: [String] = []
        // Split on newlines of every kind: the serial console ends lines with "\r\n", which is one
        // Character in Swift, so splitting on "\n" would not split them.
        for raw in log.split(whereSeparator: \.isNewline) {
            var line = String(raw).trimmingCharacters(in: .whitespacesAndNewlines)
            guard line.hasPrefix("["), let close = line.firstIndex(of: "]") else { continue }
            line = String(line[line.index(after: close)...]).trimmingCharacters(in: .whitespaces)
            line = line.replacingOccurrences(of: "0x[0-9a-fA-F]+", with: "0x#", options: .regularExpression)
            line = line.replacingOccurrences(of: "\\b[0-9a-fA-F]{8,}\\b", with: "#", options: .regularExpression)
            line = line.replacingOccurrences(of: "[0-9]+", with: "N", options: .regularExpression)
            // The marker line may still be half-written when the process is stopped: its start is
            // what both must reach.
            if raw.contains(comparedUntil) {
                lines.append(comparedUntil)
                break
            }
            lines.append(line)
        }
        return lines
    }

    /// Where the machines differ by design (docs/linux.md, "Compared with QEMU"): the memory
    /// map below 1 MiB (QEMU's microvm firmware layout) and our PCIe ECAM hole; the ACPI tables'
    /// OEM identities, and our MCFG (microvm has no PCIe); microvm's second IOAPIC against our
    /// one IOAPIC with the PC's IRQ 0 → GSI 2 override. Everything else must be the same line.
    static func isKnownDifference(_ line: String) -> Bool {
        line.hasPrefix("BIOS-eN: ") || line.range(of: "^ACPI: [A-Z]{4} Nx#", options: .regularExpression) != nil
            || line.hasPrefix("ACPI: Reserving MCFG table memory") || line.hasPrefix("IOAPIC[N]: apic_id N, version N, address Nx#, GSI N-N")
            || line.hasPrefix("ACPI: INT_SRC_OVR")
    }

    /// `kernel` booted by malvvm and by QEMU at once, the same guest CPU on both: QEMU's
    /// -cpu host without the features malvvm's no-cx16-xsave template takes away, and without
    /// arch-capabilities, which microvm's KVM exposes and ours does not.
    static func bootSideBySide(_ kernel: String) throws -> (ours: BackgroundProcess, peer: BackgroundProcess) {
        let ours = try BackgroundProcess(["run", "--kernel", kernel, "--memory", "512M", "--cpu-template", "no-cx16-xsave",
                                          "--cmdline", comparedCommandLine, "--api-socket", "none"])
        let peer = try BackgroundProcess(["-M", "microvm,x-option-roms=off,rtc=off", "-enable-kvm",
                                          "-cpu", "host,-arch-capabilities,-cx16,-xsave", "-m", "512M", "-nodefaults",
                                          "-no-user-config", "-display", "none", "-serial", "stdio", "-kernel", kernel,
                                          "-append", comparedCommandLine], executable: qemu)
        return (ours, peer)
    }

    static func tableSignatures(_ lines: [String]) -> Set<String> {
        Set(lines.compactMap { line in
            line.range(of: "^ACPI: [A-Z]{4} Nx#", options: .regularExpression).map { String(line[$0].dropFirst(6).prefix(4)) }
        })
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: vmlinux) && FileManager.default.isExecutableFile(atPath: qemu),
                   "needs Debian's vmlinux (scripts/fetch-kernel) and qemu-system-x86_64 (scripts/setup)"),
          .timeLimit(.minutes(8)))
    func debiansVmlinuxPrintsTheSameBootLinesAsUnderQEMU() throws {
        // Both run at once: the host's software KVM makes each take a minute or more.
        let (ours, peer) = try Self.bootSideBySide(Self.vmlinux)
        let oursDone = ours.waitForOutput(Self.comparedUntil, timeout: 400)
        let peerDone = peer.waitForOutput(Self.comparedUntil, timeout: 400)
        ours.kill(SIGTERM)
        peer.kill(SIGTERM)
        try #require(oursDone && peerDone, "malvvm: \(ours.output.suffix(800))\nQEMU: \(peer.output.suffix(800))")
        let (mine, theirs) = (Self.masked(ours.output), Self.masked(peer.output))
        #expect(mine.count > 40, "\(mine)")
        let compared = (mine.filter { !Self.isKnownDifference($0) }, theirs.filter { !Self.isKnownDifference($0) })
        if compared.0 != compared.1 {
            let diff = compared.0.difference(from: compared.1).map { change -> String in
                switch change {
                case let .insert(offset, line, _): "+ malvvm \(offset): \(line)"
                case let .remove(offset, line, _): "- QEMU \(offset): \(line)"
                }
            }
            Issue.record("malvvm's boot lines differ from QEMU's:\n\(diff.joined(separator: "\n"))")
        }
        // Where they differ by design: the same tables (plus our MCFG), the same RAM, an IOAPIC 0.
        #expect(Self.tableSignatures(mine) == Self.tableSignatures(theirs).union(["MCFG"]),
                "\(Self.tableSignatures(mine)) against \(Self.tableSignatures(theirs))")
        for ram in ["BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
                    "BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable",
                    "IOAPIC[0]: apic_id 0, version "] {
            #expect(ours.output.contains(ram) && peer.output.contains(ram), "\(ram)")
        }
    }

    /// The bzImage, the same way: malvvm enters its 64-bit entry, QEMU runs its real-mode setup
    /// code first (which prints `Probing EDD`, a BIOS call malvvm's boot protocol skips), and both
    /// decompressors then print the same lines; here, with ring 0 emulated, the xz decompression
    /// takes minutes, so `KASLR disabled` is the furthest line both reach in a test's time.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: bzImage) && FileManager.default.isExecutableFile(atPath: qemu),
                   "needs Debian's bzImage (scripts/fetch-kernel) and qemu-system-x86_64 (scripts/setup)"),
          .timeLimit(.minutes(6)))
    func debiansBzImagePrintsTheSameDecompressorLinesAsUnderQEMU() throws {
        let last = "KASLR disabled: 'nokaslr' on cmdline."
        let (ours, peer) = try Self.bootSideBySide(Self.bzImage)
        let oursDone = ours.waitForOutput(last, timeout: 300)
        let peerDone = peer.waitForOutput(last, timeout: 300)
        ours.kill(SIGTERM)
        peer.kill(SIGTERM)
        try #require(oursDone && peerDone, "malvvm: \(ours.output.suffix(800))\nQEMU: \(peer.output.suffix(800))")
        func decompressorLines(_ output: String) -> [String] {
            Array(output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                .filter { !$0.isEmpty && !$0.hasPrefix("malvvm:") && !$0.hasPrefix("qemu-system") }
                .prefix { !$0.hasPrefix(last) }) + [last]
        }
        // QEMU's setup code prints through the BIOS and the serial port, so its line comes doubled.
        let theirs = decompressorLines(peer.output).filter { !$0.contains("EDD") }
        #expect(decompressorLines(ours.output) == theirs, "malvvm: \(ours.output)\nQEMU: \(peer.output)")
    }
}
