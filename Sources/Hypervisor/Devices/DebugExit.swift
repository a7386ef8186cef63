/// QEMU's isa-debug-exit: a write of value v to the port asks the VMM to end the VM.
///
/// QEMU makes its own process status (v << 1) | 1, which cannot express success; malvvm reports
/// v itself as the guest's exit code, so one guest binary ends both VMMs and callers decode
/// QEMU's status. Writes of any width are accepted, as QEMU does.
public final class DebugExit: BusDevice {
    public static let defaultPort: UInt64 = 0xf4
    public static let portCount: UInt64 = 4

    private let onExit: @Sendable (UInt32) -> Void

    public init(onExit: @escaping @Sendable (UInt32) -> Void) {
        self.onExit = onExit
    }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        for index in data.indices { data[index] = 0xff }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        onExit(UInt32(truncatingIfNeeded: data.prefix(4).littleEndianValue))
    }
}
