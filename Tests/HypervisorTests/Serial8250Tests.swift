import Synchronization
import Testing
@testable import Hypervisor

/// A UART with its output and interrupt edges recorded.
final class UARTHarness: Sendable {
    final class Recorder: Sendable {
        let output = Mutex<[UInt8]>([])
        let interrupts = Atomic<Int>(0)
    }

    let recorder = Recorder()
    let uart: Serial8250

    init() {
        let recorder = self.recorder
        uart = Serial8250(output: { byte in recorder.output.withLock { $0.append(byte) } },
                          interrupt: { recorder.interrupts.add(1, ordering: .relaxed) })
    }

    func write(_ register: UInt64, _ value: UInt8) {
        [value].withUnsafeBytes { uart.write(offset: register, data: $0) }
    }

    func read(_ register: UInt64) -> UInt8 {
        var byte: [UInt8] = [0]
        byte.withUnsafeMutableBytes { uart.read(offset: register, data: $0) }
        return byte[0]
    }

    var sent: [UInt8] { recorder.output.withLock { $0 } }
    var edges: Int { recorder.interrupts.load(ordering: .relaxed) }
}

@Suite struct Serial8250Tests {
    let THR: UInt64 = 0, IER: UInt64 = 1, IIR: UInt64 = 2, LCR: UInt64 = 3, MCR: UInt64 = 4, LSR: UInt64 = 5
    let MSR: UInt64 = 6, SCR: UInt64 = 7

    @Test func transmitsWhatTheGuestWrites() {
        let h = UARTHarness()
        for byte in "hi\n".utf8 { h.write(THR, byte) }
        #expect(h.sent == Array("hi\n".utf8))
        #expect(h.read(LSR) == 0x60)  // THRE | TEMT: always ready
        #expect(h.edges == 0)  // no interrupt enabled
    }

    @Test func divisorLatchHidesDataAndInterruptRegisters() {
        let h = UARTHarness()
        h.write(LCR, 0x83)  // DLAB
        h.write(THR, 0x01)  // divisor low, not a byte to send
        h.write(IER, 0x00)
        #expect(h.read(THR) == 0x01)
        h.write(LCR, 0x03)
        #expect(h.sent.isEmpty)
        #expect(h.read(LCR) == 0x03)
    }

    @Test func enablingTHREInterruptRaisesItAndReadingIIRAcknowledges() {
        let h = UARTHarness()
        #expect(h.read(IIR) & 0x0f == 0x01)  // none pending
        h.write(IER, 0x02)
        #expect(h.edges == 1)
        #expect(h.read(IIR) & 0x0f == 0x02)
        #expect(h.read(IIR) & 0x0f == 0x01)  // acknowledged by the read
        h.write(THR, 0x41)
        #expect(h.edges == 2)
        #expect(h.read(IIR) & 0x0f == 0x02)
    }

    @Test func receivedDataSetsDataReadyAndItsInterrupt() {
        let h = UARTHarness()
        h.write(IER, 0x01)
        #expect(h.uart.enqueueInput(Array("ok".utf8)) == 2)
        #expect(h.edges == 1)
        #expect(h.read(LSR) & 0x01 == 0x01)
        #expect(h.read(IIR) & 0x0f == 0x04)
        #expect(h.read(THR) == UInt8(ascii: "o"))
        #expect(h.read(THR) == UInt8(ascii: "k"))
        #expect(h.read(LSR) & 0x01 == 0)
        #expect(h.read(IIR) & 0x0f == 0x01)
    }

    @Test func inputBeyondCapacityIsRefusedNotLost() {
        let h = UARTHarness()
        let big = [UInt8](repeating: 0x61, count: Serial8250.receiveCapacity + 10)
        #expect(h.uart.enqueueInput(big) == Serial8250.receiveCapacity)
        #expect(h.uart.enqueueInput([1]) == 0)
        _ = h.read(THR)
        #expect(h.uart.enqueueInput([1, 2]) == 1)
    }

    @Test func loopbackReturnsTransmittedBytesAndMirrorsModemLines() {
        let h = UARTHarness()
        h.write(MCR, 0x10 | 0x0a)  // loopback, RTS, OUT2
        h.write(THR, 0x5a)
        #expect(h.sent.isEmpty)
        #expect(h.read(THR) == 0x5a)
        #expect(h.read(MSR) == 0x10 | 0x80)  // CTS from RTS, DCD from OUT2
        h.write(MCR, 0x08)
        #expect(h.read(MSR) == 0xb0)
    }

    @Test func fifoControlShowsInIIRAndClearsInput() {
        let h = UARTHarness()
        h.uart.enqueueInput([1, 2, 3])
        h.write(IIR, 0x03)  // enable and clear receive FIFO
        #expect(h.read(IIR) & 0xc0 == 0xc0)
        #expect(h.read(LSR) & 0x01 == 0)
    }

    @Test func scratchHoldsAByteAndUnknownOffsetsAreHarmless() {
        let h = UARTHarness()
        h.write(SCR, 0x99)
        #expect(h.read(SCR) == 0x99)
        h.write(9, 1)
        #expect(h.read(9) == 0xff)
        var empty: [UInt8] = []
        empty.withUnsafeMutableBytes { h.uart.read(offset: 0, data: $0) }
    }
}

@Suite struct DebugExitTests {
    @Test(arguments: [([UInt8]([0x2a, 0, 0, 0]), UInt32(42)), ([UInt8]([0x03]), UInt32(3)), ([UInt8]([0x01, 0x02]), UInt32(0x201))])
    func reportsTheWrittenValue(bytes: [UInt8], expected: UInt32) {
        let seen = Mutex<UInt32?>(nil)
        let device = DebugExit { value in seen.withLock { $0 = value } }
        bytes.withUnsafeBytes { device.write(offset: 0, data: $0) }
        #expect(seen.withLock { $0 } == expected)
    }
}

@Suite struct MemorySizeTests {
    @Test(arguments: [("256M", UInt64(256 << 20)), ("256", 256 << 20), ("1G", 1 << 30), ("1GiB", 1 << 30),
                      ("512k", 512 << 10), ("4096B", 4096), ("2T", 2 << 40)])
    func parsesSizes(text: String, bytes: UInt64) {
        #expect(MemorySize.parse(text) == bytes)
    }

    @Test(arguments: ["", "M", "abc", "12Q", "-1M", "1.5G", "99999999999999999999", "17179869184T"])
    func rejectsNonSizes(text: String) {
        #expect(MemorySize.parse(text) == nil)
    }

    @Test func formatsForMessages() {
        #expect(MemorySize.format(256 << 20) == "256 MiB")
        #expect(MemorySize.format(3 << 29) == "1.5 GiB")
        #expect(MemorySize.format(100) == "100 bytes")
    }

    @Test func configurationRejectsImpossibleMemory() {
        #expect(throws: HypervisorError.self) { try MachineConfiguration(kernelPath: "k", memorySize: 0).validate() }
        #expect(throws: HypervisorError.self) { try MachineConfiguration(kernelPath: "k", memorySize: 1 << 62).validate() }
        #expect(throws: HypervisorError.self) { try MachineConfiguration(kernelPath: "k", memorySize: (4 << 20) + 1).validate() }
    }
}
