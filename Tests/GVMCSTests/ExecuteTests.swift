import Testing
@testable import GVMCS

/// `execute`: the indirect kernel stream. The unit translates the stream, the executor the
/// buffers it names; every failure is the exit the model defines and leaves the head on it.
@Suite("execute (indirect kernel streams)")
struct ExecuteTests {
    static let stream = Fixture.dataGVA
    static let streamLength: UInt64 = 64

    static func fixture(buffers: [(UInt64, UInt64, GEPTPermissions)] = []) throws -> Fixture {
        let fixture = try Fixture()
        fixture.executor.streamMemory = fixture.memory
        fixture.executor.streamBuffers = buffers
        try fixture.load()
        try fixture.guestView.store64(Fixture.dataGPA, FakeExecutor.validStreamMagic)
        return fixture
    }

    @Test("a stream runs as one command; its buffers are translated through both stages")
    func runs() throws {
        let fixture = try Self.fixture(buffers: [(Fixture.outGVA, 8192, [.read, .write])])
        try fixture.push(.execute(stream: Self.stream, length: Self.streamLength))
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .idle)
        #expect(try fixture.unit.gvmread(.commandRingHead) == 1)
        #expect(fixture.executor.streams.count == 1)
        let (stream, buffers) = fixture.executor.streams[0]
        #expect(stream.ranges == [GVMHostRange(address: fixture.host(Fixture.dataGPA), length: Self.streamLength)])
        #expect(stream.guestGPUAddress == Self.stream)
        #expect(buffers == [[GVMHostRange(address: fixture.host(Fixture.outGPA), length: 8192)]])
    }

    @Test("a stream that does not decode is an invalid command, cause 8; the head stays")
    func invalidStream() throws {
        let fixture = try Self.fixture()
        try fixture.guestView.store64(Fixture.dataGPA, 0xBAD)
        try fixture.push(.execute(stream: Self.stream, length: Self.streamLength))
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .invalidCommand(.invalidWork))
        #expect(record.qualification == 8)
        #expect(record.commandOffset == 8)
        #expect(try fixture.unit.gvmread(.commandRingHead) == 0)
    }

    @Test("an unmapped stream is a guest GPU page fault at its address")
    func unmappedStream() throws {
        let fixture = try Self.fixture()
        try fixture.push(.execute(stream: 0x7000_0000, length: Self.streamLength))
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .guestPageFault(GuestPageFaultCode(present: false, access: .read),
                                               guestGPUAddress: 0x7000_0000))
        #expect(fixture.executor.streams.isEmpty)
    }

    @Test("a buffer the stream names that is unmapped faults at that buffer's address")
    func unmappedBuffer() throws {
        let fixture = try Self.fixture(buffers: [(Fixture.outGVA, 64, .read), (0x7100_0008, 64, .read)])
        try fixture.push(.execute(stream: Self.stream, length: Self.streamLength))
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .guestPageFault(GuestPageFaultCode(present: false, access: .read),
                                               guestGPUAddress: 0x7100_0008))
        #expect(try fixture.unit.gvmread(.guestGPUAddress) == 0x7100_0008)
        #expect(try fixture.unit.gvmread(.commandRingHead) == 0)
    }

    @Test("a written buffer on a read-only page is a protection fault with the write bit")
    func readOnlyBuffer() throws {
        let fixture = try Self.fixture(buffers: [(Fixture.outGVA, 64, [.read, .write])])
        try fixture.mapGuest(Fixture.outGVA, to: Fixture.outGPA, writable: false)
        try fixture.push(.execute(stream: Self.stream, length: Self.streamLength))
        let record = try fixture.unit.gvmlaunch()
        #expect(record.exit == .guestPageFault(GuestPageFaultCode(present: true, access: [.read, .write]),
                                               guestGPUAddress: Fixture.outGVA))
    }

    @Test("a buffer whose guest-physical page the G-EPT lacks is a G-EPT violation")
    func geptViolation() throws {
        let fixture = try Self.fixture(buffers: [(0x7200_0000, 64, .read)])
        try fixture.mapGuest(0x7200_0000, to: 0x70_0000)   // beyond the 4 MiB of guest RAM
        try fixture.push(.execute(stream: Self.stream, length: Self.streamLength))
        let record = try fixture.unit.gvmlaunch()
        guard case .geptViolation(_, let gpa, let gva) = record.exit else {
            Issue.record("expected a G-EPT violation, got \(record.exit)")
            return
        }
        #expect(gpa == 0x70_0000)
        #expect(gva == 0x7200_0000)
    }

    @Test("decode: misaligned stream, length out of range, reserved operand, immediate set",
          arguments: [
              ([4, 0x5000_0004, 64, 0], GVMInvalidCommandCause.misalignedAddress, UInt32(8)),
              ([4, 0x5000_0000, 8, 0], .lengthOutOfRange, 16),
              ([4, 0x5000_0000, (1 << 20) + 8, 0], .lengthOutOfRange, 16),
              ([4, 0x5000_0000, 64, 1], .reservedBitsSet, 24),
              ([1 << 32 | 4, 0x5000_0000, 64, 0], .reservedBitsSet, 0),
          ] as [([UInt64], GVMInvalidCommandCause, UInt32)])
    func decode(words: [UInt64], cause: GVMInvalidCommandCause, offset: UInt32) {
        #expect(throws: GVMCommand.DecodeError(cause: cause, offset: offset)) {
            try GVMCommand.decode(words, vectorCount: 32)
        }
    }

    @Test("encode and decode round-trip")
    func roundTrip() throws {
        let command = GVMCommand.execute(stream: 0x1234_5678, length: 4096)
        #expect(try GVMCommand.decode(command.words, vectorCount: 32) == command)
    }
}
