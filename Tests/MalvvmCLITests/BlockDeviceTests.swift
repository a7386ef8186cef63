import Foundation
import Testing

/// virtio-blk end to end: the guest's driver against malvvm's device and against QEMU's.
@Suite(.serialized) struct BlockDeviceTests {
    /// A fresh sparse image named disk.img in its own directory, so both VMMs see the same name.
    final class Image {
        let directory: String
        var path: String { directory + "/disk.img" }

        init(size: Int = 64 << 20) throws {
            directory = NSTemporaryDirectory() + "malvvm-blk-\(getpid())-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: path, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: UInt64(size))
            try handle.close()
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }
    }

    static func qemuBlk(_ image: Image, test: String = "blk") throws -> Harness.Result {
        let raw = try Harness.run("/usr/bin/qemu-system-x86_64", [
            "-M", "q35", "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", "256M", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-drive", "file=\(image.path),if=none,id=d0,format=raw",
            // The same GET_ID answer malvvm gives: "malvvm-" + the file's name.
            "-device", "virtio-blk-pci,drive=d0,disable-legacy=on,serial=malvvm-disk.img",
            "-kernel", Harness.guest, "-append", "test=\(test)",
        ])
        let code = raw.status & 1 == 1 ? raw.status >> 1 : -raw.status
        return Harness.Result(status: code, stdout: raw.stdout, stderr: raw.stderr)
    }

    /// Lines about features a device may or may not offer (QEMU offers more) are masked.
    static func masked(_ output: String) -> [String] {
        output.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("blk: optional features:") }
    }

    @Test func blkPassesOnMalvvmAndQEMUAndLeavesIdenticalImages() throws {
        let ours = try Image(), theirs = try Image()
        let malvvm = try Harness.malvvm(["run", "--kernel", Harness.guest, "--disk", ours.path, "--cmdline", "test=blk"])
        let qemu = try Self.qemuBlk(theirs)
        #expect(malvvm.status == 0, "malvvm: \(malvvm.stdout)")
        #expect(qemu.status == 0, "qemu: \(qemu.stdout) \(qemu.stderr)")
        #expect(malvvm.stdout.contains("blk: PASS"))
        #expect(Self.masked(malvvm.stdout) == Self.masked(qemu.stdout))
        #expect(FileManager.default.contentsEqual(atPath: ours.path, andPath: theirs.path), "disk images differ")
    }

    @Test func aReadOnlyDiskIsReadButNeverWritten() throws {
        let image = try Image()
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--disk", image.path + ",readonly",
                                         "--cmdline", "test=blk"])
        #expect(result.status == 0, "\(result.stdout)")
        #expect(result.stdout.contains("RO"))
        let data = try Data(contentsOf: URL(fileURLWithPath: image.path))
        #expect(data.allSatisfy { $0 == 0 })
    }

    @Test func pciListsTheDisk() throws {
        let image = try Image()
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--disk", image.path, "--cmdline", "test=pci"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("pci 00:01.0 1af4:1042 class 01:00:00 virtio-blk"))
        #expect(result.stdout.contains("(from ACPI MCFG)"))
    }

    @Test func diskMistakesGetOneLine() throws {
        let missing = try Harness.malvvm(["run", "--kernel", Harness.guest, "--disk", "/nonexistent/disk.img"])
        #expect(missing.status == MalvvmExit.failure)
        #expect(missing.stderrLines == ["malvvm: error: cannot open disk '/nonexistent/disk.img': No such file or directory"])
        let badOption = try Harness.malvvm(["run", "--kernel", Harness.guest, "--disk", "/tmp/x.img,fast"])
        #expect(badOption.status == MalvvmExit.usage)
        #expect(badOption.stderrLines.count == 1)
    }
}

