@testable import ControlAPI
import Foundation

/// A `FakeVM` served by the real `APIServer` on a real socket, in a directory of its own that
/// goes with it.
final class FakeVMServer {
    let vm = FakeVM()
    let directory: String
    let server: APIServer

    init() throws {
        directory = NSTemporaryDirectory() + "malvvm-api-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        server = try APIServer(socketPath: directory + "/vm.sock", control: vm, version: APIVersion(version: "9.8.7", commit: "abc1234"))
    }

    deinit {
        server.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
