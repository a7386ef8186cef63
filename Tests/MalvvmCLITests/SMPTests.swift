import Foundation
import Testing

/// `--cpus N`: the test guest starts every CPU the MADT lists with INIT-SIPI-SIPI through the
/// in-kernel LAPIC and runs work on each (`test=smp`), under malvvm and under QEMU; the API
/// pauses, describes and stops all of them; bad counts are usage errors.
@Suite struct SMPTests {
    @Test(arguments: [1, 2, 4])
    func everyCPUStartsAndRunsItsWork(cpus: Int) throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--cpus", "\(cpus)", "--cmdline", "test=smp",
                                         "--api-socket", "none"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("smp: \(cpus) cpus in the MADT, bsp apic 0"), "\(result.stdout)")
        for index in 0..<cpus { #expect(result.stdout.contains("smp: cpu \(index) apic \(index): ok"), "\(result.stdout)") }
        #expect(result.stdout.contains("smp: PASS (\(cpus) cpus)"), "\(result.stdout)")
    }

    /// The same ELF under QEMU with -smp N prints the same lines: QEMU's MADT and LAPICs are the peer.
    @Test(arguments: [2, 4])
    func sameOutputAsQEMU(cpus: Int) throws {
        let ours = try Harness.malvvm(["run", "--kernel", Harness.guest, "--cpus", "\(cpus)", "--cmdline", "test=smp",
                                       "--api-socket", "none"])
        let qemu = try Harness.qemu("smp", smp: cpus)
        #expect(qemu.status == 0, "QEMU: \(qemu.stdout)\(qemu.stderr)")
        #expect(ours.status == qemu.status)
        // Everything but the start-up time, which is a measurement.
        func deterministic(_ text: String) -> [String] { text.split(separator: "\n").map(String.init).filter { !$0.contains("TSC cycles") } }
        #expect(deterministic(ours.stdout) == deterministic(qemu.stdout))
    }

    @Test(arguments: ["0", "-1", "two", "255", "100000"])
    func aBadCountIsAUsageError(cpus: String) throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--cpus", cpus, "--api-socket", "none"])
        #expect(result.status == MalvvmExit.usage, "\(result.stderr)")
        #expect(result.stderrLines.count == 1 && result.stderr.hasPrefix("malvvm: error: "), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
        if let count = Int(cpus), count >= 0 { #expect(result.stderr.contains("--cpus must be 1 to 254, not \(cpus)"), "\(result.stderr)") }
    }

    /// Four vCPUs, all running guest code (the APs spin after their work, the BSP holds): a pause
    /// parks every one, `vm info` counts them, shutdown ends them all.
    @Test func pauseResumeAndShutdownReachEveryVCPU() throws {
        let vm = try ControlAPITests.BackgroundVM(name: "smp-\(getpid())", vgpu: false, cmdline: "test=smp hold=1",
                                                  arguments: ["--cpus", "4"])
        #expect(vm.waitForOutput("smp: holding"), "\(vm.output)")
        let info = try vm.http("GET", "/vm").1
        #expect(info.contains("\"vcpus\":4"), "\(info)")
        #expect(try vm.malvvm(["vm", "pause", vm.socket]).status == 0)
        #expect(try vm.http("GET", "/vm").1.contains("\"state\":\"paused\""))
        #expect(try vm.malvvm(["vm", "resume", vm.socket]).status == 0)
        #expect(try vm.http("GET", "/vm").1.contains("\"state\":\"running\""))
        #expect(try vm.shutdown() == 0)
    }
}
