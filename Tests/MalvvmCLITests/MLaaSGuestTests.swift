import Foundation
import Glibc
import Testing

/// The guest's MLaaS requests through its para-vGPU, end to end (docs/vgpu-protocol.md, "MLaaS
/// requests"): `test=mlaas` lists, enables `preprocess` with a valid and a malformed pipeline,
/// enables an unknown service and a malformed name, disables twice, and prints one line each.
@Suite(.serialized) struct MLaaSGuestTests {
    static let dataset = Harness.packageRoot.appendingPathComponent("Guest/build/digits.img").path

    static func run(_ extra: [String], modules: String) -> [String] {
        ["run", "--kernel", Harness.guest, "--vgpu", "2g", "--gpu", "cpu", "--disk", dataset + ",readonly",
         "--mlaas-dir", modules] + extra
    }

    static func lines(_ output: String) -> [String] {
        output.split(separator: "\n").map(String.init).filter { $0.hasPrefix("mlaas: ") }
    }

    @Test func aPermittedServiceIsListedEnabledAndDisabled() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let result = try Harness.malvvm(Self.run(["--api-socket", "none", "--mlaas", "preprocess", "--cmdline", "test=mlaas"],
                                                 modules: modules.path))
        let lines = Self.lines(result.stdout)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(lines.count == 11, "\(lines)")
        guard lines.count == 11 else { return }
        #expect(lines[0] == "mlaas: capset v2, requests available")
        #expect(lines[1] == "mlaas: list: 1 of 1: preprocess(loaded)")
        #expect(lines[2] == "mlaas: enable preprocess (valid pipeline): OK")
        #expect(lines[3] == "mlaas: list: 1 of 1: preprocess(loaded,enabled)")
        #expect(lines[4].hasPrefix("mlaas: enable preprocess (malformed pipeline): ERR_INVALID_PARAMETER (refused): preprocess: "),
                "\(lines[4])")
        #expect(lines[5] == "mlaas: enable nosuch: ERR_INVALID_PARAMETER (unknown service): no service 'nosuch'")
        #expect(lines[6].hasPrefix("mlaas: enable Bad/Name: ERR_INVALID_PARAMETER (malformed): malformed service name"))
        #expect(lines[7] == "mlaas: disable preprocess: OK")
        #expect(lines[8] == "mlaas: disable preprocess again: ERR_INVALID_PARAMETER (not enabled): service 'preprocess' is not enabled")
        #expect(lines[9] == "mlaas: list: 1 of 1: preprocess(loaded)")
        #expect(lines[10] == "mlaas: done")
    }

    @Test func aVMWithoutMLaaSIsNotPermitted() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let result = try Harness.malvvm(Self.run(["--api-socket", "none", "--cmdline", "test=mlaas"], modules: modules.path))
        let lines = Self.lines(result.stdout)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let notPermitted = "ERR_INVALID_PARAMETER (not permitted): service 'preprocess' is not permitted for this VM"
        #expect(lines == [
            "mlaas: capset v2, requests available",
            "mlaas: list: 0 of 0:",
            "mlaas: enable preprocess (valid pipeline): \(notPermitted)",
            "mlaas: list: 0 of 0:",
            "mlaas: enable preprocess (malformed pipeline): \(notPermitted)",
            "mlaas: enable nosuch: ERR_INVALID_PARAMETER (unknown service): no service 'nosuch'",
            "mlaas: enable Bad/Name: ERR_INVALID_PARAMETER (malformed): malformed service name (a-z, 0-9 and '-', NUL-padded to 32 bytes)",
            "mlaas: disable preprocess: \(notPermitted)",
            "mlaas: disable preprocess again: \(notPermitted)",
            "mlaas: list: 0 of 0:",
            "mlaas: done",
        ])
    }

    @Test func anUnloadBetweenRequestsAnswersTheNextOneWithAnError() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let api = modules.path + "/vm.sock"
        let vm = try BackgroundProcess(Self.run(["--name", "mlguest", "--api-socket", api, "--mlaas", "preprocess",
                                                 "--cmdline", "test=mlaas mlaas_wait_unload=1"], modules: modules.path))
        #expect(vm.waitForOutput("mlaas: waiting for unload"), "\(vm.output)")
        let unload = try Harness.malvvm(["mlaas", "unload", "--api", api, "preprocess"])
        #expect(unload.status == 0, "\(unload.stderr)")
        #expect(vm.waitForOutput("mlaas: done"), "\(vm.output)")
        #expect(vm.finish(within: 30) == 0)
        let lines = Self.lines(vm.output)
        #expect(lines.contains("mlaas: enable preprocess (valid pipeline): OK"), "\(lines)")
        let notLoaded = "ERR_UNSPEC (not loaded): service 'preprocess' is not loaded"
        guard let waiting = lines.firstIndex(of: "mlaas: waiting for unload") else { return }
        #expect(Array(lines[(waiting + 1)...]) == [
            "mlaas: list: 1 of 1: preprocess(not loaded)",
            "mlaas: enable preprocess (malformed pipeline): \(notLoaded)",
            "mlaas: enable nosuch: ERR_INVALID_PARAMETER (unknown service): no service 'nosuch'",
            "mlaas: enable Bad/Name: ERR_INVALID_PARAMETER (malformed): malformed service name (a-z, 0-9 and '-', NUL-padded to 32 bytes)",
            "mlaas: disable preprocess: \(notLoaded)",
            "mlaas: disable preprocess again: \(notLoaded)",
            "mlaas: list: 1 of 1: preprocess(not loaded)",
            "mlaas: done",
        ], "\(lines)")
    }
}
