import Foundation
import Testing

/// The full-vGPU (docs/fullvgpu.md) with the guest's own driver: the kernels and the training
/// job of the para-vGPU on identical work, a hostile guest, and each G-VMCS control switched to
/// the mechanism it stands for.
@Suite(.serialized) struct FullVGPUTests {
    static let dataset = Harness.packageRoot.appendingPathComponent("Guest/build/digits.img").path

    /// Runs the guest with one full-vGPU and returns the result and the `--metrics` report.
    static func boot(_ cmdline: String, controls: String = "", gpu: String = "cpu", memory: String = "256M",
                     disk: Bool = false, timeout: TimeInterval = 180, wrapper: [String] = []) throws -> (Harness.Result, [String: Any]) {
        let metrics = FileManager.default.temporaryDirectory.appendingPathComponent("fullvgpu-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: metrics) }
        var arguments = ["run", "--kernel", Harness.guest, "--memory", memory, "--vgpu", "kind=full,profile=4g" + controls,
                         "--gpu", gpu, "--metrics", metrics, "--api-socket", "none", "--cmdline", cmdline]
        if disk { arguments += ["--disk", dataset + ",readonly"] }
        let result = try Harness.malvvm(arguments, timeout: timeout, wrapper: wrapper)
        let report = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: metrics)))) as? [String: Any]
        return (result, report ?? [:])
    }

    /// The full-vGPU's hypervisor counters from a metrics report.
    static func counters(_ report: [String: Any]) -> [String: Any] {
        ((report["vgpus"] as? [[String: Any]])?.first?["gvm"] as? [String: Any]) ?? [:]
    }

    /// N of the guest's "PREFIX N" summary line (e.g. "fullvgpu: 89 passed"), 0 when missing.
    static func count(_ result: Harness.Result, after prefix: String) -> Int {
        guard let line = result.stdoutLines.first(where: {
            $0.hasPrefix(prefix) && $0.dropFirst(prefix.count).first?.isNumber == true
        }) else { return 0 }
        return Int(line.dropFirst(prefix.count).prefix { $0.isNumber }) ?? 0
    }

    static func failures(_ result: Harness.Result) -> [String] {
        result.stdoutLines.filter { $0.contains("FAIL") || $0.contains("fail") && !$0.contains(" 0 failed") }
    }

    @Test(arguments: ["auto", "cpu"])
    func everyKernelMatchesTheGuestsOwnArithmetic(gpu: String) throws {
        let (result, _) = try Self.boot("test=fullvgpu", gpu: gpu)
        #expect(result.status == 0, "\(Self.failures(result)) \(result.stdout.suffix(800))")
        #expect(result.stdout.contains(" 0 failed"))
        #expect(Self.count(result, after: "fullvgpu: ") >= 80, "\(result.stdout.suffix(300))")
    }

    /// On a discrete GPU's path (device-local buffers the host cannot map; forced on lavapipe)
    /// the guest's pages reach the GPU as device copies straight out of and into guest RAM,
    /// imported as device memory, and every kernel still matches the guest's arithmetic.
    @Test func guestPagesTravelZeroCopyOnADiscreteGPUsPath() throws {
        let (result, report) = try Self.boot("test=fullvgpu", gpu: "auto", wrapper: ["/usr/bin/env", "MALVVM_VULKAN_STAGING=always"])
        #expect(result.status == 0, "\(Self.failures(result)) \(result.stdout.suffix(800))")
        #expect(result.stdout.contains(" 0 failed"))
        let statistics = (report["vgpus"] as? [[String: Any]])?.first?["statistics"] as? [String: Any] ?? [:]
        let zeroCopy = statistics["zero_copy_bytes"] as? Int ?? 0
        #expect(zeroCopy > 0, "\(statistics)")
    }

    /// Bad rings, unmapped and foreign addresses, malformed commands and streams: each stops the
    /// vGPU with the fault the model defines, the guest resets it and computes again, and the
    /// VMM neither crashes nor prints more than its own log lines.
    @Test func aHostileGuestGetsTheFaultsTheModelDefines() throws {
        let (result, report) = try Self.boot("test=fullvgpu-hostile")
        #expect(result.status == 0, "\(Self.failures(result)) \(result.stdout.suffix(800))")
        #expect(result.stdout.contains("fullvgpu-hostile: PASS"))
        #expect(Self.count(result, after: "fullvgpu-hostile: PASS (") >= 30, "\(result.stdout.suffix(300))")
        let faults = Self.counters(report)["faults"] as? Int ?? 0
        #expect(faults >= 10, "\(faults) faults")
    }

    /// The training job on the full-vGPU runs the para-vGPU's kernels on the same data: on the
    /// CPU backend its losses and accuracies equal the native run's, epoch by epoch.
    @Test func trainingAgreesWithTheNativeRunExactly() throws {
        let native = try Harness.malvvm(["bench", "native", "--gpu", "cpu", "--epochs", "3", "--dataset", Self.dataset],
                                        timeout: 300)
        let (guest, _) = try Self.boot("test=train gpu=full epochs=3", memory: "512M", disk: true, timeout: 300)
        #expect(guest.status == 0, "\(guest.stdout.suffix(800))")
        #expect(NativeBaselineTests.epochs(native.stdout).count == 3, "\(native.stdout) \(native.stderr)")
        #expect(NativeBaselineTests.epochs(guest.stdout) == NativeBaselineTests.epochs(native.stdout))
    }

    @Test func anMLPTrainsOnTheFullVGPUToAtLeast95Percent() throws {
        let (result, report) = try Self.boot("test=train gpu=full", memory: "512M", disk: true, timeout: 300)
        #expect(result.status == 0, "\(result.stdout.suffix(600))")
        #expect(result.stdout.contains("train: PASS"))
        // The defaults are the proposed hardware: no doorbell or completion exits.
        let counters = Self.counters(report)
        let exits = counters["exits"] as? [String: Int] ?? [:]
        #expect(exits["doorbell"] == nil && exits["completion"] == nil, "\(exits)")
        #expect((counters["doorbell_kicks"] as? Int ?? 0) > 0)
        #expect((counters["posted_notifications"] as? Int ?? 0) > 0)
    }

    /// Each control switched away from the default still computes correctly, and its cost
    /// moves to the mechanism it stands for.
    /// With the MMIO bitmap on (the default) register reads hit the read-only register page:
    /// a benchmark that reads RING_HEAD per submission makes no exits for it.
    @Test func untrappedRegisterReadsCostNoExit() throws {
        let (on, onReport) = try Self.boot("test=fullvgpubench bench_ms=20")
        let (off, offReport) = try Self.boot("test=fullvgpubench bench_ms=20", controls: ",mmio-bitmap=off")
        #expect(on.status == 0 && off.status == 0, "\(on.stdout.suffix(300)) \(off.stdout.suffix(300))")
        func submissions(_ report: [String: Any]) -> Int {
            let vgpu = (report["vgpus"] as? [[String: Any]])?.first ?? [:]
            return (vgpu["statistics"] as? [String: Any])?["submissions"] as? Int ?? 0
        }
        func registerExits(_ report: [String: Any]) -> Int { Self.counters(report)["register_exits"] as? Int ?? 0 }
        // Bitmap on: only the driver's set-up writes trap (a dozen), however many submissions
        // fit in the run; a count, not a ratio, so a loaded host that fits fewer submissions
        // into 20 ms cannot fail it.
        #expect(submissions(onReport) >= 20, "\(Self.counters(onReport))")
        #expect(registerExits(onReport) <= 16, "\(Self.counters(onReport))")
        // Bitmap off: every RING_HEAD read of every submission exits.
        #expect(registerExits(offReport) >= submissions(offReport) && submissions(offReport) >= 20,
                "\(Self.counters(offReport))")
    }

    @Test(arguments: ["doorbell-exiting=on", "mmio-bitmap=off", "nested-paging=off", "posted-completions=off"])
    func eachControlChangesOnlyTheMechanism(control: String) throws {
        let (result, report) = try Self.boot("test=fullvgpu", controls: "," + control)
        #expect(result.status == 0, "\(Self.failures(result))")
        #expect(result.stdout.contains(" 0 failed"))
        let counters = Self.counters(report)
        let exits = counters["exits"] as? [String: Int] ?? [:]
        switch control {
        case "doorbell-exiting=on":
            #expect((exits["doorbell"] ?? 0) > 0, "\(exits)")
            #expect(counters["doorbell_kicks"] as? Int == 0)
        case "mmio-bitmap=off":
            // Register reads reach the hypervisor's handler too (untrappedRegisterReadsCostNoExit
            // measures the difference).
            #expect((exits["mmio_access"] ?? 0) > 0, "\(exits)")
            #expect((counters["trapped_accesses"] as? Int ?? 0) > (counters["direct_accesses"] as? Int ?? 0) / 100, "\(counters)")
        case "posted-completions=off":
            #expect((exits["completion"] ?? 0) > 0, "\(exits)")
            #expect(counters["posted_notifications"] as? Int == 0)
        default:
            #expect(exits["gept_violation"] == nil, "\(exits)")
        }
    }

    @Test(arguments: [
        ["--vgpu", "kind=full,gpud,profile=1g"],
        ["--vgpu", "profile=1g,nested-paging=off"],
        ["--vgpu", "kind=full,nested-paging=maybe"],
        ["--vgpu", "kind=fullest"],
    ])
    func badFullVGPUOptionsAreUsageErrorsWithOneLine(arguments: [String]) throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest] + arguments)
        #expect(result.status == MalvvmExit.usage)
        #expect(result.stderrLines.count == 1, "\(result.stderr)")
    }
}
