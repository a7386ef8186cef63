import VGPUCore

/// The MLaaS requests of capset version 2 (docs/vgpu-protocol.md, "MLaaS requests"): the guest
/// lists the services its VM is permitted, enables one with parameters (the bytes the
/// service's `configure` gets) and disables it. The device decodes and checks every guest
/// value and encodes the answers; what the requests do is the VM's `MLaaSGuestPort`, bound by
/// the VM's process (`bindMLaaS`), so this module never sees the service registry.
///
/// Requests are answered on the device thread: `configure` is the service's, bounded by the
/// service (the preprocess validation reads at most one bounded range).
extension VirtioGPU {
    /// Capset v2 `mlaas_flags` bit 0: MLaaS requests reach the VM's services.
    static let capsetMLaaSRequests: UInt32 = 1 << 0
    /// `char name[32]`, NUL-padded.
    static let mlaasNameBytes = 32
    /// hdr, name, le32 parameters_length, le32 reserved; the parameters follow.
    static let mlaasEnableSize = VirtioGPUProtocol.headerSize + mlaasNameBytes + 8
    /// hdr, name.
    static let mlaasDisableSize = VirtioGPUProtocol.headerSize + mlaasNameBytes
    /// hdr, name, le32 request_length, le32 response_capacity; the request follows.
    static let mlaasRequestSize = VirtioGPUProtocol.headerSize + mlaasNameBytes + 8
    /// The most bytes one MLAAS_REQUEST carries, and one answer.
    public static let mlaasMaxRequestBytes = 4096
    /// The most parameter bytes one ENABLE carries.
    public static let mlaasMaxParameterBytes = 4096
    /// Entries in one LIST answer (24 + 8 + 8 × 40 = 352 bytes); `total` says how many exist.
    public static let mlaasMaxListEntries = 8
    static let mlaasListEntrySize = mlaasNameBytes + 8
    /// The most message bytes an error answer carries (after its 8-byte status and length).
    public static let mlaasMaxMessageBytes = 200

    /// Binds the VM's MLaaS services to this vGPU (nil: none); guests see capset v2's flag.
    public func bindMLaaS(_ port: (any MLaaSGuestPort)?) {
        mlaasLock.withLock { mlaasPort = port }
    }

