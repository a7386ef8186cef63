import Foundation
import Glibc
@testable import ControlAPI
import Synchronization
import Testing
import VGPUCore

/// A VM as the API sees it, without a VM: the routes, status codes and error bodies are
/// checked against this double, so each case costs a request, not a boot.
final class FakeVM: VMControl {
    let state = Mutex<(paused: Bool, shutdowns: Int, attaches: [AttachVGPURequest])>((false, 0, []))

    func info() -> VMInfo {
        VMInfo(name: "fake", pid: 1, state: state.withLock { $0.paused } ? .paused : .running, memoryBytes: 1 << 28, vcpus: 1,
               kernel: "k", commandLine: "", apiSocket: "", uptimeSeconds: 1, vgpus: 0)
    }
    func metrics() -> VMMetrics {
        var statistics = VGPUStatistics()
        statistics.submissions = 3
        statistics.gpuNanoseconds = 1_500_000_000
        return VMMetrics(name: "fake", uptimeSeconds: 2, paused: false, vcpus: 1, kvm: ["exits": 42], vmm: ["mmio_exits": 7],
                         scheduler: .init(policy: "best-effort", windowNanoseconds: 2_000_000_000, busyNanoseconds: 500_000_000,
                                          utilisation: 0.25),
                         vgpus: [.init(name: "vgpu0", kind: "para", statistics: statistics)])
    }
    func pause() throws(APIError) {
        try state.withLock { s throws(APIError) in
            guard !s.paused else { throw .conflict("VM 'fake' is already paused") }
            s.paused = true
        }
    }
    func resume() throws(APIError) {
        try state.withLock { s throws(APIError) in
            guard s.paused else { throw .conflict("VM 'fake' is not paused") }
            s.paused = false
        }
    }
    func shutdown() throws(APIError) { state.withLock { $0.shutdowns += 1 } }
    func vgpus() -> [VGPUInfo] { [] }
    func vgpu(id: String) throws(APIError) -> VGPUInfo { throw .notFound("no vGPU '\(id)' on VM 'fake'") }
    func attachVGPU(_ request: AttachVGPURequest) async throws(APIError) -> VGPUInfo {
        state.withLock { $0.attaches.append(request) }
        throw .unavailable("no GPU here")
    }
    func detachVGPU(id: String) async throws(APIError) { throw .notFound("no vGPU '\(id)' on VM 'fake'") }
    let services = FakeServices()
    var mlaas: any MLaaSControl { services }
}

/// MLaaS services without modules: one service, "fake", can be loaded.
final class FakeServices: MLaaSControl {
    let loaded = Mutex<[MLaaSServiceInfo]>([])

    func services() -> [MLaaSServiceInfo] { loaded.withLock { $0 } }
    func loadService(_ request: LoadServiceRequest) async throws(APIError) -> MLaaSServiceInfo {
        guard request.path == "libfake.so" else { throw .badRequest("no module '\(request.path)'") }
        return try loaded.withLock { list throws(APIError) in
            guard list.isEmpty else { throw .conflict("a service named 'fake' is already loaded") }
            var info = MLaaSServiceInfo(name: "fake", version: "1", kind: "os-for-ml", path: "/m/libfake.so")
            info.vms = ["fake"]
            list.append(info)
            return info
        }
    }
    func unloadService(name: String) async throws(APIError) {
        try loaded.withLock { list throws(APIError) in
            guard list.contains(where: { $0.name == name }) else { throw .notFound("no service '\(name)' is loaded") }
            list.removeAll { $0.name == name }
        }
    }
}

@Suite(.serialized) final class RouteTests {
    let served: FakeVMServer
    var vm: FakeVM { served.vm }
    var server: APIServer { served.server }

    init() throws { served = try FakeVMServer() }