/// `--vgpu`: the para-vGPU shows up on the guest's PCI bus; bad specs are usage errors.
@Suite struct VGPUOptionTests {
    @Test func vgpusAppearOnThePCIBus() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--vgpu", "profile=4g", "--vgpu", "1g,weight=2",
                                         "--gpu", "cpu", "--cmdline", "test=pci"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("pci 00:01.0 1af4:1050 class 03:80:00 virtio-gpu"))
        #expect(result.stdout.contains("pci 00:02.0 1af4:1050 class 03:80:00 virtio-gpu"))
    }

    @Test(arguments: [["--vgpu", "profile=5x"], ["--vgpu", "4g,weight=-1"], ["--vgpu", "4g,colour=red"]])
    func badSpecsAreUsageErrors(arguments: [String]) throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest] + arguments)
        #expect(result.status == MalvvmExit.usage)
        #expect(result.stderrLines.count == 1, "\(result.stderr)")
    }

    @Test func aGPUThatDoesNotExistIsARuntimeError() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--vgpu", "4g", "--gpu", "no-such-gpu"])
        #expect(result.status == MalvvmExit.failure)
        #expect(result.stderrLines.count == 1, "\(result.stderr)")
    }
}

/// The guest's vGPU driver and client library against the para-vGPU, on each kind of backend:
/// every compute opcode checked against the guest's own CPU arithmetic, many commands in one
/// submission, two contexts, and refused foreign/unknown resources and opcodes.
@Suite(.serialized) struct VGPUGuestTests {
    @Test(arguments: ["auto", "cpu"])
    func everyKernelMatchesTheGuestsOwnArithmetic(gpu: String) throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--vgpu", "profile=4g", "--gpu", gpu,
                                         "--cmdline", "test=vgpu"])
        #expect(result.status == 0, "\(result.stdout.split(separator: "\n").filter { $0.contains("FAIL") })")
        #expect(result.stdout.contains(" 0 failed"))
        #expect(result.stdout.contains("vgpu: refuse                   A's resource from B                ... ok (ERR_INVALID_RESOURCE_ID)"))
    }

    /// A guest attacking its own vGPU: every malformed request is answered with the error the
    /// protocol defines, a second context keeps computing exactly after each group, and a
    /// descriptor outside guest RAM stops the device (NEEDS_RESET) instead of being followed.
    @Test(arguments: ["auto", "cpu"])
    func aHostileGuestGetsErrorsAndItsOtherContextKeepsComputing(gpu: String) throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--vgpu", "profile=4g", "--gpu", gpu,
                                         "--cmdline", "test=vgpu-hostile"])
        #expect(result.status == 0, "\(result.stdout.split(separator: "\n").filter { $0.contains("FAIL") })")
        #expect(result.stdout.contains(" 0 failed"))
        let cases = result.stdoutLines.filter { $0.hasPrefix("vgpu-hostile: ") && $0.contains(" ... ") }
        #expect(cases.count >= 90, "\(cases.count) cases ran")
        #expect(cases.filter { $0.contains("victim computes after") && $0.hasSuffix("0 of 1024 wrong)") }.count == 9)
        #expect(result.stdout.contains("descriptor at 1 TiB: device needs reset"))
        // The broken queue is reported once on stderr, as one line, and nothing else is.
        #expect(result.stderrLines.count == 1 && result.stderr.contains("device needs reset"), "\(result.stderr)")
    }

    @Test func withoutAVGPUTheGuestSaysSo() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--cmdline", "test=vgpu"])
        #expect(result.status == 1)
        #expect(result.stdout.contains("no virtio-gpu"))
    }
}

/// The ML job: the guest reads scikit-learn's digits from a virtio-blk disk, preprocesses and
/// trains an MLP entirely on its vGPU, and must reach the accuracy an MLP is known to reach.
@Suite(.serialized) struct TrainingTests {
    static let dataset = Harness.packageRoot.appendingPathComponent("Guest/build/digits.img").path

