@testable import VGPUCore
import VirtioTestSupport
import GPUHost
@testable import Hypervisor
import Synchronization
import Testing
@testable import VirtioGPU

/// A VM's MLaaS bindings as the device sees them: what the guest asked, and fixed answers.
final class FakeMLaaSPort: MLaaSGuestPort, @unchecked Sendable {
    let calls = Mutex<[String]>([])
    let services: [MLaaSGuestService]
    init(_ services: [MLaaSGuestService]) { self.services = services }

    func mlaasServices() -> [MLaaSGuestService] {
        calls.withLock { $0.append("list") }
        return services
    }

    func mlaasEnable(_ name: String, parameters: [UInt8], gpu: (any MLaaSContextGPU)?) throws(MLaaSGuestError) {
        calls.withLock { $0.append("enable \(name) \(String(decoding: parameters, as: UTF8.self))") }
        guard services.contains(where: { $0.name == name }) else { throw MLaaSGuestError(.notPermitted, "'\(name)' is not permitted") }
        if parameters == Array("bad".utf8) { throw MLaaSGuestError(.refused, "\(name): bad pipeline") }
    }

    func mlaasDisable(_ name: String) throws(MLaaSGuestError) {
        calls.withLock { $0.append("disable \(name)") }
        throw MLaaSGuestError(.notLoaded, "service '\(name)' is not loaded")
    }

    func mlaasRequest(_ name: String, request: [UInt8], capacity: Int) throws(MLaaSGuestError) -> [UInt8] {
        calls.withLock { $0.append("request \(name) \(request.count) \(capacity)") }
        return Array(request.reversed().prefix(capacity))
    }
}

/// Capset version 2's MLaaS requests (docs/vgpu-protocol.md, "MLaaS requests").
@Suite struct VirtioGPUMLaaSTests {
    static func name(_ text: String) -> [UInt8] {
        let bytes = Array(text.utf8.prefix(32))
        return bytes + [UInt8](repeating: 0, count: 32 - bytes.count)
    }

    static func enable(_ service: String, _ parameters: [UInt8], length: UInt32? = nil, reserved: UInt32 = 0,
                       context: UInt32 = 0, fence: UInt64? = nil) -> [UInt8] {
        var w = WireWriter()
        w.append(GPUDriver.header(.mlaasEnable, context: context, fence: fence))
        w.append(name(service))
        w.u32(length ?? UInt32(parameters.count))
        w.u32(reserved)
        w.append(parameters)
        return w.bytes
    }

    static func disable(_ service: [UInt8]) -> [UInt8] {
        GPUDriver.header(.mlaasDisable) + service
    }

    /// The error answer's (code, mlaas_status, message).
    static func error(_ driver: GPUDriver, _ request: [UInt8], room: UInt32 = 0x200) throws -> (UInt32, UInt32?, String?) {
        let (header, bytes) = try driver.response(try driver.send(request, responseRoom: room))
        guard bytes.count >= 32 else { return (header.type, nil, nil) }
        var r = WireReader(bytes, at: 24)
        let status = try r.u32()
        let length = Int(try r.u32())
        #expect(bytes.count == 32 + length)
        return (header.type, status, String(decoding: bytes[32...], as: UTF8.self))
    }

