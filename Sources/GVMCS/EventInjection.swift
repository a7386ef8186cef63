/// The entry event-injection information field (0x4006), laid out as VMX's VM-entry
/// interruption-information field: bits 7:0 vector, 10:8 type, 30:11 reserved, 31 valid.
///
/// When valid, a successful entry delivers the event to the guest (through the event sink,
/// which the device backs with an irqfd) and the unit clears the valid bit on the next exit,
/// as VMX does, so an event is never delivered twice.
public struct GVMEventInjection: Hashable, Sendable {
    public enum EventType: UInt32, Sendable, CaseIterable {
        /// A completion interrupt on the guest's completion vector (an MSI-X vector).
        case completion = 0
        /// A GPU fault notification: the guest driver learns its context faulted.
        case faultNotification = 1
    }

    public static let validBit: UInt32 = 1 << 31
    static let reservedMask: UInt32 = 0x7FFF_F800

    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public init(vector: UInt8, type: EventType) {
        rawValue = Self.validBit | type.rawValue << 8 | UInt32(vector)
    }

    public static let none = GVMEventInjection(rawValue: 0)

    public var isValid: Bool { rawValue & Self.validBit != 0 }
    public var vector: UInt8 { UInt8(truncatingIfNeeded: rawValue) }
    public var typeBits: UInt32 { (rawValue >> 8) & 7 }
    /// `nil` for the types 2-7, which are reserved.
    public var type: EventType? { EventType(rawValue: typeBits) }
    public var reservedBitsClear: Bool { rawValue & Self.reservedMask == 0 }
}
