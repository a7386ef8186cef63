/// The hardware-reduced ACPI sleep and reset registers (ACPI 6.4 §4.8.3.7, §4.8.3.6) that the
/// FADT names, on I/O ports: the guest's `poweroff` writes SLP_TYP 5 (S5, as the DSDT's `_S5`
/// says) with SLP_EN to the sleep control register, its `reboot` writes the reset value to the
/// reset register. malvvm ends the VM either way (a reboot ends it too, as Firecracker does),
/// so `malvvm run` returns 0.
public final class ACPIPowerControl: BusDevice {
    public static let basePort: UInt64 = 0x600
    public static let portCount: UInt64 = 3
    /// Offsets from `basePort`, one byte each.
    static let sleepControl: UInt64 = 0
    static let sleepStatus: UInt64 = 1
    static let reset: UInt64 = 2
    /// The `_S5` sleep type the DSDT announces and the reset value the FADT names.
    public static let softOffSleepType: UInt8 = 5
    public static let resetValue: UInt8 = 1
    static let sleepEnable: UInt8 = 1 << 5

    public enum Request: Sendable, Equatable { case powerOff, reset }

    private let onRequest: @Sendable (Request) -> Void

    public init(onRequest: @escaping @Sendable (Request) -> Void) {
        self.onRequest = onRequest
    }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        // Sleep status: WAK_STS (bit 7) never set, since the guest never wakes from S5 here.
        for index in data.indices { data[index] = 0 }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard let value = data.first else { return }
        switch offset {
        case Self.sleepControl:
            // SLP_TYP in bits 4:2; other sleep states (S1-S4) are not offered, so ignored.
            if value & Self.sleepEnable != 0 && (value >> 2) & 0x7 == Self.softOffSleepType { onRequest(.powerOff) }
        case Self.reset:
            if value == Self.resetValue { onRequest(.reset) }
        default:
            break
        }
    }
}
