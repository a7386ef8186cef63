import Foundation
import Glibc
import Testing

/// The MLaaS `preprocess` service end to end (docs/mlaas.md, "preprocess"): `test=preprocess`
/// enables it on the MNIST disk (Guest/build/mnist.img, from scripts/make-dataset), pulls six
/// batches augmented on the host's GPU (crossing into the second epoch's shuffle), checks each
/// against its own CPU reference, then makes every refusal it must get.
@Suite(.serialized) struct PreprocessGuestTests {
    static let dataset = Harness.packageRoot.appendingPathComponent("Guest/build/mnist.img").path

    static func run(_ extra: [String], gpu: [String] = ["--gpu", "cpu"], modules: String) -> [String] {
        ["run", "--kernel", Harness.guest, "--memory", "512M", "--vgpu", "2g", "--disk", dataset + ",readonly",
         "--mlaas-dir", modules] + gpu + extra
    }

    static func lines(_ output: String) -> [String] {
        output.split(separator: "\n").map(String.init).filter { $0.hasPrefix("preprocess: ") }
    }

    /// The six batch lines and the result line of a passing run.
    static func expectBatches(_ lines: [String], exact: Bool) {
        let batches = lines.filter { $0.hasPrefix("preprocess: batch ") }
        #expect(batches.count == 6, "\(lines)")
        for (n, line) in batches.enumerated() {
            // 4 batches an epoch (256 records): batch 4 is the first of epoch 1.
            #expect(line.hasPrefix("preprocess: batch \(n): slot \(n % 2) epoch \(n / 4) index \(n % 4): "), "\(line)")
            #expect(line.hasSuffix(" 0 label mismatches: ok"), "\(line)")
            if exact { #expect(line.contains(": 147456 of 147456 values bit-identical, max |diff| 0.000e+00,"), "\(line)") }
        }
        #expect(lines.contains { $0.hasPrefix("preprocess: result: PASS: 6 batches of 64") }, "\(lines)")
        // Eight more, each after a 20 ms step: the pipeline keeps going (timings are printed, not judged).
        #expect(lines.contains { $0.hasPrefix("preprocess: pipelined: 8 NEXTs after 20 ms steps: ") }, "\(lines)")
    }

    @Test func batchesFromTheHostsGPUEqualTheGuestsCPUReferenceAndEveryBadRequestIsRefused() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let result = try Harness.malvvm(Self.run(["--api-socket", "none", "--mlaas", "preprocess", "--cmdline", "test=preprocess"],
                                                 modules: modules.path), timeout: 300)
        let lines = Self.lines(result.stdout)
        #expect(result.status == 0, "\(result.stdout.suffix(3000))\(result.stderr)")
        #expect(lines.contains("preprocess: enable: OK"), "\(lines)")
        Self.expectBatches(lines, exact: true)
        let refused = "ERR_INVALID_PARAMETER (refused): preprocess: "
        let expected: [(String, String)] = [
            ("bad: range outside the disk", "bad pipeline: 8000 records of 785 bytes from offset 512 end beyond disk 0 (3926016 bytes)"),
            ("bad: not its disk", "bad pipeline: disk 1 is not granted to this service (the VM has 1 disk)"),
            ("bad: malformed pipeline", "bad pipeline: crop 64x64 is larger than the padded 32x32 image"),
            ("bad: images of another context", "bad destination: images resource 3 is not a resource attached to and owned by context 1 of this vGPU"),
            ("bad: images too small", "bad destination: images resource 4 is 589824 bytes; two slots of 589824 need 1179648"),
            ("bad: GUEST blob as destination", "bad destination: images resource 5 is a GUEST blob (its pages would overwrite the batches); use a HOST3D blob"),
            ("bad: no such context", "bad destination: images resource 1 is not a resource attached to and owned by context 101 of this vGPU"),
            ("bad: request op 7", "unknown request op 7 (1 NEXT), or reserved is not 0"),
            ("bad: next without a running pipeline", "no pipeline is running (enable with context, images and labels first)"),
        ]
        for (step, message) in expected {
            #expect(lines.contains("preprocess: \(step): \(refused)\(message)"), "\(step): \(lines.filter { $0.contains(step) })")
        }
        #expect(lines.contains("preprocess: disable: OK"), "\(lines)")
        #expect(lines.contains("preprocess: bad: next after disable: ERR_INVALID_PARAMETER (not enabled): service 'preprocess' is not enabled"),
                "\(lines)")
        // Mid-use: the first batch that cannot be written stops the pipeline with its reason.
        for (step, reason) in [("bad: labels unreferenced mid-use", "resource 2 is not attached to and owned by context 1"),
                               ("bad: context destroyed mid-use", "no context 1 on this vGPU")] {
            let line = lines.first { $0.hasPrefix("preprocess: \(step): ") } ?? "missing"
            #expect(line.hasPrefix("preprocess: \(step): \(refused)batch ") && line.hasSuffix(reason), "\(line)")
        }
        #expect(lines.last == "preprocess: done")
    }

    @Test func onVulkanTheBatchesAreWithinTheResizeKernelsBound() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let result = try Harness.malvvm(Self.run(["--api-socket", "none", "--mlaas", "preprocess", "--cmdline", "test=preprocess"],
                                                 gpu: [], modules: modules.path), timeout: 300)
        let lines = Self.lines(result.stdout)
        #expect(result.status == 0, "\(result.stdout.suffix(3000))\(result.stderr)")
        #expect(lines.first?.contains("within 1e-5 (Vulkan)") == true, "\(lines)")
        Self.expectBatches(lines, exact: false)
    }

    @Test func withoutPreprocessPermittedNothingRuns() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let result = try Harness.malvvm(Self.run(["--api-socket", "none", "--cmdline", "test=preprocess"], modules: modules.path))
        let lines = Self.lines(result.stdout)
        #expect(result.status == 1)
        #expect(lines.contains("preprocess: enable: ERR_INVALID_PARAMETER (not permitted): service 'preprocess' is not permitted for this VM"),
                "\(lines)")
    }

    @Test func anUnloadWhileTheGuestTrainsAnswersItsNextNEXTWithAnError() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let api = modules.path + "/vm.sock"
        let vm = try BackgroundProcess(Self.run(["--name", "ppguest", "--api-socket", api, "--mlaas", "preprocess",
                                                 "--cmdline", "test=preprocess pp_wait_unload=1"], modules: modules.path))
        #expect(vm.waitForOutput("preprocess: waiting for unload", timeout: 240), "\(vm.output)")
        let unload = try Harness.malvvm(["mlaas", "unload", "--api", api, "preprocess"])
        #expect(unload.status == 0, "\(unload.stderr)")
        #expect(vm.waitForOutput("preprocess: done"), "\(vm.output)")
        #expect(vm.finish(within: 30) == 0)
        let lines = Self.lines(vm.output)
        Self.expectBatches(lines, exact: true)
        #expect(lines.contains("preprocess: next after unload: ERR_UNSPEC (not loaded): service 'preprocess' is not loaded"), "\(lines)")
    }
}
