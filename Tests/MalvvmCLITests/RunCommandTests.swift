import Foundation
import Testing

/// `malvvm run` end to end: the real binary, real /dev/kvm, the real test guest.
@Suite(.serialized) struct RunCommandTests {
    @Test(arguments: [Harness.guest, Harness.guest32])
    func helloPrintsTheBannerAndExitsZero(kernel: String) throws {
        let result = try Harness.boot("hello", kernel: kernel)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdoutLines.first == "malvguest: hello from ring 3 (PVH entry, x86-64 long mode)")
        #expect(result.stdout.contains("cmdline: 'test=hello'"))
        #expect(result.stdout.contains("hello: ok"))
        #expect(result.stderr.isEmpty)
    }

    @Test func selftestPassesEveryCheck() throws {
        let result = try Harness.boot("selftest")
        #expect(result.status == 0, "output: \(result.stdout)")
        #expect(result.stdout.contains("selftest: 4 passed, 0 failed"))
    }

    @Test func theGuestExitCodeBecomesTheProcessExitCode() throws {
        let result = try Harness.boot("no-such-test")
        #expect(result.status == 2)
        #expect(result.stdout.contains("unknown test 'no-such-test'"))
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }

    @Test func sigintStopsTheVMCleanly() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--cmdline", "test=idle"], interruptAfter: 1.0)
        #expect(result.status == 128 + SIGINT)
        #expect(result.stdout.contains("idle: running"))
        #expect(result.stderrLines == ["malvvm: VM stopped by signal 2"])
    }

    @Test func logLevelDebugReportsExitCounts() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--cmdline", "test=hello", "--log-level", "debug"])
        #expect(result.status == 0)
        #expect(result.stderr.contains("VM ended"))
    }
}

/// The exit-code scheme: a guest's code passes through when it is 0-63 and is reported as 63
/// above that; malvvm's own outcomes (64 usage, 70 failure, 71 guest fault, 128+N signal) never
/// collide with a code a guest passes through.
@Suite(.serialized) struct ExitCodeTests {
    /// The case: the test guest's 'unknown test' is its own code 2, a usage mistake used
    /// to be 2 as well. Now each outcome has a status of its own, and only malvvm's say so on stderr.
    @Test func aGuestCodeAndMalvvmsOwnNeverLookAlike() throws {
        let guest = try Harness.boot("no-such-test")
        #expect(guest.status == 2 && guest.stderr.isEmpty, "\(guest.status) \(guest.stderr)")
        let usage = try Harness.malvvm(["run", "--kernel", Harness.guest, "--frobnicate"])
        #expect(usage.status == MalvvmExit.usage && usage.stderrLines.count == 1, "\(usage.status) \(usage.stderr)")
        let failure = try Harness.malvvm(["run", "--kernel", "/nonexistent/guest.elf"])
        #expect(failure.status == MalvvmExit.failure && failure.stderrLines.count == 1, "\(failure.status) \(failure.stderr)")
        // A guest that exits with malvvm's usage code does not pass as a usage mistake.
        let kernel = try TinyKernel(exitCode: UInt32(MalvvmExit.usage))
        defer { kernel.remove() }
        let high = try Harness.malvvm(["run", "--kernel", kernel.path, "--memory", "16M", "--api-socket", "none"])
        #expect(high.status == MalvvmExit.guestCodeLimit, "\(high.status) \(high.stderr)")
        #expect(Set([guest.status, usage.status, failure.status, high.status]).count == 4)
        #expect(guest.status <= MalvvmExit.guestCodeLimit && high.status <= MalvvmExit.guestCodeLimit)
        #expect([usage.status, failure.status].allSatisfy { $0 > MalvvmExit.guestCodeLimit })
    }

    @Test(arguments: [0, 1, 2, 42, 63] as [UInt32])
    func guestCodesUpTo63PassThroughUnchanged(code: UInt32) throws {
        let kernel = try TinyKernel(exitCode: code)
        defer { kernel.remove() }
        let result = try Harness.malvvm(["run", "--kernel", kernel.path, "--memory", "16M", "--api-socket", "none"])
        #expect(result.status == Int32(code) && result.stderr.isEmpty, "\(result.status) \(result.stderr)")
    }