    /// One request with curl over the socket: (status, body).
    func request(_ method: String, _ path: String, body: String? = nil) throws -> (Int, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        var arguments = ["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--unix-socket", server.socketPath,
                         "http://localhost/v1" + path]
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? -1, lines.dropLast().joined(separator: "\n"))
    }

    /// One request's response headers, lowercased, as curl prints them.
    func responseHeaders(_ method: String, _ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-s", "-D", "-", "-o", "/dev/null", "-X", method, "--unix-socket", server.socketPath,
                             "http://localhost/v1" + path]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let headers = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).lowercased()
        process.waitUntilExit()
        return headers
    }

    func errorLine(_ body: String) -> String? {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["error"] as? String
    }

    @Test func stateChangesMapToTheirStatusCodes() throws {
        #expect(try request("GET", "/vm").0 == 200)
        #expect(try request("PUT", "/vm/pause").0 == 204)
        let again = try request("PUT", "/vm/pause")
        #expect(again.0 == 409 && errorLine(again.1) == "VM 'fake' is already paused", "\(again)")
        #expect(try request("PUT", "/vm/resume").0 == 204)
        #expect(try request("PUT", "/vm/shutdown").0 == 204)
        #expect(vm.state.withLock { $0.shutdowns } == 1)
    }

    @Test(arguments: [
        ("{", "JSON"),
        ("[]", "object"),
        ("{\"profile\": 4}", "profile"),
        ("{}", "profile"),
        ("{\"profile\": \"1g\", \"colour\": \"red\"}", "colour"),
    ])
    func badAttachBodiesAre400WithAnErrorLine(body: String, mentions: String) throws {
        let (status, text) = try request("POST", "/vgpus", body: body)
        #expect(status == 400, "\(body): \(status) \(text)")
        #expect(errorLine(text)?.lowercased().contains(mentions.lowercased()) == true, "\(body): \(text)")
        #expect(vm.state.withLock { $0.attaches.isEmpty }, "a bad body never reached the VM")
    }

    /// Writes `bytes` as they are on a fresh connection and reads until the server closes it:
    /// what a hostile client sees, below anything curl would send.
    func rawExchange(_ bytes: [UInt8]) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            for (index, byte) in server.socketPath.utf8.enumerated() { path[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(connected == 0, "connect: \(errno)")
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += chunk[0 ..< count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    @Test(arguments: [
        ("a malformed request line", "GARBAGE\r\n\r\n"),
        ("a bad version", "GET /v1/vm HTTP/9.Z\r\nHost: x\r\n\r\n"),
        ("a bad Content-Length", "POST /v1/vgpus HTTP/1.1\r\nHost: x\r\nContent-Length: ab\r\n\r\n"),
        ("a duplicate Content-Length", "POST /v1/vgpus HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
        ("Content-Length with chunked", "POST /v1/vgpus HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}"),
        ("a bad chunk size", "POST /v1/vgpus HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n"),
        ("oversized headers", "GET /v1/vm HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "a", count: 100_000) + "\r\n\r\n"),
    ])
    func requestsTheParserRejectsAre400WithAnErrorLine(what: String, request: String) throws {
        let request = request.replacingOccurrences(of: "{100 KB}", with: String(repeating: "a", count: 100_000))
        let response = try rawExchange(Array(request.utf8))
        #expect(response.hasPrefix("HTTP/1.1 400"), "\(what): \(response.prefix(200))")
        let body = response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        #expect(errorLine(body)?.hasPrefix("malformed HTTP request") == true, "\(what): \(response.prefix(300))")
        #expect(vm.state.withLock { $0.attaches.isEmpty }, "\(what) never reached the VM")
        // The server still answers well-formed requests afterwards.
        #expect(try self.request("GET", "/vm").0 == 200)
    }

    @Test func unknownRoutesAndIdsAre404AndFailuresPassThrough() throws {
        #expect(try request("GET", "/nothing").0 == 404)
        let missing = try request("GET", "/vgpus/vgpu9")
        #expect(missing.0 == 404 && errorLine(missing.1) == "no vGPU 'vgpu9' on VM 'fake'")
        let attach = try request("POST", "/vgpus", body: "{\"profile\": \"1g\"}")
        #expect(attach.0 == 503 && errorLine(attach.1) == "no GPU here", "\(attach)")
    }

    @Test func aKnownPathWithAnotherMethodIs405WithAllow() throws {
        let (status, body) = try request("DELETE", "/vm")
        #expect(status == 405 && errorLine(body) == "DELETE is not allowed on /v1/vm; it takes GET", "\(status) \(body)")
        let post = try request("POST", "/vgpus/vgpu0")
        #expect(post.0 == 405 && errorLine(post.1)?.hasSuffix("it takes GET, DELETE") == true, "\(post)")
        // The header, as a client library reads it.
        let headers = try responseHeaders("PUT", "/vgpus")
        #expect(headers.contains("allow: get, post"), "\(headers)")
        #expect(try request("GET", "/nothing").0 == 404, "a path that does not exist stays 404")
    }

    @Test func versionNamesTheBuildAndTheAPI() throws {
        let (status, body) = try request("GET", "/version")
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String]
        #expect(status == 200 && object == ["version": "9.8.7", "commit": "abc1234", "api": "v1"], "\(body)")
    }

    @Test func metricsArePrometheusTextOfTheVMsCounters() throws {
        let (status, body) = try request("GET", "/metrics")
        #expect(status == 200)
        // The text format's content type, as docs/api/malvvm.yaml declares it.
        let headers = try responseHeaders("GET", "/metrics")
        #expect(headers.contains("content-type: text/plain; charset=utf-8; version=0.0.4"), "\(headers)")
        let lines = body.split(separator: "\n").map(String.init)
        for expected in ["malvvm_vm_uptime_seconds{vm=\"fake\"} 2.0",
                         "malvvm_kvm_statistic{vm=\"fake\",name=\"exits\"} 42.0",
                         "malvvm_vmm_exits_total{vm=\"fake\",kind=\"mmio\"} 7",
                         "malvvm_scheduler_utilisation{vm=\"fake\",policy=\"best-effort\"} 0.25",
                         "malvvm_vgpu_submissions_total{vm=\"fake\",vgpu=\"vgpu0\",kind=\"para\"} 3",
                         "malvvm_vgpu_gpu_seconds_total{vm=\"fake\",vgpu=\"vgpu0\",kind=\"para\"} 1.5",
                         "# TYPE malvvm_vgpu_submissions_total counter"] {
            #expect(lines.contains(expected), "missing '\(expected)' in:\n\(body)")
        }
        // Every sample line parses as the text format says: name{labels} value.
        for line in lines where !line.hasPrefix("#") {
            #expect(line.wholeMatch(of: /[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+/) != nil, "\(line)")
        }
    }

    @Test func mlaasServicesAreListedLoadedAndUnloaded() throws {
        #expect(try request("GET", "/mlaas") == (200, "[]"))
        let load = try request("POST", "/mlaas", body: "{\"path\": \"libfake.so\"}")
        #expect(load.0 == 201 && load.1.contains("\"name\":\"fake\"") && load.1.contains("\"vms\":[\"fake\"]"), "\(load)")
        let again = try request("POST", "/mlaas", body: "{\"path\": \"libfake.so\"}")
        #expect(again.0 == 409 && errorLine(again.1) == "a service named 'fake' is already loaded", "\(again)")
        let list = try request("GET", "/mlaas")
        #expect(list.0 == 200 && list.1.contains("\"kind\":\"os-for-ml\""), "\(list)")
        #expect(try request("DELETE", "/mlaas/fake").0 == 204)
        let gone = try request("DELETE", "/mlaas/fake")
        #expect(gone.0 == 404 && errorLine(gone.1) == "no service 'fake' is loaded", "\(gone)")
    }

    @Test(arguments: [("{", "JSON"), ("{}", "path"), ("{\"path\": 1}", "path"), ("{\"path\": \"x\", \"attach\": true}", "attach"),
                      ("{\"path\": \"/elsewhere/lib.so\"}", "no module")])
    func badLoadsAre400WithAnErrorLine(body: String, mentions: String) throws {
        let (status, text) = try request("POST", "/mlaas", body: body)
        #expect(status == 400 && errorLine(text)?.lowercased().contains(mentions.lowercased()) == true, "\(body): \(status) \(text)")
        #expect(vm.services.services().isEmpty)
    }
}