    func mlaas(_ request: Request, _ command: VirtioGPUProtocol.Command, _ bytes: [UInt8]) throws(VirtioGPUProtocol.Response) -> [UInt8] {
        let header = request.header
        let minimum = switch command {
        case .mlaasEnable: Self.mlaasEnableSize
        case .mlaasDisable: Self.mlaasDisableSize
        case .mlaasRequest: Self.mlaasRequestSize
        default: VirtioGPUProtocol.headerSize
        }
        // Shorter than its structure: UNSPEC, as every request.
        guard bytes.count >= minimum else { throw .errorUnspecified }
        // The requests are the VM's, not a context's: ctx_id is reserved.
        guard header.contextID == 0 else { throw .errorInvalidContextID }
        do throws(MLaaSGuestError) {
            guard let port = mlaasLock.withLock({ mlaasPort }) else {
                throw MLaaSGuestError(.unavailable, "this vGPU carries no MLaaS requests")
            }
            switch command {
            case .mlaasEnable:
                let name = try Self.serviceName(bytes)
                var r = WireReader(bytes, at: Self.mlaasDisableSize)
                guard let length = try? r.u32(), let reserved = try? r.u32() else { throw MLaaSGuestError(.malformed, "short request") }
                guard reserved == 0 else { throw MLaaSGuestError(.malformed, "reserved field is not 0") }
                guard Int(length) <= Self.mlaasMaxParameterBytes else {
                    throw MLaaSGuestError(.malformed, "parameters of \(length) bytes (at most \(Self.mlaasMaxParameterBytes))")
                }
                // The parameters must be in the request (overflow-free: both sides are small).
                guard Int(length) <= bytes.count - Self.mlaasEnableSize else {
                    throw MLaaSGuestError(.malformed, "parameters_length \(length) runs past the request")
                }
                let parameters = Array(bytes[Self.mlaasEnableSize ..< Self.mlaasEnableSize + Int(length)])
                // This vGPU's contexts are the ones the service may compute on.
                try port.mlaasEnable(name, parameters: parameters, gpu: self)
                return encode(header.response(.okNoData))
            case .mlaasRequest:
                let name = try Self.serviceName(bytes)
                var r = WireReader(bytes, at: Self.mlaasDisableSize)
                guard let length = try? r.u32(), let capacity = try? r.u32() else { throw MLaaSGuestError(.malformed, "short request") }
                guard Int(length) <= Self.mlaasMaxRequestBytes, Int(capacity) <= Self.mlaasMaxRequestBytes else {
                    throw MLaaSGuestError(.malformed, "request_length \(length) or response_capacity \(capacity) above \(Self.mlaasMaxRequestBytes)")
                }
                guard Int(length) <= bytes.count - Self.mlaasRequestSize else {
                    throw MLaaSGuestError(.malformed, "request_length \(length) runs past the request")
                }
                // The answer must fit the driver's response buffer: hdr, le32 length, le32 reserved, bytes.
                let room = request.chain.writableLength
                let fits = room > UInt64(VirtioGPUProtocol.headerSize + 8) ? Int(min(room - UInt64(VirtioGPUProtocol.headerSize + 8), UInt64(capacity))) : 0
                let answer = try port.mlaasRequest(name, request: Array(bytes[Self.mlaasRequestSize ..< Self.mlaasRequestSize + Int(length)]),
                                                   capacity: fits)
                var w = WireWriter(capacity: 8 + answer.count)
                w.u32(UInt32(answer.count))
                w.u32(0)
                w.append(answer)
                return encode(header.response(.okMLaaSResponse), w.bytes)
            case .mlaasDisable:
                try port.mlaasDisable(try Self.serviceName(bytes))
                return encode(header.response(.okNoData))
            default:
                let services = port.mlaasServices()
                var w = WireWriter(capacity: 8 + Self.mlaasMaxListEntries * Self.mlaasListEntrySize)
                let shown = services.prefix(Self.mlaasMaxListEntries)
                w.u32(UInt32(shown.count))
                w.u32(UInt32(clamping: services.count))
                for service in shown {
                    let name = Array(service.name.utf8.prefix(Self.mlaasNameBytes))
                    w.append(name)
                    w.zeros(Self.mlaasNameBytes - name.count)
                    w.u32(service.kind)
                    w.u32((service.loaded ? 1 : 0) | (service.enabled ? 2 : 0))
                }
                return encode(header.response(.okMLaaSList), w.bytes)
            }
        } catch {
            logger.debug("vGPU MLaaS request refused: \(error.message)", metadata: ["device": "\(name)"])
            return mlaasError(header, error, room: request.chain.writableLength)
        }
    }

    /// `char name[32]` after the header: `[a-z0-9][a-z0-9-]*`, then NULs only.
    static func serviceName(_ bytes: [UInt8]) throws(MLaaSGuestError) -> String {
        let field = bytes[VirtioGPUProtocol.headerSize ..< VirtioGPUProtocol.headerSize + mlaasNameBytes]
        let length = field.firstIndex(of: 0).map { $0 - field.startIndex } ?? mlaasNameBytes
        let name = field.prefix(length)
        func allowed(_ c: UInt8, first: Bool) -> Bool {
            (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || (!first && c == 0x2d)
        }
        guard let head = name.first, allowed(head, first: true), name.dropFirst().allSatisfy({ allowed($0, first: false) }),
              field.dropFirst(length).allSatisfy({ $0 == 0 }) else {
            throw MLaaSGuestError(.malformed, "malformed service name (a-z, 0-9 and '-', NUL-padded to 32 bytes)")
        }
        return String(decoding: name, as: UTF8.self)
    }

    /// An existing error code in the header, then `le32 mlaas_status, le32 message_length,
    /// message` — as much as the driver's response room holds (at least the header).
    func mlaasError(_ header: ControlHeader, _ error: MLaaSGuestError, room: UInt64) -> [UInt8] {
        let code: VirtioGPUProtocol.Response = switch error.reason {
        case .malformed, .unknownService, .notPermitted, .refused, .notEnabled: .errorInvalidParameter
        case .notLoaded, .unavailable, .internalError: .errorUnspecified
        }
        let headerSize = UInt64(VirtioGPUProtocol.headerSize)
        guard room >= headerSize + 8 else { return encode(header.response(code)) }
        // One printable line.
        let printable = error.message.utf8.map { $0 >= 0x20 && $0 < 0x7f ? $0 : UInt8(ascii: "?") }
        let message = Array(printable.prefix(min(Self.mlaasMaxMessageBytes, Int(room - headerSize - 8))))
        var w = WireWriter(capacity: 8 + message.count)
        w.u32(error.reason.rawValue)
        w.u32(UInt32(message.count))
        w.append(message)
        return encode(header.response(code), w.bytes)
    }
}
