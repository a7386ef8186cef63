import Foundation
import Testing

/// The control API end to end: a real VM serving its socket, the CLI clients, and raw HTTP
/// (curl) for what the clients never send.
@Suite(.serialized) struct ControlAPITests {
    /// A VM running `test=idle` in the background, serving its API on a socket of its own.
    final class BackgroundVM {
        let directory: String
        let socket: String
        let name: String
        private let vm: BackgroundProcess

        init(name: String = "api-test-\(getpid())", vgpu: Bool = true, cmdline: String = "test=idle",
             arguments: [String] = []) throws {
            self.name = name
            directory = NSTemporaryDirectory() + "malvvm-api-\(getpid())-\(UInt32.random(in: 0 ... .max))"
            socket = directory + "/\(name).sock"
            vm = try BackgroundProcess(["run", "--kernel", Harness.guest, "--name", name, "--api-socket", socket, "--gpu", "cpu",
                                        "--cmdline", cmdline] + (vgpu ? ["--vgpu", "2g"] : []) + arguments)
            // The socket file appears at bind(), a moment before the server accepts: wait for an answer.
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline && vm.isRunning {
                if FileManager.default.fileExists(atPath: socket), (try? http("GET", "/vm").0) == 200 { break }
                Thread.sleep(forTimeInterval: 0.02)
            }
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        func malvvm(_ arguments: [String]) throws -> Harness.Result { try Harness.malvvm(arguments) }

        /// The guest's console so far (all of it once the VM has ended).
        var output: String { vm.output }

        func waitForOutput(_ text: String, timeout: TimeInterval = 60) -> Bool { vm.waitForOutput(text, timeout: timeout) }

        /// Waits for the VM to end by itself; its exit status.
        func exitStatus(timeout: TimeInterval = 30) -> Int32 { vm.finish(within: timeout) }

        /// curl over the socket: (status, body).
        func http(_ method: String, _ path: String, body: String? = nil) throws -> (Int, String) {
            var arguments = ["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", socket, "-X", method]
            if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
            let result = try Harness.run("/usr/bin/curl", arguments + ["http://localhost/v1\(path)"])
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }

        /// Shuts the VM down through the API and returns its exit status.
        func shutdown() throws -> Int32 {
            _ = try malvvm(["vm", "shutdown", socket])
            return vm.finish(within: 10)
        }
    }

