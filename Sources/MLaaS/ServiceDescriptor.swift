import CMLaaS
import Glibc

/// The C ABI's constants as Swift sees them (Sources/CMLaaS/include/malv_mlaas.h).
public enum ServiceABI {
    public static let version = UInt32(MALV_MLAAS_ABI_VERSION)
    public static let entrySymbol = MALV_MLAAS_ENTRY_SYMBOL
    static let magic = UInt32(MALV_MLAAS_MAGIC)
    static let nameMax = Int(MALV_MLAAS_NAME_MAX)
    static let versionMax = Int(MALV_MLAAS_VERSION_MAX)
    static let descriptionMax = Int(MALV_MLAAS_DESCRIPTION_MAX)
    static let errorMax = Int(MALV_MLAAS_ERROR_MAX)

    public static func statusString(_ status: Int32) -> String {
        "\(String(cString: malv_mlaas_status_string(status))) (\(status))"
    }

    /// Whether `name` is a valid service name: [a-z0-9][a-z0-9-]*, at most 32 bytes.
    public static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1 ... nameMax).contains(bytes.count) else { return false }
        func allowed(_ byte: UInt8) -> Bool { (0x61 ... 0x7a).contains(byte) || (0x30 ... 0x39).contains(byte) }
        return allowed(bytes[0]) && bytes.dropFirst().allSatisfy { allowed($0) || $0 == 0x2d }
    }
}

/// os-for-ml or ml-for-os (issue #17's two halves).
public enum ServiceKind: String, Sendable, Codable, Equatable {
    case osForML = "os-for-ml"
    case mlForOS = "ml-for-os"
}

/// A module's descriptor after every field was checked: Swift copies of its strings and its
/// entry points.
struct ServiceDescriptor {
    typealias Initialize = @convention(c) (UnsafePointer<malv_mlaas_host>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
    typealias Attach = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<malv_mlaas_vm>?,
                                       UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
    typealias Configure = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeRawPointer?, UInt64,
                                          UnsafeMutablePointer<CChar>?, UInt64) -> Int32
    typealias Detach = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void
    typealias Unload = @convention(c) (UnsafeMutableRawPointer?) -> Void
    typealias Disable = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void
    typealias Request = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeRawPointer?, UInt64,
                                        UnsafeMutableRawPointer?, UInt64, UnsafeMutablePointer<CChar>?, UInt64) -> Int64

    let name: String
    let version: String
    let kind: ServiceKind
    let description: String?
    let initialize: Initialize
    let attach: Attach
    let configure: Configure?
    let detach: Detach
    let unload: Unload
    let disable: Disable?
    let request: Request?

    /// Checks `raw` field by field, in an order that never reads past what an older or newer
    /// module's struct holds: magic and version first (the first 8 bytes of every version),
    /// then the size, and only then the rest.
    init(validating raw: UnsafePointer<malv_mlaas_service>, path: String) throws(MLaaSError) {
        func invalid(_ reason: String) -> MLaaSError { .invalidDescriptor(path: path, reason: reason) }
        let header = UnsafeRawPointer(raw)
        let magic = header.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        guard magic == ServiceABI.magic else {
            throw invalid("magic is 0x\(String(magic, radix: 16)), not 0x\(String(ServiceABI.magic, radix: 16)) ('MLAS')")
        }
        let abi = header.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        guard abi == ServiceABI.version else { throw .wrongABIVersion(path: path, module: abi, host: ServiceABI.version) }
        let size = header.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard size == MemoryLayout<malv_mlaas_service>.size else {
            throw invalid("struct_size is \(size) bytes; ABI \(ServiceABI.version)'s descriptor is \(MemoryLayout<malv_mlaas_service>.size)")
        }
        let service = raw.pointee
        switch service.kind {
        case UInt32(MALV_MLAAS_KIND_OS_FOR_ML.rawValue): kind = .osForML
        case UInt32(MALV_MLAAS_KIND_ML_FOR_OS.rawValue): kind = .mlForOS
        default: throw invalid("kind \(service.kind) is neither os-for-ml (1) nor ml-for-os (2)")
        }
        guard let name = Self.string(service.name, max: ServiceABI.nameMax), ServiceABI.isValidName(name) else {
            throw invalid("the name must be 1-\(ServiceABI.nameMax) characters of a-z, 0-9 and '-', starting with a letter or digit")
        }
        guard let version = Self.string(service.version, max: ServiceABI.versionMax), !version.isEmpty,
              version.utf8.allSatisfy({ (0x21 ... 0x7e).contains($0) }) else {
            throw invalid("the version must be 1-\(ServiceABI.versionMax) printable ASCII characters")
        }
        var description: String?
        if let text = service.description {
            guard let string = Self.string(text, max: ServiceABI.descriptionMax), string.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7f }) else {
                throw invalid("the description must be one line of at most \(ServiceABI.descriptionMax) bytes")
            }
            description = string
        }
        guard let initialize = service.initialize else { throw invalid("initialize is NULL") }
        guard let attach = service.attach else { throw invalid("attach is NULL") }
        guard let detach = service.detach else { throw invalid("detach is NULL") }
        guard let unload = service.unload else { throw invalid("unload is NULL") }
        let reserved = withUnsafeBytes(of: service.reserved) { $0.allSatisfy { $0 == 0 } }
        guard reserved else {
            throw invalid("reserved fields must be NULL in ABI \(ServiceABI.version)")
        }
        self.name = name
        self.version = version
        self.description = description
        self.initialize = initialize
        self.attach = attach
        self.configure = service.configure
        self.detach = detach
        self.unload = unload
        disable = service.disable
        request = service.request
    }

    /// A NUL-terminated string of at most `max` bytes, or nil (NULL, too long).
    static func string(_ pointer: UnsafePointer<CChar>?, max: Int) -> String? {
        guard let pointer else { return nil }
        let length = strnlen(pointer, max + 1)
        guard length <= max else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }
}