    /// A code ≥ 64 exits 63 and says the real code on stderr; `--metrics` has it exactly.
    @Test(arguments: [64, 70, 127, 255, 256, 0x336e_c578] as [UInt32])
    func guestCodesFrom64AreReportedAs63(code: UInt32) throws {
        let kernel = try TinyKernel(exitCode: code)
        defer { kernel.remove() }
        let metrics = NSTemporaryDirectory() + "malvvm-exit-\(getpid())-\(code).json"
        defer { unlink(metrics) }
        let result = try Harness.malvvm(["run", "--kernel", kernel.path, "--memory", "16M", "--api-socket", "none",
                                         "--metrics", metrics])
        #expect(result.status == MalvvmExit.guestCodeLimit)
        #expect(result.stderrLines == ["malvvm: the guest exited with code \(code) (reported as 63)"], "\(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: metrics))) as? [String: Any]
        #expect((report?["guest_exit_code"] as? NSNumber)?.uint32Value == code, "\(String(describing: report))")
        #expect(report?["exit_status"] as? Int == 63 && report?["end"] as? String == "guest_exit")
    }

    /// A triple fault (ud2 with no IDT) is the guest faulting: 71, the registers on stderr, and
    /// no guest code in the metrics.
    @Test func aGuestFaultExits71WithTheRegisters() throws {
        let kernel = try TinyKernel(code: [0x0f, 0x0b])
        defer { kernel.remove() }
        let metrics = NSTemporaryDirectory() + "malvvm-fault-\(getpid()).json"
        defer { unlink(metrics) }
        let result = try Harness.malvvm(["run", "--kernel", kernel.path, "--memory", "16M", "--api-socket", "none",
                                         "--metrics", metrics])
        #expect(result.status == MalvvmExit.guestFault, "\(result.stderr)")
        #expect(result.stderrLines.first?.hasPrefix("malvvm: error: guest fault: ") == true, "\(result.stderr)")
        #expect(result.stderr.contains("rip="), "\(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: metrics))) as? [String: Any]
        #expect(report?["guest_exit_code"] is NSNull, "\(String(describing: report))")
        #expect(report?["exit_status"] as? Int == 71 && report?["end"] as? String == "fault")
    }
}

/// Every mistake gets one line on stderr and the right exit code: 64 for usage, 70 for runtime.
@Suite struct CommandLineErrorTests {
    static let usageMistakes: [[String]] = [
        ["run"],  // no --kernel
        ["run", "--kernel", Harness.guest, "--memory", "0"],
        ["run", "--kernel", Harness.guest, "--memory", "lots"],
        ["run", "--kernel", Harness.guest, "--memory", "64T"],
        ["run", "--kernel", Harness.guest, "--frobnicate"],
        ["run", "--kernel", Harness.guest, "--log-level", "loud"],
        ["fly"],
    ]

    @Test(arguments: usageMistakes)
    func usageMistakesExitUsageWithOneLine(arguments: [String]) throws {
        let result = try Harness.malvvm(arguments)
        #expect(result.status == MalvvmExit.usage)
        #expect(result.stderrLines.count == 1, "stderr: \(result.stderr)")
        #expect(result.stderr.hasPrefix("malvvm: error: "))
        #expect(result.stdout.isEmpty)
    }

    @Test func missingKernelFileIsARuntimeFailure() throws {
        let result = try Harness.malvvm(["run", "--kernel", "/nonexistent/guest.elf"])
        #expect(result.status == MalvvmExit.failure)
        #expect(result.stderrLines == ["malvvm: error: cannot read kernel '/nonexistent/guest.elf': No such file or directory"])
    }