    @Test func capsetVersionOneIsUnchangedAndVersionTwoFlagsMLaaS() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let v1 = try driver.response(try driver.send(GPUDriver.simple(.getCapset, [VirtioGPU.computeCapsetID, 1]))).bytes
        var v2 = try driver.response(try driver.send(GPUDriver.simple(.getCapset, [VirtioGPU.computeCapsetID, 2]))).bytes
        #expect(v1.count == 64 && v2.count == 64)
        #expect(Array(v1[24 ..< 28]) == [1, 0, 0, 0] && Array(v2[24 ..< 28]) == [2, 0, 0, 0])
        #expect(Array(v1[28 ..< 60]) == Array(v2[28 ..< 60]))
        #expect(Array(v2[60 ..< 64]) == [0, 0, 0, 0])  // nothing bound
        driver.device.bindMLaaS(FakeMLaaSPort([]))
        v2 = try driver.response(try driver.send(GPUDriver.simple(.getCapset, [VirtioGPU.computeCapsetID, 2]))).bytes
        #expect(Array(v2[60 ..< 64]) == [1, 0, 0, 0])
        let again = try driver.response(try driver.send(GPUDriver.simple(.getCapset, [VirtioGPU.computeCapsetID, 1]))).bytes
        #expect(again == v1)  // old guests see version 1, byte for byte
    }

    @Test func listsEnablesAndDisables() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let port = FakeMLaaSPort([MLaaSGuestService(name: "preprocess", kind: 1, loaded: true, enabled: false),
                                  MLaaSGuestService(name: "prefetch", kind: 2, loaded: false, enabled: true)])
        driver.device.bindMLaaS(port)
        let (header, bytes) = try driver.response(try driver.send(GPUDriver.simple(.mlaasList, fence: 7)))
        #expect(header.type == Response.okMLaaSList.rawValue)
        #expect(header.fenceID == 7)
        #expect(bytes.count == 24 + 8 + 2 * 40)
        var r = WireReader(bytes, at: 24)
        let (count, total) = (try r.u32(), try r.u32())
        #expect(count == 2 && total == 2)
        #expect(Array(bytes[32 ..< 64]) == Self.name("preprocess"))
        #expect(Array(bytes[64 ..< 72]) == [1, 0, 0, 0, 1, 0, 0, 0])
        #expect(Array(bytes[72 ..< 104]) == Self.name("prefetch"))
        #expect(Array(bytes[104 ..< 112]) == [2, 0, 0, 0, 2, 0, 0, 0])

        #expect(try driver.call(Self.enable("preprocess", Array("disk=0".utf8))) == Response.okNoData.rawValue)
        let refused = try Self.error(driver, Self.enable("preprocess", Array("bad".utf8)))
        #expect(refused.0 == Response.errorInvalidParameter.rawValue && refused.1 == 5 && refused.2 == "preprocess: bad pipeline")
        let unknown = try Self.error(driver, Self.enable("nosuch", []))
        #expect(unknown.0 == Response.errorInvalidParameter.rawValue && unknown.1 == 3)
        let disabled = try Self.error(driver, Self.disable(Self.name("preprocess")))
        #expect(disabled.0 == Response.errorUnspecified.rawValue && disabled.1 == 4 && disabled.2 == "service 'preprocess' is not loaded")
        #expect(port.calls.withLock { $0 } == ["list", "enable preprocess disk=0", "enable preprocess bad", "enable nosuch ",
                                             "disable preprocess"])
    }

    static func request(_ service: String, _ body: [UInt8], length: UInt32? = nil, capacity: UInt32 = 64) -> [UInt8] {
        var w = WireWriter()
        w.append(GPUDriver.header(.mlaasRequest))
        w.append(name(service))
        w.u32(length ?? UInt32(body.count))
        w.u32(capacity)
        w.append(body)
        return w.bytes
    }

    @Test func aRequestCarriesTheServicesAnswerWithinWhatTheDriverCanHold() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let port = FakeMLaaSPort([MLaaSGuestService(name: "preprocess", kind: 1, loaded: true, enabled: true)])
        driver.device.bindMLaaS(port)
        let (header, bytes) = try driver.response(try driver.send(Self.request("preprocess", [1, 2, 3, 4, 5])))
        #expect(header.type == Response.okMLaaSResponse.rawValue)
        #expect(Array(bytes[24...]) == [5, 0, 0, 0, 0, 0, 0, 0, 5, 4, 3, 2, 1])
        // The answer is cut to response_capacity, and to the room after the 32 bytes before it.
        let small = try driver.response(try driver.send(Self.request("preprocess", [1, 2, 3, 4, 5], capacity: 2))).bytes
        #expect(Array(small[24...]) == [2, 0, 0, 0, 0, 0, 0, 0, 5, 4])
        let tight = try driver.response(try driver.send(Self.request("preprocess", [1, 2, 3, 4, 5]), responseRoom: 35)).bytes
        #expect(Array(tight[24...]) == [3, 0, 0, 0, 0, 0, 0, 0, 5, 4, 3])
        // Lengths beyond the bound or the bytes present; short: UNSPEC.
        for request in [Self.request("preprocess", [], length: 4097), Self.request("preprocess", [1], length: 2),
                        Self.request("preprocess", [], capacity: 4097)] {
            let (code, status, _) = try Self.error(driver, request)
            #expect(code == Response.errorInvalidParameter.rawValue && status == 1)
        }
        #expect(try driver.call(Array(Self.request("preprocess", []).prefix(63))) == Response.errorUnspecified.rawValue)
        #expect(port.calls.withLock { $0 } == ["request preprocess 5 64", "request preprocess 5 2", "request preprocess 5 3"])
    }

    @Test func listShowsAtMostEightAndTheTotal() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        driver.device.bindMLaaS(FakeMLaaSPort((0 ..< 11).map { MLaaSGuestService(name: "s\($0)", kind: 1, loaded: true, enabled: false) }))
        let bytes = try driver.response(try driver.send(GPUDriver.simple(.mlaasList))).bytes
        var r = WireReader(bytes, at: 24)
        let (count, total) = (try r.u32(), try r.u32())
        #expect(count == 8 && total == 11)
        #expect(bytes.count == 24 + 8 + 8 * 40)
    }

    @Test func checksEveryGuestValueBeforeAskingThePort() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let port = FakeMLaaSPort([MLaaSGuestService(name: "preprocess", kind: 1, loaded: true, enabled: false)])
        driver.device.bindMLaaS(port)
        // Shorter than the structure: UNSPEC, as every request.
        #expect(try driver.call(Array(Self.enable("preprocess", []).prefix(63))) == Response.errorUnspecified.rawValue)
        #expect(try driver.call(Array(Self.disable(Self.name("preprocess")).prefix(55))) == Response.errorUnspecified.rawValue)
        // A length beyond the bound, or beyond the bytes present; a reserved word.
        for request in [Self.enable("preprocess", [], length: 4097), Self.enable("preprocess", [1, 2], length: 3),
                        Self.enable("preprocess", [], length: 0xffff_ffff), Self.enable("preprocess", [], reserved: 1)] {
            let (code, status, _) = try Self.error(driver, request)
            #expect(code == Response.errorInvalidParameter.rawValue && status == 1)
        }
        // Malformed names: empty, upper case, a leading '-', bytes after the NUL, no room for nothing else.
        var afterNUL = Self.name("pre")
        afterNUL[5] = 0x61
        for name in [Self.name(""), Self.name("Preprocess"), Self.name("-x"), afterNUL, Self.name("a/b")] {
            let (code, status, _) = try Self.error(driver, Self.disable(name))
            #expect(code == Response.errorInvalidParameter.rawValue && status == 1)
        }
        // 32 name bytes without a NUL are a valid name.
        #expect(try Self.error(driver, Self.disable(Array(repeating: 0x61, count: 32))).1 == 4)
        // ctx_id is reserved.
        #expect(try driver.call(Self.enable("preprocess", [], context: 3)) == Response.errorInvalidContextID.rawValue)
        #expect(port.calls.withLock { $0 } == ["disable \(String(repeating: "a", count: 32))"])
        // The maximum parameter block goes through.
        let largest = Self.enable("preprocess", [UInt8](repeating: 0x41, count: 4096))
        #expect(try driver.response(try driver.sendLarge(largest, at: GPUDriver.dataBase)).header.type == Response.okNoData.rawValue)
    }

    @Test func errorsFitTheResponseRoomAndNothingBoundIsUnavailable() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let unbound = try Self.error(driver, GPUDriver.simple(.mlaasList))
        #expect(unbound.0 == Response.errorUnspecified.rawValue && unbound.1 == 7)
        driver.device.bindMLaaS(FakeMLaaSPort([]))
        // Room for the header only: the code survives, without a reason.
        let bare = try Self.error(driver, Self.enable("nosuch", []), room: 24)
        #expect(bare.0 == Response.errorInvalidParameter.rawValue && bare.1 == nil)
        // Room for part of the message: as much as fits.
        let part = try Self.error(driver, Self.enable("nosuch", []), room: 36)
        #expect(part.0 == Response.errorInvalidParameter.rawValue && part.1 == 3 && part.2 == "'nos")
        driver.device.bindMLaaS(nil)
        #expect(try Self.error(driver, Self.disable(Self.name("x"))).1 == 7)
    }
}
