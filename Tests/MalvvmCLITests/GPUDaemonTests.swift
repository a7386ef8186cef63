import Foundation
import Glibc
import Testing

/// One GPU shared by VMs in separate processes: `malvvm gpud` and VMs started with
/// `--vgpu gpud=PATH`, end to end, on the CPU reference backend.
@Suite(.serialized) struct GPUDaemonTests {
    static let dataset = Harness.packageRoot.appendingPathComponent("Guest/build/digits.img").path

    /// A running `malvvm gpud` on a socket of its own.
    final class Daemon {
        let socket: String
        let process: BackgroundProcess

        init(_ options: [String], fileLimit: Int? = nil, logs: Bool = false) throws {
            socket = NSTemporaryDirectory() + "malvvm-gpud-\(getpid())-\(UInt32.random(in: 0 ... .max))/gpud.sock"
            process = try BackgroundProcess(["gpud", "--gpu", "cpu", "--socket", socket] + options, fileLimit: fileLimit, logs: logs)
            guard process.waitForOutput("gpud: serving", timeout: 30) else {
                throw DaemonError(message: "gpud did not start: \(process.output)")
            }
        }

        deinit {
            process.kill(SIGTERM)
            process.finish(within: 10)
            try? FileManager.default.removeItem(atPath: (socket as NSString).deletingLastPathComponent)
        }

        /// `malvvm gpud status --json`, as a JSON object.
        func status() throws -> [String: Any] {
            let result = try Harness.malvvm(["gpud", "status", "--socket", socket, "--json"])
            guard result.status == 0, let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
                throw DaemonError(message: "gpud status: \(result.stderr)")
            }
            return object
        }

        func vgpus() throws -> [[String: Any]] { try status()["vgpus"] as? [[String: Any]] ?? [] }

        /// Starts a new measuring window.
        func resetMetrics() throws {
            let result = try Harness.run("/usr/bin/curl", ["-s", "-f", "-X", "PUT", "--unix-socket", socket + ".api",
                                                           "http://localhost/v1/metrics/reset"])
            guard result.status == 0 else { throw DaemonError(message: "metrics reset failed: \(result.stderr)") }
        }

