import Synchronization

/// An 8250/16550A UART as the guest sees it at eight I/O ports (0x3f8 for COM1).
///
/// A pure state machine, as vm-superio's: transmitted bytes go to `output`, and `interrupt`
/// fires on each new interrupt condition (an edge; the VM pulses the IRQ line). Transmission is
/// instantaneous, so THR is always empty and LSR always reports THRE|TEMT.
public final class Serial8250: BusDevice {
    public static let portCount: UInt64 = 8
    /// Bytes the guest has not read yet; past this, host input is refused rather than lost silently.
    public static let receiveCapacity = 1024

    enum Register: UInt64 {
        case data = 0, interruptEnable, interruptIdentification, lineControl, modemControl, lineStatus, modemStatus, scratch
    }

    struct InterruptEnable {
        static let receivedData: UInt8 = 0x01
        static let transmitterEmpty: UInt8 = 0x02
        static let receiverLineStatus: UInt8 = 0x04
        static let modemStatus: UInt8 = 0x08
    }

    struct InterruptIdentification {
        static let nonePending: UInt8 = 0x01
        static let transmitterEmpty: UInt8 = 0x02
        static let receivedData: UInt8 = 0x04
        static let fifoEnabled: UInt8 = 0xc0
    }

    struct LineStatus {
        static let dataReady: UInt8 = 0x01
        static let transmitterHoldingEmpty: UInt8 = 0x20
        static let transmitterEmpty: UInt8 = 0x40
    }

    static let divisorLatchAccess: UInt8 = 0x80
    static let loopback: UInt8 = 0x10
    /// DCD, DSR and CTS asserted: a cable is attached and ready.
    static let defaultModemStatus: UInt8 = 0xb0

    struct State {
        var divisorLow: UInt8 = 0x0c  // 9600 baud, as after a PC BIOS
        var divisorHigh: UInt8 = 0
        var interruptEnable: UInt8 = 0
        var lineControl: UInt8 = 0x03  // 8N1
        var modemControl: UInt8 = 0x08  // OUT2, which gates the IRQ on PCs
        var scratch: UInt8 = 0
        var fifoEnabled = false
        var transmitterEmptyPending = false
        var received: [UInt8] = []
        var receivedHead = 0

        var hasData: Bool { receivedHead < received.count }
        var divisorLatch: Bool { lineControl & Serial8250.divisorLatchAccess != 0 }
    }

    private let state = Mutex(State())
    private let output: @Sendable (UInt8) -> Void
    private let interrupt: @Sendable () -> Void

    public init(output: @escaping @Sendable (UInt8) -> Void, interrupt: @escaping @Sendable () -> Void) {
        self.output = output
        self.interrupt = interrupt
    }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard !data.isEmpty else { return }
        data[0] = readRegister(offset)
        for index in data.indices.dropFirst() { data[index] = 0 }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard let value = data.first else { return }
        writeRegister(offset, value)
    }

    /// Host input for the guest (a console's keystrokes). Returns how many bytes were taken.
    @discardableResult
    public func enqueueInput(_ bytes: [UInt8]) -> Int {
        let (taken, raise) = state.withLock { s -> (Int, Bool) in
            if s.receivedHead > 0 && s.receivedHead == s.received.count {
                s.received.removeAll(keepingCapacity: true)
                s.receivedHead = 0
            }
            let room = Self.receiveCapacity - (s.received.count - s.receivedHead)
            let taken = min(room, bytes.count)
            s.received.append(contentsOf: bytes.prefix(taken))
            return (taken, taken > 0 && s.interruptEnable & InterruptEnable.receivedData != 0)
        }
        if raise { interrupt() }
        return taken
    }

    private func readRegister(_ offset: UInt64) -> UInt8 {
        guard let register = Register(rawValue: offset) else { return 0xff }
        return state.withLock { s in
            switch register {
            case .data:
                if s.divisorLatch { return s.divisorLow }
                guard s.hasData else { return 0 }
                let byte = s.received[s.receivedHead]
                s.receivedHead += 1
                return byte
            case .interruptEnable:
                return s.divisorLatch ? s.divisorHigh : s.interruptEnable
            case .interruptIdentification:
                let fifo = s.fifoEnabled ? InterruptIdentification.fifoEnabled : 0
                if s.hasData && s.interruptEnable & InterruptEnable.receivedData != 0 {
                    return InterruptIdentification.receivedData | fifo
                }
                if s.transmitterEmptyPending && s.interruptEnable & InterruptEnable.transmitterEmpty != 0 {
                    // Reading IIR while it reports THRE acknowledges that interrupt.
                    s.transmitterEmptyPending = false
                    return InterruptIdentification.transmitterEmpty | fifo
                }
                return InterruptIdentification.nonePending | fifo
            case .lineControl:
                return s.lineControl
            case .modemControl:
                return s.modemControl
            case .lineStatus:
                return LineStatus.transmitterHoldingEmpty | LineStatus.transmitterEmpty | (s.hasData ? LineStatus.dataReady : 0)
            case .modemStatus:
                guard s.modemControl & Self.loopback != 0 else { return Self.defaultModemStatus }
                // Loopback wires DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD; Linux probes the UART this way.
                let mcr = s.modemControl
                return ((mcr & 0x02) << 3) | ((mcr & 0x01) << 5) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4)
            case .scratch:
                return s.scratch
            }
        }
    }

    private func writeRegister(_ offset: UInt64, _ value: UInt8) {
        guard let register = Register(rawValue: offset) else { return }
        var transmit: UInt8?
        let raise: Bool = state.withLock { s in
            switch register {
            case .data:
                if s.divisorLatch {
                    s.divisorLow = value
                    return false
                }
                if s.modemControl & Self.loopback != 0 {
                    s.received.append(value)
                } else {
                    transmit = value
                }
                s.transmitterEmptyPending = true
                return s.interruptEnable & (InterruptEnable.transmitterEmpty | InterruptEnable.receivedData) != 0
            case .interruptEnable:
                if s.divisorLatch {
                    s.divisorHigh = value
                    return false
                }
                let newlyEnabled = value & ~s.interruptEnable
                s.interruptEnable = value & 0x0f
                // Enabling THRE while the holding register is empty raises it at once (Linux's
                // 8250 driver starts transmission this way).
                if newlyEnabled & InterruptEnable.transmitterEmpty != 0 {
                    s.transmitterEmptyPending = true
                    return true
                }
                return newlyEnabled & InterruptEnable.receivedData != 0 && s.hasData
            case .interruptIdentification:
                s.fifoEnabled = value & 0x01 != 0
                if value & 0x02 != 0 {
                    s.received.removeAll()
                    s.receivedHead = 0
                }
                return false
            case .lineControl:
                s.lineControl = value
            case .modemControl:
                s.modemControl = value & 0x1f
            case .lineStatus, .modemStatus:
                break  // read-only
            case .scratch:
                s.scratch = value
            }
            return false
        }
        if let transmit { output(transmit) }
        if raise { interrupt() }
    }
}
