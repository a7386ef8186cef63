import Foundation
import Glibc
import Testing

/// The system-call filter (issue #14, README "Hardening: confinement"): `malvvm run` and
/// `malvvm gpud` install it once set up; a forbidden call ends the process with one line and
/// exit 70; `--no-seccomp` leaves it out.
@Suite struct SeccompTests {
    /// `Seccomp:` of /proc/PID/status: 0 none, 2 a filter.
    static func seccompMode(of process: BackgroundProcess) -> String? {
        let status = (try? String(contentsOfFile: "/proc/\(process.process.processIdentifier)/status", encoding: .utf8)) ?? ""
        return status.split(separator: "\n").first { $0.hasPrefix("Seccomp:") }.map { $0.dropFirst("Seccomp:".count).trimmingCharacters(in: .whitespaces) }
    }

    @Test func aRunningVMIsFilteredUnlessToldNotTo() throws {
        for (flags, mode) in [([String](), "2"), (["--no-seccomp"], "0")] {
            let vm = try BackgroundProcess(["run", "--kernel", Harness.guest, "--api-socket", "none", "--cmdline", "test=idle"] + flags)
            // The guest runs once set-up is done; the filter goes in just before.
            #expect(vm.waitForOutput("idle", timeout: 60), "\(vm.output)")
            #expect(Self.seccompMode(of: vm) == mode, "\(flags)")
            vm.kill(SIGTERM)
            vm.finish(within: 30)
        }
    }

    @Test func aForbiddenCallEndsTheVMMWithOneLine() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--api-socket", "none", "--cmdline", "test=idle",
                                         "--seccomp-self-test"], timeout: 60)
        #expect(result.status == MalvvmExit.failure, "\(result.stderr)")
        #expect(result.stderrLines == ["malvvm: seccomp: the VMM made a forbidden system call, bpf (321); stopping (--no-seccomp to debug)"],
                "\(result.stderr)")
        // Without the filter the same call is only an error the VMM ignores, and the guest runs.
        let vm = try BackgroundProcess(["run", "--kernel", Harness.guest, "--api-socket", "none", "--cmdline", "test=idle",
                                        "--seccomp-self-test", "--no-seccomp"])
        #expect(vm.waitForOutput("idle", timeout: 60), "\(vm.output)")
        vm.kill(SIGTERM)
        vm.finish(within: 30)
    }

    @Test func theGPUDaemonIsFilteredToo() throws {
        let daemon = try GPUDaemonTests.Daemon(["--policy", "best-effort"])
        #expect(Self.seccompMode(of: daemon.process) == "2")
        // Still serving: a VM's vGPU and the API work under the filter.
        #expect((try? daemon.status()) != nil)
        let directory = NSTemporaryDirectory() + "malvvm-seccomp-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try Harness.malvvm(["gpud", "--gpu", "cpu", "--socket", directory + "/gpud.sock", "--seccomp-self-test"], timeout: 60)
        #expect(result.status == MalvvmExit.failure && result.stderr.contains("forbidden system call, bpf"), "\(result.stderr)")
    }
}