        /// Waits until `count` vGPUs have each submitted at least once.
        func waitForSubmittingVGPUs(_ count: Int, timeout: TimeInterval = 60) throws -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if try vgpus().filter({ ($0["submissions"] as? Int ?? 0) > 0 }).count >= count { return true }
                Thread.sleep(forTimeInterval: 0.05)
            }
            return false
        }
    }

    struct DaemonError: Error { let message: String }

    static func trainingVM(_ name: String, on daemon: Daemon, profile: String = "profile=2g", epochs: Int = 20) throws -> BackgroundProcess {
        try BackgroundProcess(["run", "--kernel", Harness.guest, "--memory", "512M", "--name", name, "--api-socket", "none",
                               "--disk", dataset + ",readonly", "--vgpu", "gpud=\(daemon.socket),\(profile)",
                               "--cmdline", "test=train epochs=\(epochs)"])
    }

    static func accuracy(_ output: String) -> Double? {
        output.split(separator: "\n").first { $0.hasPrefix("train: final test accuracy") }
            .flatMap { Double($0.split(separator: " ").last?.dropLast() ?? "") }
    }

    /// One daemon per socket, decided by `SOCKET.lock` (flock): a second one is refused with
    /// the holder's pid; the lock goes with the daemon, and a new one can start.
    @Test func aSecondDaemonOnTheSameSocketIsRefusedByTheLock() throws {
        let daemon = try Daemon(["--policy", "best-effort"])
        let lockFile = daemon.socket + ".lock"
        let pid = daemon.process.process.processIdentifier
        let holder = try String(contentsOfFile: lockFile, encoding: .utf8)
        #expect(holder == "\(pid)\n", "\(holder)")
        let second = try Harness.malvvm(["gpud", "--gpu", "cpu", "--socket", daemon.socket], timeout: 30)
        #expect(second.status == MalvvmExit.failure && second.stderrLines.count == 1
                && second.stderr.contains("(pid \(pid)) is already serving"), "\(second.stderr)")
        #expect(daemon.process.isRunning && (try? daemon.status()) != nil, "the first daemon still serves")
        daemon.process.kill(SIGTERM)
        _ = daemon.process.finish(within: 10)
        #expect(!FileManager.default.fileExists(atPath: lockFile), "the lock file goes with its daemon")
        let next = try BackgroundProcess(["gpud", "--gpu", "cpu", "--socket", daemon.socket])
        #expect(next.waitForOutput("gpud: serving", timeout: 30), "\(next.output)")
        next.kill(SIGTERM)
        _ = next.finish(within: 10)
    }

    /// learned-slice selected per VM in its GPU daemon (issue #17): the daemon loaded the module
    /// at start; the VM that says `--mlaas learned-slice` is attached to it while its vGPU is
    /// connected, and the module's model saw that VM's batches (its report when the VM leaves);
    /// the VM beside it, which did not select it, is not attached.
    @Test func aVMSelectsLearnedSliceInItsDaemon() throws {
        let daemon = try Daemon(["--policy", "equal-share", "--mlaas", "learned-slice", "--log-level", "info"], logs: true)
        // Long enough to be seen submitting side by side: batches of 64 SGEMMs, and of 4.
        // The plain VM is an inference-like client: one SGEMM, then 1-3 ms of think time.
        func vm(_ name: String, _ extra: [String], load: String) throws -> BackgroundProcess {
            try BackgroundProcess(["run", "--kernel", Harness.guest, "--memory", "256M", "--name", name, "--api-socket", "none",
                                   "--vgpu", "gpud=\(daemon.socket),profile=1g", "--log-level", "info"] + extra
                                  + ["--cmdline", "test=vgpuload seconds=8 depth=1 \(load)"], logs: true)
        }
        let learned = try vm("ls1", ["--mlaas", "learned-slice"], load: "batch=64")
        let plain = try vm("plain1", [], load: "batch=1 think=2000")
        #expect(try daemon.waitForSubmittingVGPUs(2), "\(daemon.process.output.suffix(600))")
        let list = try Harness.malvvm(["mlaas", "list", "--gpud", daemon.socket, "--json"])
        let services = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]
        #expect(services?.first { $0["name"] as? String == "learned-slice" }?["vms"] as? [String] == ["ls1"], "\(list.stdout)")
        #expect(learned.finish(within: 300) == 0, "\(learned.output.suffix(600))")
        #expect(plain.finish(within: 300) == 0, "\(plain.output.suffix(600))")
        // Its round trips: at most one submission per millisecond of think time, so fewer than 8,000.
        let trips = plain.output.split(separator: "\n").first { $0.hasPrefix("vgpuload: round trip p50 ") } ?? ""
        let samples = trips.split(separator: "(").last.flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
        #expect((100 ..< 8000).contains(samples), "\(trips)")
        #expect(learned.output.contains("the GPU daemon serves MLaaS learned-slice for VM 'ls1'"), "\(learned.output.suffix(900))")
        #expect(daemon.process.waitForOutput("VM 'ls1': ", timeout: 30), "\(daemon.process.output.suffix(1500))")
        let report = daemon.process.output.split(separator: "\n").first { $0.contains("VM 'ls1': ") } ?? ""
        let observed = report.split(separator: ",").first { $0.hasSuffix("batches observed") }
            .flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
        #expect(observed > 0, "the model saw none of the VM's batches: \(report)")
        #expect(!daemon.process.output.contains("VM 'plain1'"), "the VM that did not select it was attached")
        let after = try Harness.malvvm(["mlaas", "list", "--gpud", daemon.socket, "--json"])
        let left = try JSONSerialization.jsonObject(with: Data(after.stdout.utf8)) as? [[String: Any]]
        #expect(left?.first?["vms"] as? [String] == [], "detached when its vGPU left: \(after.stdout)")
    }

    @Test func threeVMsTrainOnOneDaemonWithEqualShares() throws {
        let daemon = try Daemon(["--policy", "equal-share"])
        let vms = try (1 ... 3).map { try Self.trainingVM("eq\($0)", on: daemon) }
        #expect(try daemon.waitForSubmittingVGPUs(3))
        for (index, vm) in vms.enumerated() {
            #expect(vm.finish(within: 300) == 0, "vm \(index + 1): \(vm.output.suffix(600))")
            #expect((Self.accuracy(vm.output) ?? 0) >= 95, "vm \(index + 1): \(vm.output.suffix(300))")
        }
        let status = try daemon.status()
        #expect((status["vgpus"] as? [Any])?.isEmpty == true, "every VM's vGPU left with its VM")
        #expect((status["departures"] as? [Any])?.count == 3)
        #expect((status["clients"] as? [Any])?.isEmpty == true, "no scheduler client outlives its VM")
    }

    /// Fixed share 1:1:2 of a whole GPU of weight 4: three VMs that keep their vGPUs busy
    /// (`test=vgpuload`) are charged GPU time within 2 % of 25/25/50 %. The weights are the
    /// operator's profiles; each VM only names one.
    @Test func fixedShareOneOneTwoSplitsTheGPUTime() throws {
        let daemon = try Daemon(["--policy", "fixed-share", "--total-weight", "4",
                                 "--profile", "w1:profile=1g,weight=1", "--profile", "w2:profile=1g,weight=2"])
        let weights = [1, 1, 2]
        let vms = try weights.enumerated().map { index, weight in
            try BackgroundProcess(["run", "--kernel", Harness.guest, "--name", "fs\(index)", "--api-socket", "none",
                                   "--vgpu", "gpud=\(daemon.socket),profile=w\(weight)", "--cmdline", "test=vgpuload seconds=30"])
        }
        #expect(try daemon.waitForSubmittingVGPUs(3))
        try daemon.resetMetrics()
        Thread.sleep(forTimeInterval: 4)
        let vgpus = try daemon.vgpus()
        let allRunning = vms.allSatisfy { $0.isRunning }
        #expect(allRunning, "the window must end before any load does")
        var shares: [String] = []
        for (index, weight) in weights.enumerated() {
            let vgpu = vgpus.first { $0["vm"] as? String == "fs\(index)" }
            let share = vgpu?["measured_share"] as? Double ?? -1
            shares.append(String(format: "%.4f", share))
            #expect(abs(share - Double(weight) / 4) <= 0.02, "fs\(index) weight \(weight): share \(share)")
        }
        print("gpud: fixed share 1:1:2 measured \(shares.joined(separator: " / "))")
        for vm in vms { vm.kill(SIGKILL) }
    }

    /// A VM killed mid-training: the daemon keeps serving the other two, which finish; the
    /// dead VM's clients are gone and its share is theirs.
    @Test func killingAVMLeavesTheDaemonServingTheOthers() throws {
        let daemon = try Daemon(["--policy", "equal-share"])
        let vms = try (1 ... 3).map { try Self.trainingVM("k\($0)", on: daemon) }
        #expect(try daemon.waitForSubmittingVGPUs(3))
        vms[0].kill(SIGKILL)
        vms[0].finish(within: 10)
        let deadline = Date().addingTimeInterval(10)
        var status = try daemon.status()
        while (status["departures"] as? [Any])?.isEmpty != false && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
            status = try daemon.status()
        }
        let departure = (status["departures"] as? [[String: Any]])?.first
        #expect(departure?["vm"] as? String == "k1", "\(status)")
        let clients = status["clients"] as? [[String: Any]] ?? []
        #expect(clients.count == 2 && clients.allSatisfy { abs(($0["entitled_share"] as? Double ?? 0) - 0.5) < 1e-9 }, "\(clients)")
        print("gpud: k1 released in \(departure?["release_milliseconds"] ?? "?") ms, next turn after \(departure?["handover_milliseconds"] ?? "?") ms")
        for (index, vm) in vms.dropFirst().enumerated() {
            #expect(vm.finish(within: 300) == 0, "vm \(index + 2): \(vm.output.suffix(600))")
            #expect(vm.output.contains("train: PASS"))
        }
    }

    /// The daemon dies under a training VM: the VM neither hangs nor crashes; its guest sees
    /// the device fail (DEVICE_NEEDS_RESET) and ends with an error.
    @Test func aVMOutlivesItsDaemonWithADeviceError() throws {
        let daemon = try Daemon(["--policy", "best-effort"])
        let vm = try Self.trainingVM("orphan", on: daemon, epochs: 200)
        #expect(try daemon.waitForSubmittingVGPUs(1))
        daemon.process.kill(SIGKILL)
        let status = vm.finish(within: 60)
        #expect(status != 0 && status < 128, "exit \(status): \(vm.output.suffix(600))")
        #expect(vm.output.contains("DEVICE_NEEDS_RESET"), "\(vm.output.suffix(600))")
    }

    /// `malvvm vgpu attach VM --gpud PATH`: the daemon's vGPU is hot-plugged into the running
    /// guest, used, detached, and the daemon lets it go.
    @Test func aDaemonVGPUIsHotPluggedIntoARunningGuestAndDetached() throws {
        let daemon = try Daemon(["--policy", "equal-share"])
        let api = (daemon.socket as NSString).deletingLastPathComponent + "/vm.sock"
        let vm = try BackgroundProcess(["run", "--kernel", Harness.guest, "--name", "hp", "--api-socket", api,
                                        "--cmdline", "test=hotplug"])
        #expect(vm.waitForOutput("hotplug: waiting for a device"), "\(vm.output)")
        let attach = try Harness.malvvm(["vgpu", "attach", api, "--profile", "2g", "--gpud", daemon.socket])
        #expect(attach.status == 0 && attach.stdoutLines.first == "vgpu0", "\(attach.stderr)")
        #expect(vm.waitForOutput("hotplug: vgpu in use"), "\(vm.output)")
        #expect(try daemon.vgpus().map { "\($0["vm"] ?? "")/\($0["vgpu"] ?? "")" } == ["hp/vgpu0"])
        let noDaemon = try Harness.malvvm(["vgpu", "attach", api, "--profile", "2g", "--gpud", "/nonexistent.sock"])
        #expect(noDaemon.status == MalvvmExit.failure && noDaemon.stderrLines.count == 1 && noDaemon.stderr.contains("no GPU daemon"),
                "\(noDaemon.stderr)")
        let detach = try Harness.malvvm(["vgpu", "detach", api, "vgpu0"])
        #expect(detach.status == 0, "\(detach.stderr)")
        #expect(vm.finish(within: 30) == 0, "\(vm.output)")
        #expect(vm.output.contains("hotplug: PASS"))
        #expect(try daemon.vgpus().isEmpty)
    }

    /// A burst of connections that runs gpud out of descriptors (EMFILE) once ended its accept
    /// loop for good: it now waits for descriptors to come back and serves the next VM.
    @Test func aDescriptorShortageDoesNotStopTheDaemonAccepting() throws {
        let daemon = try Daemon(["--policy", "best-effort"], fileLimit: 96)
        var burst: [Int32] = []
        for _ in 0 ..< 160 {
            let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { break }
            _ = Harness.withUnixAddress(daemon.socket) { connect(fd, $0, $1) }
            burst.append(fd)
        }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(daemon.process.isRunning)
        burst.forEach { close($0) }
        let vm = try Harness.malvvm(["run", "--kernel", Harness.guest, "--api-socket", "none",
                                     "--vgpu", "gpud=\(daemon.socket),profile=1g", "--cmdline", "test=hello"], timeout: 60)
        #expect(vm.status == 0, "\(vm.stderr)")
        #expect(try daemon.vgpus().isEmpty, "the VM's vGPU left with it")
    }

    /// A "daemon" that accepts and never answers once stalled the VM's API: attaches blocked
    /// in recvmsg on the server's cooperative threads. Now the API keeps answering while they
    /// wait, and each attach ends with one line once the hello deadline passes.
    @Test func aDaemonThatNeverAnswersDoesNotStallTheVMAPI() throws {
        let directory = NSTemporaryDirectory() + "malvvm-mute-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Listens (the kernel completes connections into its backlog) and never accepts.
        let mute = directory + "/mute.sock"
        let listener = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0)
        defer { close(listener) }
        let bound = Harness.withUnixAddress(mute) { bind(listener, $0, $1) }
        #expect(bound == 0 && listen(listener, 16) == 0)
        let api = directory + "/vm.sock"
        let vm = try BackgroundProcess(["run", "--kernel", Harness.guest, "--name", "stall", "--api-socket", api, "--cmdline", "test=idle"])
        #expect(vm.waitForOutput("idle"), "\(vm.output)")
        let attaches = try (0 ..< 4).map { _ in
            try BackgroundProcess(["vgpu", "attach", api, "--profile", "1g", "--gpud", mute])
        }
        Thread.sleep(forTimeInterval: 1)
        let started = Date()
        let info = try Harness.malvvm(["vm", "info", api], timeout: 10)
        #expect(info.status == 0 && Date().timeIntervalSince(started) < 5, "\(info.stderr)")
        for attach in attaches {
            let status = attach.finish(within: 40)
            #expect(status == MalvvmExit.failure, "attach exit \(status)")
        }
        #expect(try Harness.malvvm(["vm", "info", api], timeout: 10).status == 0)
        vm.kill(SIGTERM)
        vm.finish(within: 10)
    }

    @Test func mistakesAreOneLineErrors() throws {
        let missing = try Harness.malvvm(["run", "--kernel", Harness.guest, "--api-socket", "none",
                                          "--vgpu", "gpud=/nonexistent/gpud.sock,profile=1g", "--cmdline", "test=hello"])
        #expect(missing.status == MalvvmExit.failure && missing.stderrLines.count == 1 && missing.stderr.contains("no GPU daemon"), "\(missing.stderr)")
        let twice = try Harness.malvvm(["run", "--kernel", Harness.guest, "--vgpu", "gpud=/a,gpud=/b", "--cmdline", "test=hello"])
        #expect(twice.status == MalvvmExit.usage && twice.stderrLines.count == 1, "\(twice.stderr)")
        let status = try Harness.malvvm(["gpud", "status", "--socket", "/nonexistent/gpud.sock"])
        #expect(status.status == MalvvmExit.failure && status.stderrLines.count == 1 && status.stderr.contains("no GPU daemon API socket"), "\(status.stderr)")
        let policy = try Harness.malvvm(["gpud", "--policy", "fastest"])
        #expect(policy.status == MalvvmExit.usage && policy.stderrLines.count == 1, "\(policy.stderr)")
        let slice = try Harness.malvvm(["gpud", "--slice", "90ms"])
        #expect(slice.status == MalvvmExit.usage && slice.stderrLines.count == 1, "\(slice.stderr)")
        // A VM never sets its own share on a daemon: weight, memory and contexts are the operator's.
        let greedy = try Harness.malvvm(["run", "--kernel", Harness.guest, "--vgpu", "gpud=/a,profile=1g,weight=1e308",
                                         "--cmdline", "test=hello"])
        #expect(greedy.status == MalvvmExit.usage && greedy.stderrLines.count == 1 && greedy.stderr.contains("daemon operator's"), "\(greedy.stderr)")
        let definition = try Harness.malvvm(["gpud", "--profile", "no-colon"])
        #expect(definition.status == MalvvmExit.usage && definition.stderrLines.count == 1, "\(definition.stderr)")
        let group = try Harness.malvvm(["gpud", "--socket-group", "no-such-group-here"])
        #expect(group.status == MalvvmExit.usage && group.stderrLines.count == 1 && group.stderr.contains("no group"), "\(group.stderr)")
    }

    /// contrib/systemd's two units in miniature: systemd-socket-activate binds the vgpu-user
    /// socket and starts gpud on the first connection, as the .socket unit does; gpud serves
    /// the socket it is passed and tells the manager READY=1 (Type=notify) once its API is up;
    /// a second daemon on that socket is refused by the lock; the socket outlives the daemon.
    @Test func socketActivationStartsTheDaemonOnFirstConnectionAndReportsReady() throws {
        let directory = NSTemporaryDirectory() + "malvvm-activate-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/gpud.sock"
        // The service manager's end of sd_notify.
        let manager = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(manager) }
        #expect(Harness.withUnixAddress(directory + "/notify") { bind(manager, $0, $1) } == 0)
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        _ = setsockopt(manager, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        // Spawned by hand, not with Foundation's Process: while a Process-started
        // systemd-socket-activate (which execs gpud in place on the first connection) ran, the
        // Process-started `gpud status` below was never seen to exit.
        let command = ["/usr/bin/systemd-socket-activate", "--seqpacket", "--listen=\(path)",
                       "--setenv=NOTIFY_SOCKET=\(directory)/notify", Harness.malvvm, "gpud", "--gpu", "cpu"]
        var arguments = command.map { strdup($0) } + [nil]
        defer { for argument in arguments { free(argument) } }
        var daemon: pid_t = 0
        #expect(posix_spawn(&daemon, command[0], nil, nil, &arguments, environ) == 0)
        var ended = false
        func stop() -> Int32 {
            guard !ended else { return 0 }
            ended = true
            kill(daemon, SIGTERM)
            var status: Int32 = 0
            waitpid(daemon, &status, 0)
            return status
        }
        defer { _ = stop() }
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: path), Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        // Bound, but no daemon yet: nothing serves the API.
        #expect(!FileManager.default.fileExists(atPath: path + ".api"))

        let vm = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(vm) }
        #expect(Harness.withUnixAddress(path) { connect(vm, $0, $1) } == 0)
        var message = [UInt8](repeating: 0, count: 4096)
        let count = recv(manager, &message, message.count, 0)
        let ready = String(decoding: message.prefix(max(count, 0)), as: UTF8.self)
        #expect(ready.contains("READY=1") && ready.contains("MAINPID=\(daemon)") && ready.contains("(socket-activated)"),
                "no readiness: '\(ready)'")

        let status = try Harness.malvvm(["gpud", "status", "--socket", path, "--json"])
        #expect(status.status == 0 && status.stdout.contains("\"policy\""), "\(status.stderr)")
        let second = try Harness.malvvm(["gpud", "--gpu", "cpu", "--socket", path])
        #expect(second.status == MalvvmExit.failure && second.stderrLines.count == 1 && second.stderr.contains("is already serving"),
                "\(second.stderr)")

        #expect(stop() == 0, "gpud did not exit 0 on SIGTERM")
        // The passed socket is the manager's: the daemon leaves it in place for the next start.
        #expect(FileManager.default.fileExists(atPath: path))
    }
}
