import VGPUCore

/// The virtio-gpu wire protocol (virtio 1.2 §5.7.6; Linux include/uapi/linux/virtio_gpu.h):
/// command and response codes, flags and the fixed sizes of the structures we decode.
/// Everything on the wire is little-endian.
public enum VirtioGPUProtocol {
    /// virtio device id 16 (virtio 1.2 §5).
    public static let deviceType: UInt16 = 16

    public enum Feature {
        public static let virgl: UInt64 = 1 << 0
        public static let edid: UInt64 = 1 << 1
        public static let resourceUUID: UInt64 = 1 << 2
        public static let resourceBlob: UInt64 = 1 << 3
        public static let contextInit: UInt64 = 1 << 4
    }

    /// enum virtio_gpu_ctrl_type.
    public enum Command: UInt32, Sendable {
        case getDisplayInfo = 0x0100
        case resourceCreate2D = 0x0101
        case resourceUnref = 0x0102
        case setScanout = 0x0103
        case resourceFlush = 0x0104
        case transferToHost2D = 0x0105
        case resourceAttachBacking = 0x0106
        case resourceDetachBacking = 0x0107
        case getCapsetInfo = 0x0108
        case getCapset = 0x0109
        case getEDID = 0x010a
        case resourceAssignUUID = 0x010b
        case resourceCreateBlob = 0x010c
        case setScanoutBlob = 0x010d

        case contextCreate = 0x0200
        case contextDestroy = 0x0201
        case contextAttachResource = 0x0202
        case contextDetachResource = 0x0203
        case resourceCreate3D = 0x0204
        case transferToHost3D = 0x0205
        case transferFromHost3D = 0x0206
        case submit3D = 0x0207
        case resourceMapBlob = 0x0208
        case resourceUnmapBlob = 0x0209

        case updateCursor = 0x0300
        case moveCursor = 0x0301

        /// malvvm's MLaaS requests (capset 0x4d version 2; docs/vgpu-protocol.md), in a range
        /// far from virtio's ('M' 0x4d in the high byte).
        case mlaasList = 0x4d00
        case mlaasEnable = 0x4d01
        case mlaasDisable = 0x4d02
        case mlaasRequest = 0x4d03
    }

    /// Response codes (the same enum, 0x11xx success and 0x12xx errors).
    public enum Response: UInt32, Sendable, Error {
        case okNoData = 0x1100
        case okDisplayInfo = 0x1101
        case okCapsetInfo = 0x1102
        case okCapset = 0x1103
        /// MLAAS_LIST's answer (ours, beside MLaaS's request range).
        case okMLaaSList = 0x4d80
        /// MLAAS_REQUEST's answer: the service's response bytes.
        case okMLaaSResponse = 0x4d81

        case errorUnspecified = 0x1200
        case errorOutOfMemory = 0x1201
        case errorInvalidScanoutID = 0x1202
        case errorInvalidResourceID = 0x1203
        case errorInvalidContextID = 0x1204
        case errorInvalidParameter = 0x1205
    }

    public static let flagFence: UInt32 = 1 << 0
    public static let flagInfoRingIndex: UInt32 = 1 << 1

    public enum BlobMemory: UInt32, Sendable {
        case guest = 1
        case host3D = 2
        case host3DGuest = 3
    }

    public enum BlobFlag {
        public static let mappable: UInt32 = 1 << 0
        public static let shareable: UInt32 = 1 << 1
        public static let crossDevice: UInt32 = 1 << 2
    }

    public static let contextInitCapsetMask: UInt32 = 0xff
    public static let maxScanouts = 16

    // Sizes of the request structures (all include the 24-byte header).
    static let headerSize = 24
    static let memoryEntrySize = 16
    static let resourceUnrefSize = 32
    static let attachBackingSize = 32
    static let detachBackingSize = 32
    static let getCapsetInfoSize = 32
    static let getCapsetSize = 32
    static let resourceCreateBlobSize = 56
    static let contextCreateSize = 96
    static let contextDestroySize = 24
    static let contextResourceSize = 32
    static let transferHost3DSize = 72
    static let submit3DSize = 32
    static let updateCursorSize = 56

    // Sizes of the responses.
    static let displayInfoResponseSize = headerSize + maxScanouts * 24
    static let capsetInfoResponseSize = headerSize + 16
}

/// struct virtio_gpu_ctrl_hdr.
public struct ControlHeader: Equatable, Sendable {
    public var type: UInt32
    public var flags: UInt32
    public var fenceID: UInt64
    public var contextID: UInt32
    public var ringIndex: UInt8

    public init(type: UInt32, flags: UInt32 = 0, fenceID: UInt64 = 0, contextID: UInt32 = 0, ringIndex: UInt8 = 0) {
        self.type = type
        self.flags = flags
        self.fenceID = fenceID
        self.contextID = contextID
        self.ringIndex = ringIndex
    }

    public var fenced: Bool { flags & VirtioGPUProtocol.flagFence != 0 }
    public var hasRingIndex: Bool { flags & VirtioGPUProtocol.flagInfoRingIndex != 0 }

    init(_ reader: inout WireReader) throws(WireReader.Truncated) {
        type = try reader.u32()
        flags = try reader.u32()
        fenceID = try reader.u64()
        contextID = try reader.u32()
        ringIndex = try reader.u8()
        try reader.skip(3)
    }

    func encode(into writer: inout WireWriter) {
        writer.u32(type)
        writer.u32(flags)
        writer.u64(fenceID)
        writer.u32(contextID)
        writer.u8(ringIndex)
        writer.zeros(3)
    }

    /// The header of the response to this request: the response code, and the fence id,
    /// context id and ring index echoed when the request was fenced (virtio 1.2 §5.7.6.7:
    /// the device must set FLAG_FENCE, fence_id and, with INFO_RING_IDX, ring_idx as given).
    func response(_ code: VirtioGPUProtocol.Response) -> ControlHeader {
        guard fenced else { return ControlHeader(type: code.rawValue) }
        let echoed = flags & (VirtioGPUProtocol.flagFence | VirtioGPUProtocol.flagInfoRingIndex)
        return ControlHeader(type: code.rawValue, flags: echoed, fenceID: fenceID, contextID: contextID,
                             ringIndex: hasRingIndex ? ringIndex : 0)
    }
}

extension WireReader {
    /// Fields of a request whose size was checked up front; running short still answers
    /// UNSPEC rather than trapping.
    mutating func field32() throws(VirtioGPUProtocol.Response) -> UInt32 {
        do { return try u32() } catch { throw .errorUnspecified }
    }

    mutating func field64() throws(VirtioGPUProtocol.Response) -> UInt64 {
        do { return try u64() } catch { throw .errorUnspecified }
    }
}
