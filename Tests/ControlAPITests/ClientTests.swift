@testable import ControlAPI
import Foundation
import Testing

/// The CLI's client (generated from docs/api/malvvm.yaml, AsyncHTTPClient over the Unix
/// socket) against the real server on a real socket: answers come back as our types, and each
/// failure as the `APIError` of its status with the server's one line.
@Suite(.serialized) final class ClientTests {
    let served: FakeVMServer
    let client: APIClient
    var vm: FakeVM { served.vm }
    var directory: String { served.directory }

    init() throws {
        served = try FakeVMServer()
        client = APIClient(socketPath: served.server.socketPath)
    }

    @Test func answersArriveAsOurTypes() async throws {
        #expect(try await client.vmInfo() == vm.info())
        #expect(try await client.vgpus().isEmpty)
        try await client.pause()
        #expect(try await client.vmInfo().state == .paused)
        try await client.resume()
    }

    @Test func failuresArriveAsTheirStatusWithTheServersLine() async throws {
        try await client.pause()
        await #expect(throws: APIError.conflict("VM 'fake' is already paused")) { try await self.client.pause() }
        await #expect(throws: APIError.notFound("no vGPU 'vgpu9' on VM 'fake'")) { try await self.client.vgpu(id: "vgpu9") }
        await #expect(throws: APIError.unavailable("no GPU here")) { try await self.client.attachVGPU(AttachVGPURequest(profile: "1g")) }
        #expect(vm.state.withLock { $0.attaches } == [AttachVGPURequest(profile: "1g")])
    }

    @Test func mlaasServicesRoundTrip() async throws {
        let loaded = try await client.loadService(LoadServiceRequest(path: "libfake.so"))
        #expect(loaded.name == "fake" && loaded.vms == ["fake"])
        #expect(try await client.mlaasServices() == [loaded])
        try await client.unloadService(name: "fake")
        await #expect(throws: APIError.notFound("no service 'fake' is loaded")) { try await self.client.unloadService(name: "fake") }
    }

    @Test func aMissingSocketIsNotFound() async throws {
        let absent = APIClient(socketPath: directory + "/absent.sock")
        await #expect(throws: APIError.notFound("no VM API socket at '\(directory)/absent.sock'")) { try await absent.vmInfo() }
    }
}
