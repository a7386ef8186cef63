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
        #expect(vm.waitForOutput("KASLR disabled: 'nokaslr' on cmdline.", timeout: 60), "\(vm.output)")
        vm.kill(SIGTERM)
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: vmlinux),
                   "no Debian vmlinux in Guest/build/linux: run scripts/fetch-kernel"),
          .timeLimit(.minutes(3)))
    func debiansVmlinuxFindsTheInitrdTheMPTableTheFADTAndBothCPUsWithoutAFirmwareBug() throws {
        let initrd = try Self.initrd()
        defer { try? FileManager.default.removeItem(atPath: initrd) }
        let vm = try BackgroundProcess(["run", "--kernel", Self.vmlinux, "--initrd", initrd, "--memory", "512M", "--cpus", "2",
                                        "--cmdline", Self.earlyConsole, "--api-socket", "none"])
        #expect(vm.waitForOutput("smpboot: Allowing 2 CPUs", timeout: 150), "\(vm.output)")
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
}