    @Test func aFileThatIsNotAKernelIsARuntimeFailure() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.packageRoot.appendingPathComponent("Package.swift").path])
        #expect(result.status == MalvvmExit.failure)
        #expect(result.stderrLines == ["malvvm: error: kernel is neither an ELF (PVH) nor a bzImage (no \"HdrS\" setup header)"])
    }

    @Test func anELFWithoutAPVHNoteIsARuntimeFailure() throws {
        // The guest with its PVH note's type changed: a valid ELF that no longer says how to enter it.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Harness.guest)))
        let xen: [UInt8] = Array("Xen\0".utf8)
        var noteName: Int?
        for i in 12..<(bytes.count - 4) where bytes[i - 4] == 18 && bytes[i - 3] == 0 && Array(bytes[i..<(i + 4)]) == xen {
            noteName = i
            break
        }
        let name = try #require(noteName)
        bytes[name - 4] = 0x7f
        let path = NSTemporaryDirectory() + "malvvm-nopvh-\(getpid()).elf"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try Harness.malvvm(["run", "--kernel", path])
        #expect(result.status == MalvvmExit.failure)
        #expect(result.stderrLines.count == 1)
        #expect(result.stderr.contains("no PVH entry point"))
    }

    @Test func memoryBelowTheMinimumIsAUsageError() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--memory", "1M"])
        #expect(result.status == MalvvmExit.usage)
        #expect(result.stderr.contains("below the minimum"))
    }

    /// A valid PVH kernel whose segment needs more RAM than the VM has: a runtime error that
    /// names the segment, not a crash and not a usage error.
    @Test func aKernelTooBigForMemoryIsARuntimeFailure() throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Harness.guest)))
        // ELF64: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38; p_type at +0, p_memsz at +0x28.
        func u64(_ at: Int) -> Int { (0 ..< 8).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        let (phoff, phentsize, phnum) = (u64(0x20), u16(0x36), u16(0x38))
        let load = try #require((0 ..< phnum).map { phoff + $0 * phentsize }.first { u16($0) == 1 }, "no PT_LOAD")
        let memsz = 64 << 20  // 64 MiB of segment in a 16 MiB VM
        for i in 0 ..< 8 { bytes[load + 0x28 + i] = UInt8(truncatingIfNeeded: memsz >> (8 * i)) }
        let path = NSTemporaryDirectory() + "malvvm-big-\(getpid()).elf"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try Harness.malvvm(["run", "--kernel", path, "--memory", "16M", "--api-socket", "none"])
        #expect(result.status == MalvvmExit.failure)
        #expect(result.stderrLines.count == 1 && result.stderr.contains("does not fit in guest memory"), "\(result.stderr)")
    }

    @Test func noPermissionOnDevKVMIsARuntimeFailure() throws {
        // As the unprivileged 'nobody' user, /dev/kvm (0600 root, or 0660 kvm group) cannot be opened.
        guard getuid() == 0 else { return }  // only root can drop to another user
        // A kernel 'nobody' can read, so the only thing in the way is /dev/kvm.
        let kernel = NSTemporaryDirectory() + "malvvm-nokvm-\(getpid()).elf"
        try FileManager.default.copyItem(atPath: Harness.guest, toPath: kernel)
        defer { try? FileManager.default.removeItem(atPath: kernel) }
        chmod(kernel, 0o644)
        var kvm = stat()
        guard stat("/dev/kvm", &kvm) == 0, kvm.st_mode & 0o006 == 0 else { return }  // others may open it: nothing to refuse
        let result = try Harness.malvvm(["run", "--kernel", kernel, "--api-socket", "none"],
                                        wrapper: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        #expect(result.status == MalvvmExit.failure)
        #expect(result.stderrLines.count == 1 && result.stderr.contains("/dev/kvm"), "stderr: \(result.stderr)")
    }

    @Test func helpAndVersionExitZero() throws {
        #expect(try Harness.malvvm(["--help"]).status == 0)
        let run = try Harness.malvvm(["run", "--help"])
        #expect(run.stdout.contains("--kernel"))
        // The exit codes are documented where a user looks first.
        for line in ["0-63", "64", "70", "71", "128+N"] { #expect(run.stdout.contains(line), "\(line): \(run.stdout)") }
        #expect(try Harness.malvvm(["--version"]).stdout.hasPrefix("0."))
    }

    /// `--version` names the commit the binary was built from (scripts/build-info, which
    /// scripts/setup runs): "0.1.0 (1a2b3c4)", "-dirty" if tracked files had changes.
    @Test func versionNamesTheCommit() throws {
        let result = try Harness.malvvm(["--version"])
        #expect(result.status == 0 && result.stderr.isEmpty)
        let git = try Harness.run("/usr/bin/git", ["-C", Harness.packageRoot.path, "rev-parse", "--short", "HEAD"])
        guard git.status == 0 else {
            // Not a git checkout (a tarball): nothing to name.
            #expect(result.stdout == "0.1.0 (unknown commit)\n", "\(result.stdout)")
            return
        }
        let head = git.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(["0.1.0 (\(head))\n", "0.1.0 (\(head)-dirty)\n"].contains(result.stdout),
                "\(result.stdout) at HEAD \(head): run scripts/build-info (scripts/setup does) and build again")
    }

    /// `gpud`'s options are its default subcommand's (serve): `gpud --help` shows them all.
    @Test(arguments: [["gpud", "--help"], ["gpud", "-h"], ["gpud", "serve", "--help"]])
    func gpudHelpShowsEveryOption(arguments: [String]) throws {
        let help = try Harness.malvvm(arguments)
        #expect(help.status == 0 && help.stderr.isEmpty, "\(help.stderr)")
        for option in ["--gpu <gpu>", "--policy <policy>", "--total-weight <weight>", "--slice <time>", "--socket <path>",
                       "--profile <name:spec>", "--log-level <log-level>", "-h, --help"] {
            #expect(help.stdout.contains(option), "\(option) missing: \(help.stdout)")
        }
        #expect(help.stdout.contains("malvvm gpud status"), "\(help.stdout)")
    }

    @Test func gpudStatusHelpAndTheSubcommandList() throws {
        let status = try Harness.malvvm(["gpud", "status", "--help"])
        #expect(status.status == 0 && status.stdout.contains("--socket <path>") && status.stdout.contains("--json"), "\(status.stdout)")
        let list = try Harness.malvvm(["help", "gpud"])
        #expect(list.status == 0 && list.stdout.contains("serve (default)") && list.stdout.contains("status"), "\(list.stdout)")
    }
}

@Suite struct GPUsCommandTests {
    /// Every host has some Vulkan answer here (lavapipe at least) and no DRM or PCI GPU: each
    /// source reports, and none makes the command fail.
    @Test func listsEverySourceOrSaysItFoundNothing() throws {
        let result = try Harness.malvvm(["gpus"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("VULKAN"))
        #expect(result.stdout.contains("PCI") && result.stdout.contains("DRM"))
        #expect(result.stdout.hasSuffix("\n"))
        // NVML answers where the NVIDIA driver is, and says why not elsewhere.
        let nvmlLines = result.stdoutLines.filter { $0.hasPrefix("nvml: GPU ") || $0.hasPrefix("NVML: ") }
        #expect(!nvmlLines.isEmpty, "\(result.stdout)")
        let driverPresent = dlopen("libnvidia-ml.so.1", RTLD_NOW) != nil
        #expect(nvmlLines.allSatisfy { $0.hasPrefix(driverPresent ? "nvml: GPU " : "NVML: libnvidia-ml.so.1 not found") }, "\(nvmlLines)")
    }

    /// `gpus --json`: the same GPUs and notes as the table, and NVML's readings or why none.
    @Test func jsonListsTheSameGPUsAsTheTable() throws {
        let table = try Harness.malvvm(["gpus"])
        let result = try Harness.malvvm(["gpus", "--json"])
        #expect(result.status == 0 && result.stderr.isEmpty, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        let gpus = try #require(report["gpus"] as? [[String: Any]], "\(report)")
        // One table row per GPU, between the header and the notes.
        let rows = table.stdoutLines.dropFirst(2).prefix { $0.first?.isNumber == true }
        #expect(gpus.count == rows.count, "\(gpus) vs \(table.stdout)")
        let vulkan = gpus.flatMap { $0["vulkan"] as? [[String: Any]] ?? [] }
        #expect(!vulkan.isEmpty, "lavapipe at least: \(gpus)")
        for device in vulkan {
            #expect(device["name"] as? String != nil && device["api_version"] as? String != nil && device["type"] as? String != nil, "\(device)")
            #expect(device["vendor_id"] as? Int != nil && (device["memory_heaps"] as? [[String: Any]])?.isEmpty == false, "\(device)")
            #expect(table.stdout.contains(device["type"] as? String ?? "?"))
        }
        for gpu in gpus {
            #expect(gpu["drm"] as? [Any] != nil && gpu["vulkan"] as? [Any] != nil, "\(gpu)")
            if let pci = gpu["pci"] as? [String: Any] {
                #expect(pci["bound_to_vfio"] as? Bool != nil && pci["address"] as? String == gpu["pci_address"] as? String, "\(pci)")
            }
        }
        // A note per source that found nothing, as the table prints it.
        for (key, prefix) in [("pci_note", "PCI: "), ("drm_note", "DRM: "), ("vulkan_note", "Vulkan: ")] {
            #expect(table.stdoutLines.contains(prefix + (report[key] as? String ?? "")) == (report[key] != nil), "\(key)")
        }
        #expect(report["drm_available"] as? Bool != nil && report["pci_devices_scanned"] as? Int != nil)
        let nvml = try #require(report["nvml"] as? [String: Any])
        let driverPresent = dlopen("libnvidia-ml.so.1", RTLD_NOW) != nil
        #expect(nvml["available"] as? Bool == driverPresent && nvml["devices"] as? [Any] != nil, "\(nvml)")
        if !driverPresent { #expect((nvml["reason"] as? String)?.contains("libnvidia-ml.so.1") == true, "\(nvml)") }
    }

    /// `--metrics` carries the NVML report: the devices sampled over the run, or why none.
    @Test func metricsSayWhatNVMLSaw() throws {
        let path = NSTemporaryDirectory() + "malvvm-nvml-\(getpid())-\(UInt32.random(in: 0 ... .max)).json"
        defer { unlink(path) }
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--api-socket", "none", "--metrics", path, "--cmdline", "test=hello"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        let nvml = report?["nvml"] as? [String: Any]
        #expect(nvml?["available"] as? Bool == (dlopen("libnvidia-ml.so.1", RTLD_NOW) != nil), "\(String(describing: nvml))")
        if nvml?["available"] as? Bool == false { #expect((nvml?["reason"] as? String)?.contains("libnvidia-ml.so.1") == true) }
    }
}
