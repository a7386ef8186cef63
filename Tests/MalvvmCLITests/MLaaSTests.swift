import Foundation
import Glibc
import Testing

/// `malvvm mlaas list|load|unload` against a running `malvvm gpud` and a running VM, and the
/// `--mlaas`/`--mlaas-dir` options, as a user types them (docs/mlaas.md).
@Suite(.serialized) struct MLaaSCommandTests {
    static let products = (Harness.malvvm as NSString).deletingLastPathComponent

    /// A fresh operator-owned module directory with copies of this build's modules.
    final class ModuleDirectory {
        let path: String

        init(mode: mode_t = 0o755) throws {
            path = NSTemporaryDirectory() + "malvvm-mlaas-cli-\(getpid())-\(UInt32.random(in: 0 ... .max))"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            for file in ["libpreprocess.so", "libprefetch.so", "libmlaas-fixture-not-a-service.so"] {
                try FileManager.default.copyItem(atPath: products + "/" + file, toPath: path + "/" + file)
                chmod(path + "/" + file, 0o755)
            }
            chmod(path, mode)
        }

        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    func oneLineError(_ result: Harness.Result, status: Int32 = MalvvmExit.failure, mentions: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == status && result.stderrLines.count == 1 && result.stderr.contains(mentions),
                "exit \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
    }

    @Test func servicesAreLoadedListedAndUnloadedOnTheDaemon() throws {
        let modules = try ModuleDirectory()
        // A world-writable module someone dropped into the directory.
        try FileManager.default.copyItem(atPath: modules.path + "/libprefetch.so", toPath: modules.path + "/libopen.so")
        chmod(modules.path + "/libopen.so", 0o777)
        let daemon = try GPUDaemonTests.Daemon(["--policy", "best-effort", "--mlaas-dir", modules.path])
        func mlaas(_ arguments: [String]) throws -> Harness.Result {
            try Harness.malvvm(["mlaas"] + arguments.prefix(1) + ["--gpud", daemon.socket] + arguments.dropFirst())
        }
        let empty = try mlaas(["list"])
        #expect(empty.status == 0 && empty.stdoutLines.first?.hasPrefix("NAME") == true && empty.stdoutLines.count == 2, "\(empty)")
        let preprocess = try mlaas(["load", "preprocess"])
        #expect(preprocess.status == 0 && preprocess.stdout == "preprocess\n", "\(preprocess.stderr)")
        let prefetch = try mlaas(["load", modules.path + "/libprefetch.so"])
        #expect(prefetch.status == 0 && prefetch.stdout == "prefetch\n", "\(prefetch.stderr)")
        let list = try mlaas(["list"])
        let rows = list.stdoutLines.dropFirst().filter { !$0.isEmpty }.map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.map { Array($0.prefix(4)) } == [["preprocess", "0.2.0", "os-for-ml", "-"], ["prefetch", "0.2.0", "ml-for-os", "-"]],
                "\(list.stdout)")
        #expect(rows.first?.last == modules.path + "/libpreprocess.so")
        let json = try mlaas(["list", "--json"])
        let objects = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
        #expect(objects?.compactMap { $0["name"] as? String } == ["preprocess", "prefetch"], "\(json.stdout)")

        oneLineError(try mlaas(["load", "libpreprocess.so"]), mentions: "a service named 'preprocess' is already loaded")
        oneLineError(try mlaas(["load", Self.products + "/libpreprocess.so"]), mentions: "is not in the module directory")
        oneLineError(try mlaas(["load", "libmlaas-fixture-not-a-service.so"]), mentions: "is not an MLaaS service")
        oneLineError(try mlaas(["load", "libopen.so"]), mentions: "is writable by every user")
        oneLineError(try mlaas(["load", "nosuch"]), mentions: "no module")

        #expect(try mlaas(["unload", "preprocess"]).status == 0)
        oneLineError(try mlaas(["unload", "preprocess"]), mentions: "no service 'preprocess' is loaded")
        #expect(try mlaas(["list"]).stdout.contains("preprocess") == false)
        #expect(daemon.process.isRunning)
    }

    @Test func aVMSelectsServicesAndAnUnloadDetachesIt() throws {
        let modules = try ModuleDirectory()
        let api = modules.path + "/vm.sock"
        let disk = modules.path + "/data.img"
        #expect(FileManager.default.createFile(atPath: disk, contents: Data(count: 4096)))
        let vm = try BackgroundProcess(["run", "--kernel", Harness.guest, "--name", "mlvm", "--api-socket", api, "--disk", disk + ",readonly",
                                        "--mlaas-dir", modules.path, "--mlaas", "preprocess,prefetch", "--cmdline", "test=idle"])
        #expect(vm.waitForOutput("idle"), "\(vm.output)")
        let list = try Harness.malvvm(["mlaas", "list", "--api", api])
        #expect(list.status == 0 && list.stdoutLines.filter { $0.contains(" mlvm ") }.count == 2, "\(list.stdout)\(list.stderr)")
        #expect(try Harness.malvvm(["mlaas", "unload", "--api", api, "preprocess"]).status == 0)
        let after = try Harness.malvvm(["mlaas", "list", "--api", api])
        #expect(!after.stdout.contains("preprocess") && after.stdout.contains("prefetch"), "\(after.stdout)")
        // Loaded again through the VM's API: attached to the VM again.
        let load = try Harness.malvvm(["mlaas", "load", "--api", api, "libpreprocess.so"])
        #expect(load.status == 0 && load.stdout == "preprocess\n", "\(load.stderr)")
        #expect(try Harness.malvvm(["mlaas", "list", "--api", api]).stdoutLines.filter { $0.contains(" mlvm ") }.count == 2)
        #expect(vm.isRunning)
        vm.kill(SIGTERM)
        #expect(vm.finish(within: 20) == 128 + SIGTERM)
    }

    @Test func mistakesAreOneLineErrors() throws {
        let modules = try ModuleDirectory()
        oneLineError(try Harness.malvvm(["run", "--kernel", Harness.guest, "--api-socket", "none", "--mlaas-dir", modules.path,
                                         "--mlaas", "nosuch", "--cmdline", "test=hello"]),
                     mentions: "no module '\(modules.path)/libnosuch.so'")
        oneLineError(try Harness.malvvm(["run", "--kernel", Harness.guest, "--mlaas", "Bad_Name", "--cmdline", "test=hello"]),
                     status: MalvvmExit.usage, mentions: "--mlaas")
        oneLineError(try Harness.malvvm(["run", "--kernel", Harness.guest, "--api-socket", "none", "--mlaas-dir", "/nonexistent/mlaas",
                                         "--cmdline", "test=hello"]),
                     mentions: "module directory '/nonexistent/mlaas'")
        oneLineError(try Harness.malvvm(["mlaas", "list"]), status: MalvvmExit.usage, mentions: "--gpud SOCKET or --api SOCKET")
        oneLineError(try Harness.malvvm(["mlaas", "list", "--gpud", "/a", "--api", "/b"]), status: MalvvmExit.usage, mentions: "--gpud SOCKET or --api SOCKET")
        oneLineError(try Harness.malvvm(["mlaas", "list", "--gpud", "/nonexistent/gpud.sock"]), mentions: "no GPU daemon API socket")
        let open = try ModuleDirectory(mode: 0o777)
        oneLineError(try Harness.malvvm(["gpud", "--gpu", "cpu", "--socket", modules.path + "/gpud.sock", "--mlaas-dir", open.path]),
                     mentions: "writable by every user")
    }
}