    /// The issue's scenario: a guest waiting for a vGPU gets one attached through the CLI, uses
    /// it, sees it detached and keeps running; twice, with the errors in between.
    /// Both kinds: a para-vGPU behind virtio-pci, and a full-vGPU on the G-VMCS model.
    @Test(arguments: ["para", "full"])
    func aVGPUAttachedToARunningGuestIsUsedAndDetached(kind: String) throws {
        let vm = try BackgroundVM(vgpu: false, cmdline: "test=hotplug hotplug_cycles=2")
        #expect(vm.waitForOutput("hotplug: waiting for a device"), "\(vm.output)")
        for cycle in 1 ... 2 {
            let attach = try vm.malvvm(["vgpu", "attach", vm.socket, "--profile", "2g", "--kind", kind])
            #expect(attach.status == 0 && attach.stdoutLines.first == "vgpu\(cycle - 1)", "\(attach.stdout) \(attach.stderr)")
            #expect(vm.waitForOutput(cycle == 1 ? "vgpu in use" : "vgpu in use on slot 1; waiting for the attention button\n"),
                    "\(vm.output)")
            let list = try vm.malvvm(["vgpu", "list", vm.socket])
            #expect(list.stdoutLines.contains { $0.hasPrefix("vgpu\(cycle - 1)") && $0.contains("yes") && $0.contains(kind) },
                    "\(list.stdout)")
            let detach = try vm.malvvm(["vgpu", "detach", vm.socket, "vgpu\(cycle - 1)"])
            #expect(detach.status == 0, "\(detach.stderr)")
            if cycle == 1 {
                let again = try vm.malvvm(["vgpu", "detach", vm.socket, "vgpu0"])
                #expect(again.status == MalvvmExit.failure && again.stderrLines.count == 1 && again.stderr.contains("already detached"),
                        "\(again.stderr)")
                #expect(vm.waitForOutput("waiting for a device (cycle 2"), "\(vm.output)")
            }
        }
        #expect(vm.exitStatus() == 0, "\(vm.output)")
        #expect(vm.output.contains("hotplug: PASS (2 cycles)"), "\(vm.output)")
    }

    @Test func aBootVGPUCannotBeDetachedAndSlotsRunOut() throws {
        let vm = try BackgroundVM(vgpu: true)
        let boot = try vm.malvvm(["vgpu", "detach", vm.socket, "vgpu0"])
        #expect(boot.status == MalvvmExit.failure && boot.stderr.contains("attached at boot"), "\(boot.stderr)")
        // A failed attach gives its id back: the next one is still vgpu1.
        let failed = try vm.http("POST", "/vgpus", body: #"{"profile": "1g", "gpud": "/nonexistent/gpud.sock"}"#)
        #expect(failed.0 == 503, "\(failed)")
        // Four hot-plug slots by default: the fifth attach finds none.
        for index in 1 ... 4 {
            let attach = try vm.malvvm(["vgpu", "attach", vm.socket, "--profile", "1g"])
            #expect(attach.stdoutLines.first == "vgpu\(index)", "\(attach.stderr)")
        }
        let full = try vm.malvvm(["vgpu", "attach", vm.socket, "--profile", "1g"])
        #expect(full.status == MalvvmExit.failure && full.stderrLines.count == 1 && full.stderr.contains("no free hot-plug slot"), "\(full.stderr)")
        #expect(try vm.shutdown() == 0)
    }

    @Test func psListsTheVMAndVMInfoDescribesIt() throws {
        let vm = try BackgroundVM()
        let ps = try Harness.malvvm(["ps", "--dir", vm.directory])
        #expect(ps.status == 0)
        #expect(ps.stdoutLines.first?.hasPrefix("NAME") == true)
        let row = ps.stdoutLines.first { $0.hasPrefix(vm.name) } ?? ""
        #expect(row.contains("running") && row.contains(vm.socket), "\(ps.stdout)")
        let info = try vm.malvvm(["vm", "info", vm.socket])
        #expect(info.stdout.contains("\"state\" : \"running\""), "\(info.stdout)")
        #expect(info.stdout.contains("\"vgpus\" : 1"))
        var mode = stat()
        #expect(stat(vm.socket, &mode) == 0 && mode.st_mode & 0o777 == 0o600, "socket mode \(String(mode.st_mode & 0o777, radix: 8))")
        #expect(try vm.shutdown() == 0)
        #expect(!FileManager.default.fileExists(atPath: vm.socket), "the socket is removed when the VM ends")
    }

    /// `ps --json`, `vm info` and `vgpu list --json`: one JSON document each, snake_case keys,
    /// paths unescaped, the fields the table shows and more.
    @Test func psVMInfoAndVGPUListPrintJSON() throws {
        let vm = try BackgroundVM()
        let ps = try Harness.malvvm(["ps", "--dir", vm.directory, "--json"])
        #expect(ps.status == 0, "\(ps.stderr)")
        let vms = try #require(try JSONSerialization.jsonObject(with: Data(ps.stdout.utf8)) as? [[String: Any]], "\(ps.stdout)")
        #expect(vms.count == 1)
        let entry = try #require(vms.first)
        #expect(entry["name"] as? String == vm.name && entry["state"] as? String == "running", "\(entry)")
        #expect(entry["api_socket"] as? String == vm.socket && entry["kernel"] as? String == Harness.guest, "\(entry)")
        #expect(entry["memory_bytes"] as? Int == 256 << 20 && entry["vgpus"] as? Int == 1 && entry["vcpus"] as? Int == 1, "\(entry)")
        #expect(entry["cpu_template"] as? String == "host", "\(entry)")
        #expect((entry["pid"] as? Int ?? 0) > 0 && entry["uptime_seconds"] as? Double != nil && entry["command_line"] as? String == "test=idle")
        #expect(!ps.stdout.contains("\\/"), "slashes escaped: \(ps.stdout)")

        // vm info is the same object, and decodes as the API's VMInfo would.
        struct Info: Decodable {
            let name: String, pid: Int32, state: String, memoryBytes: UInt64, vcpus: Int, kernel: String
            let commandLine: String, apiSocket: String, uptimeSeconds: Double, vgpus: Int
        }
        let text = try vm.malvvm(["vm", "info", vm.socket])
        #expect(text.status == 0 && !text.stdout.contains("\\/"), "\(text.stdout)")
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let info = try decoder.decode(Info.self, from: Data(text.stdout.utf8))
        #expect(info.name == vm.name && info.apiSocket == vm.socket && info.kernel == Harness.guest && info.state == "running")
        #expect(Int(info.pid) == entry["pid"] as? Int && info.memoryBytes == 256 << 20 && info.vgpus == 1)
        let infoKeys = try #require(try JSONSerialization.jsonObject(with: Data(text.stdout.utf8)) as? [String: Any]).keys
        #expect(Set(infoKeys) == Set(entry.keys))

        let list = try vm.malvvm(["vgpu", "list", vm.socket, "--json"])
        #expect(list.status == 0, "\(list.stderr)")
        let vgpus = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]], "\(list.stdout)")
        let vgpu = try #require(vgpus.first)
        #expect(vgpus.count == 1 && vgpu["id"] as? String == "vgpu0" && vgpu["kind"] as? String == "para", "\(vgpu)")
        #expect(vgpu["hotplugged"] as? Bool == false && (vgpu["pci_address"] as? String)?.hasSuffix(":01.0") == true, "\(vgpu)")
        let profile = vgpu["profile"] as? [String: Any]
        #expect(profile?["name"] as? String == "2g.2gb" && profile?["memory_bytes"] as? Int == 2 << 30 && profile?["weight"] as? Double == 2,
                "\(String(describing: profile))")
        let statistics = vgpu["statistics"] as? [String: Any]
        #expect(statistics?["submissions"] as? Int == 0 && statistics?["gpu_nanoseconds"] as? Int != nil, "\(String(describing: statistics))")

        // The tables carry the same values, memory in the one format the CLI uses.
        let table = try Harness.malvvm(["ps", "--dir", vm.directory])
        #expect(table.stdoutLines.first { $0.hasPrefix(vm.name) }?.contains("256 MiB") == true, "\(table.stdout)")
        let vgpuTable = try vm.malvvm(["vgpu", "list", vm.socket])
        #expect(vgpuTable.stdoutLines.first { $0.hasPrefix("vgpu0") }?.contains("2 GiB") == true, "\(vgpuTable.stdout)")
        #expect(try vm.shutdown() == 0)
    }

    @Test func pauseAndResumeChangeTheStateAndRefuseTheWrongOrder() throws {
        let vm = try BackgroundVM(vgpu: false)
        #expect(try vm.malvvm(["vm", "pause", vm.socket]).status == 0)
        #expect(try vm.http("GET", "/vm").1.contains("\"state\":\"paused\""))
        let again = try vm.malvvm(["vm", "pause", vm.socket])
        #expect(again.status == MalvvmExit.failure && again.stderrLines == ["malvvm: error: the VM is already paused"], "\(again.stderr)")
        #expect(try vm.malvvm(["vm", "resume", vm.socket]).status == 0)
        #expect(try vm.http("GET", "/vm").1.contains("\"state\":\"running\""))
        let (status, body) = try vm.http("PUT", "/vm/resume")
        #expect(status == 409 && body == #"{"error":"the VM is not paused"}"#, "\(status) \(body)")
        #expect(try vm.shutdown() == 0)
    }

    @Test func vgpuListShowsTheBootVGPUWithItsProfile() throws {
        let vm = try BackgroundVM()
        let list = try vm.malvvm(["vgpu", "list", vm.socket])
        #expect(list.status == 0)
        #expect(list.stdoutLines.contains { $0.hasPrefix("vgpu0") && $0.contains("para") && $0.contains("2g") }, "\(list.stdout)")
        let (status, body) = try vm.http("GET", "/vgpus/vgpu0")
        #expect(status == 200 && body.contains("\"statistics\""), "\(body)")
        #expect(try vm.shutdown() == 0)
    }

    /// Bad JSON, unknown fields, missing fields, wrong types, unknown routes and ids: a 4xx
    /// with a JSON error body each, and the VM carries on.
    @Test(arguments: [
        ("POST", "/vgpus", "{not json", 400, "not valid JSON"),
        ("POST", "/vgpus", "[1, 2]", 400, "must be a JSON object"),
        ("POST", "/vgpus", #"{"profile": "4g", "colour": "red"}"#, 400, "unknown field 'colour'"),
        ("POST", "/vgpus", #"{"kind": "para"}"#, 400, "missing field 'profile'"),
        ("POST", "/vgpus", #"{"profile": 4}"#, 400, "wrong type"),
        ("POST", "/vgpus", #"{"profile": "5x"}"#, 400, "unknown vGPU profile"),
        ("POST", "/vgpus", #"{"profile": "4g", "kind": "quantum"}"#, 400, "field 'kind' does not take the value 'quantum'"),
        ("POST", "/vgpus", #"{"profile": "profile=4g,weight=2"}"#, 400, "unknown vGPU profile"),
        ("POST", "/vgpus", #"{"profile": "4g", "weight": -1}"#, 400, "weight must be a positive number"),
        ("POST", "/vgpus", #"{"profile": "4g", "contexts": 0}"#, 400, "contexts must be 1-1024"),
        ("POST", "/vgpus", #"{"profile": "4g", "doorbell_exiting": true}"#, 400, "is a full-vGPU control"),
        ("POST", "/vgpus", #"{"profile": "4g", "gpud": "/x.sock", "weight": 2}"#, 400, "daemon operator's to set"),
        ("DELETE", "/vm", nil, 405, "DELETE is not allowed on /v1/vm; it takes GET"),
        ("GET", "/vgpus/vgpu9", nil, 404, "no vGPU 'vgpu9'"),
        ("DELETE", "/vgpus/vgpu9", nil, 404, "no vGPU 'vgpu9'"),
        ("GET", "/nothing/here", nil, 404, "no such resource"),
    ] as [(String, String, String?, Int, String)])
    func badRequestsGetA4xxWithAJSONError(method: String, path: String, body: String?, status: Int, message: String) throws {
        let vm = try BackgroundVM(vgpu: false)
        let (got, text) = try vm.http(method, path, body: body)
        #expect(got == status, "\(method) \(path): \(got) \(text)")
        #expect(text.hasPrefix(#"{"error":""#) && text.contains(message), "\(text)")
        #expect(try vm.http("GET", "/vm").0 == 200, "the VM still answers")
        #expect(try vm.shutdown() == 0)
    }

    @Test func clientMistakesAreOneLineErrors() throws {
        let missing = try Harness.malvvm(["vgpu", "attach", "no-such-vm-\(getpid())", "--profile", "4g"])
        #expect(missing.status == MalvvmExit.failure && missing.stderrLines.count == 1, "\(missing.stderr)")
        #expect(missing.stderr.contains("no VM API socket"))
        let profile = try Harness.malvvm(["vgpu", "attach", "any", "--profile", "5x"])
        #expect(profile.status == MalvvmExit.usage && profile.stderrLines.count == 1, "\(profile.stderr)")
        let name = try Harness.malvvm(["run", "--kernel", Harness.guest, "--name", "../escape"])
        #expect(name.status == MalvvmExit.usage && name.stderrLines.count == 1, "\(name.stderr)")
    }

    @Test func aSecondVMCannotTakeALiveSocket() throws {
        let vm = try BackgroundVM(vgpu: false)
        let second = try Harness.malvvm(["run", "--kernel", Harness.guest, "--api-socket", vm.socket, "--cmdline", "test=hello"])
        #expect(second.status == MalvvmExit.failure && second.stderr.contains("already serving"), "\(second.stderr)")
        #expect(try vm.shutdown() == 0)
    }

    /// A default socket directory someone else could reach (mode 0777, as if squatted before
    /// us) is refused with one line; one we create is 0700 and the socket in it 0600.
    @Test func aSquattedSocketDirectoryIsRefused() throws {
        let runtime = NSTemporaryDirectory() + "malvvm-xdg-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: runtime + "/malvvm", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: runtime) }
        chmod(runtime + "/malvvm", 0o777)
        let environment = ["/usr/bin/env", "XDG_RUNTIME_DIR=\(runtime)"]
        let squatted = try Harness.malvvm(["run", "--kernel", Harness.guest, "--name", "sq", "--cmdline", "test=hello"], wrapper: environment)
        #expect(squatted.status == MalvvmExit.failure && squatted.stderrLines.count == 1 && squatted.stderr.contains("mode 777"), "\(squatted.stderr)")
        let gpud = try Harness.malvvm(["gpud", "--gpu", "cpu"], timeout: 30, wrapper: environment)
        #expect(gpud.status == MalvvmExit.failure && gpud.stderrLines.count == 1 && gpud.stderr.contains("mode 777"), "\(gpud.stderr)")

        try FileManager.default.removeItem(atPath: runtime + "/malvvm")
        let vm = try BackgroundProcess(["run", "--kernel", Harness.guest, "--name", "fresh", "--cmdline", "test=idle"],
                                       environment: ["XDG_RUNTIME_DIR": runtime])
        #expect(vm.waitForOutput("idle"), "\(vm.output)")
        var directory = stat(), socket = stat()
        #expect(stat(runtime + "/malvvm", &directory) == 0 && directory.st_mode & 0o777 == 0o700)
        #expect(stat(runtime + "/malvvm/fresh.sock", &socket) == 0 && socket.st_mode & 0o777 == 0o600)
        vm.kill(SIGTERM)
        vm.finish(within: 10)
    }
}
