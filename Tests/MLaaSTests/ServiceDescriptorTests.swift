import CMLaaS
import Foundation
import Glibc
@testable import MLaaS
import Testing

@Suite struct ServiceNameTests {
    @Test func namesAreLikeDNSLabels() {
        #expect(ServiceABI.isValidName("preprocess"))
        #expect(ServiceABI.isValidName("learned-slice"))
        #expect(ServiceABI.isValidName("x2"))
        #expect(!ServiceABI.isValidName(""))
        #expect(!ServiceABI.isValidName("-x"))
        #expect(!ServiceABI.isValidName("Pre"))
        #expect(!ServiceABI.isValidName("a/b"))
        #expect(!ServiceABI.isValidName(String(repeating: "a", count: 33)))
    }
}

/// Every descriptor field the host checks, on descriptors built here (no module needed).
@Suite struct ServiceDescriptorTests {
    nonisolated(unsafe) static let name = strdup("good")!
    nonisolated(unsafe) static let version = strdup("1.0")!

    static func good() -> malv_mlaas_service {
        var service = malv_mlaas_service()
        service.magic = UInt32(MALV_MLAAS_MAGIC)
        service.abi_version = UInt32(MALV_MLAAS_ABI_VERSION)
        service.struct_size = UInt32(MemoryLayout<malv_mlaas_service>.size)
        service.kind = UInt32(MALV_MLAAS_KIND_ML_FOR_OS.rawValue)
        service.name = UnsafePointer(name)
        service.version = UnsafePointer(version)
        service.initialize = { _, _ in 0 }
        service.attach = { _, _, _ in 0 }
        service.detach = { _, _ in }
        service.unload = { _ in }
        return service
    }

    func check(_ service: malv_mlaas_service) -> MLaaSError? {
        var copy = service
        do throws(MLaaSError) {
            _ = try ServiceDescriptor(validating: &copy, path: "/m/x.so")
            return nil
        } catch { return error }
    }

    @Test func aWellFormedDescriptorPasses() {
        #expect(check(Self.good()) == nil)
    }

    @Test func theVersionDecidesBeforeAnyOtherField() {
        var older = Self.good()
        older.abi_version = 0
        older.struct_size = 12  // an older, smaller struct: never read past the version
        #expect(check(older) == .wrongABIVersion(path: "/m/x.so", module: 0, host: ServiceABI.version))
        #expect(check(older)?.description.contains("(an older module)") == true)
    }

    @Test(arguments: [
        ("magic", "magic is 0x0"),
        ("size", "struct_size is 8 bytes"),
        ("kind", "kind 3 is neither"),
        ("name", "the name must be"),
        ("nullName", "the name must be"),
        ("version", "the version must be"),
        ("initialize", "initialize is NULL"),
        ("detach", "detach is NULL"),
        ("reserved", "reserved fields must be NULL"),
    ])
    func aMalformedFieldIsNamed(field: String, message: String) {
        var service = Self.good()
        let badName = strdup("Bad Name")!
        let emptyVersion = strdup("")!
        defer { free(badName); free(emptyVersion) }
        switch field {
        case "magic": service.magic = 0
        case "size": service.struct_size = 8
        case "kind": service.kind = 3
        case "name": service.name = UnsafePointer(badName)
        case "nullName": service.name = nil
        case "version": service.version = UnsafePointer(emptyVersion)
        case "initialize": service.initialize = nil
        case "detach": service.detach = nil
        default: service.reserved.2 = UnsafeRawPointer(bitPattern: 0x1000)
        }
        let error = check(service)
        guard case let .invalidDescriptor(path, reason)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(path == "/m/x.so" && reason.contains(message), "\(reason)")
    }
}

/// The host table's read_range: bounded, read-only, only the VM's own grants while attached.
@Suite struct HostCapabilityTests {
    @Test func readRangeStaysInsideTheGrantAndEndsWithTheAttachment() throws {
        let disk = try Modules.dataset(records: 10, bytesPerImage: 16)
        defer { unlink(disk) }
        let contents = [UInt8](try Data(contentsOf: URL(fileURLWithPath: disk)))
        let context = HostContext(serviceName: "test", scheduling: nil)
        let table = context.makeTable()
        defer { table.deallocate() }
        #expect(table.pointee.abi_version == 2 && table.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_host>.size))
        // ABI 2: the GPU table is there, and the block capability; the scheduler capability only
        // where the process schedules GPU work.
        #expect(table.pointee.gpu?.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_gpu>.size))
        #expect(table.pointee.scheduler == nil && table.pointee.block != nil)
        // A grant of bytes 17..<119 (records 1-6).
        let grant = try OpenGrant(handle: 77, grant: DiskGrant(diskIndex: 0, path: disk, offset: 17, length: 102))
        context.attach(vm: 5, name: "vm5", grants: [grant])
        var buffer = [UInt8](repeating: 0, count: 200)
        func read(vm: UInt64 = 5, range: UInt64 = 77, offset: UInt64, length: UInt64) -> Int64 {
            buffer.withUnsafeMutableBytes { table.pointee.read_range!(table.pointee.host_context, vm, range, offset, $0.baseAddress, length) }
        }
        #expect(read(offset: 0, length: 102) == 102)
        #expect(Array(buffer[0 ..< 102]) == Array(contents[17 ..< 119]))
        #expect(read(offset: 100, length: 2) == 2)
        #expect(read(offset: 101, length: 2) == Int64(MALV_MLAAS_E_RANGE))
        #expect(read(offset: 103, length: 0) == Int64(MALV_MLAAS_E_RANGE))
        #expect(read(offset: UInt64.max, length: 2) == Int64(MALV_MLAAS_E_RANGE))
        #expect(read(offset: 0, length: HostContext.maxReadBytes + 1) == Int64(MALV_MLAAS_E_RANGE))
        #expect(read(range: 78, offset: 0, length: 1) == Int64(MALV_MLAAS_E_NOT_FOUND))
        #expect(read(vm: 6, offset: 0, length: 1) == Int64(MALV_MLAAS_E_NOT_FOUND))
        #expect(table.pointee.read_range!(table.pointee.host_context, 5, 77, 0, nil, 1) == Int64(MALV_MLAAS_E_INVALID))
        context.detach(vm: 5)
        #expect(read(offset: 0, length: 1) == Int64(MALV_MLAAS_E_DETACHED))
    }

    @Test func aGrantBeyondTheDiskIsRefused() throws {
        let disk = try Modules.dataset(records: 1, bytesPerImage: 16)
        defer { unlink(disk) }
        #expect(throws: MLaaSError.self) { try OpenGrant(handle: 1, grant: DiskGrant(diskIndex: 0, path: disk, offset: 10, length: 8)) }
        #expect(throws: MLaaSError.self) { try VMDescription.grantingWholeDisks(name: "x", paths: ["/nonexistent.img"]) }
        #expect(try VMDescription.grantingWholeDisks(name: "x", paths: [disk]).disks == [DiskGrant(diskIndex: 0, path: disk, offset: 0, length: 17)])
    }
}