    @Test func anMLPTrainsOnDigitsToAtLeast95Percent() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--memory", "512M", "--disk", Self.dataset + ",readonly",
                                         "--vgpu", "profile=4g", "--cmdline", "test=train"], timeout: 300)
        #expect(result.status == 0, "\(result.stdout.suffix(600))")
        #expect(result.stdout.contains("train: PASS"))
        let accuracy = result.stdoutLines.first { $0.hasPrefix("train: final test accuracy") }
            .flatMap { Double($0.split(separator: " ").last?.dropLast() ?? "") }
        #expect((accuracy ?? 0) >= 95, "final accuracy \(String(describing: accuracy))")
    }
}

/// The native baseline runs the identical job: on the CPU backend its losses and accuracies
/// equal the guest's to the last printed digit, epoch by epoch.
@Suite(.serialized) struct NativeBaselineTests {
    static func epochs(_ output: String) -> [String] {
        output.split(separator: "\n").filter { $0.hasPrefix("train: epoch") }.map { line in
            String(line[..<(line.range(of: " time ")?.lowerBound ?? line.endIndex)])
        }
    }

    @Test func nativeAndInVMTrainingAgreeExactly() throws {
        let native = try Harness.malvvm(["bench", "native", "--gpu", "cpu", "--epochs", "3",
                                         "--dataset", TrainingTests.dataset], timeout: 300)
        let guest = try Harness.malvvm(["run", "--kernel", Harness.guest, "--memory", "512M",
                                        "--disk", TrainingTests.dataset + ",readonly", "--vgpu", "profile=4g", "--gpu", "cpu",
                                        "--cmdline", "test=train epochs=3"], timeout: 300)
        #expect(Self.epochs(native.stdout).count == 3, "\(native.stdout) \(native.stderr)")
        #expect(Self.epochs(native.stdout) == Self.epochs(guest.stdout))
    }

    /// A job that fails prints what the guest prints (ending in 'train: FAIL') on stdout, and the
    /// reason once on stderr; it exits 70, where the guest exits 1.
    @Test func aFailedJobSaysWhyOnStderrAndExits70() throws {
        // One epoch of six big batches cannot reach 95 % (the job is deterministic on the CPU).
        let weak = try Harness.malvvm(["bench", "native", "--gpu", "cpu", "--epochs", "1", "--batch", "256",
                                       "--dataset", TrainingTests.dataset], timeout: 300)
        let guest = try Harness.malvvm(["run", "--kernel", Harness.guest, "--memory", "512M",
                                        "--disk", TrainingTests.dataset + ",readonly", "--vgpu", "profile=4g", "--gpu", "cpu",
                                        "--cmdline", "test=train epochs=1 batch=256"], timeout: 300)
        #expect(guest.status == 1 && guest.stdoutLines.contains("train: FAIL"), "\(guest.stdout.suffix(400))")
        #expect(weak.status == MalvvmExit.failure, "\(weak.stdout.suffix(400)) \(weak.stderr)")
        #expect(weak.stdoutLines.contains("train: FAIL") && !weak.stdout.contains("PASS"), "\(weak.stdout)")
        let accuracy = try #require(weak.stdoutLines.first { $0.hasPrefix("train: final test accuracy ") })
        #expect(accuracy == guest.stdoutLines.first { $0.hasPrefix("train: final test accuracy ") })
        #expect(weak.stderrLines.count == 1 && weak.stderr.hasPrefix("malvvm: error: bench native: final test accuracy ")
                && weak.stderr.contains("is below 95%"), "\(weak.stderr)")

        let missing = try Harness.malvvm(["bench", "native", "--gpu", "cpu", "--dataset", "/nonexistent/digits.img"])
        #expect(missing.status == MalvvmExit.failure, "\(missing.stderr)")
        #expect(missing.stdoutLines.filter { !$0.isEmpty }.last == "train: FAIL", "\(missing.stdout)")
        #expect(missing.stderrLines.count == 1 && missing.stderr.hasPrefix("malvvm: error: bench native: ")
                && missing.stderr.contains("/nonexistent/digits.img"), "\(missing.stderr)")
    }
}
