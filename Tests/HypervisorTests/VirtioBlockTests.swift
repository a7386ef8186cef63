import VirtioTestSupport
import Glibc
import Testing
@testable import Hypervisor

/// virtio-blk requests built by hand on a test ring, against a real file.
@Suite struct VirtioBlockTests {
    static let header = GuestAddress(0x8000)
    static let data = GuestAddress(0x10000)
    static let status = GuestAddress(0x9000)

    final class Disk {
        let path: String
        init(sectors: Int) {
            path = "/tmp/malvvm-blk-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).img"
            let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
            ftruncate(fd, off_t(sectors * 512))
            close(fd)
        }
        deinit { unlink(path) }

        func bytes(at offset: Int, count: Int) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            let fd = open(path, O_RDONLY)
            _ = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            close(fd)
            return out
        }
    }

    /// Sends one request (header, optional data of `length`, status) and returns (status, used length).
    func request(_ device: VirtioBlock, ring: inout TestRing, type: UInt32, sector: UInt64, length: UInt32,
                 dataWritable: Bool) throws -> (UInt8, UInt32) {
        try ring.memory.write(type, at: Self.header)
        try ring.memory.write(UInt32(0), at: GuestAddress(Self.header.raw + 4))
        try ring.memory.write(sector, at: GuestAddress(Self.header.raw + 8))
        try ring.memory.write(UInt8(0xee), at: Self.status)
        let head = ring.availableIndex % ring.size
        var next = head
        func link() -> UInt16 { next = (next + 1) % ring.size; return next }
        let first = head
        try ring.setDescriptor(first, address: Self.header.raw, length: 16, flags: Flag.next, next: link())
        if length > 0 {
            let at = next
            try ring.setDescriptor(at, address: Self.data.raw, length: length,
                                   flags: Flag.next | (dataWritable ? Flag.write : 0), next: link())
        }
        try ring.setDescriptor(next, address: Self.status.raw, length: 1, flags: Flag.write)
        try ring.offer(first)
        let queue = try ring.queue()
        // Catch the queue up with what earlier requests on this ring consumed.
        for _ in 0..<(ring.availableIndex - 1) { _ = try queue.popChain(); queue.pushUsed(head: 0, length: 0) }
        let context = VirtioQueueContext(negotiatedFeatures: 0, queues: [queue]) { _ in }
        try device.process(queue: 0, context: context)
        let used = try ring.usedEntry(ring.availableIndex - 1)
        return (try ring.memory.read(UInt8.self, at: Self.status), used.length)
    }

    @Test func writesReadsBackAndFlushes() throws {
        let disk = Disk(sectors: 64)
        let device = try VirtioBlock(path: disk.path, readOnly: false)
        var ring = try TestRing(size: 64)
        let pattern = (0..<1024).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try ring.memory.write(pattern, at: Self.data)
        #expect(try request(device, ring: &ring, type: 1, sector: 2, length: 1024, dataWritable: false) == (0, 1))
        #expect(disk.bytes(at: 1024, count: 1024) == pattern)

        try ring.memory.fill(0, at: Self.data, length: 1024)
        #expect(try request(device, ring: &ring, type: 0, sector: 2, length: 1024, dataWritable: true) == (0, 1025))
        #expect(try ring.memory.read(1024, at: Self.data) == pattern)
        #expect(try request(device, ring: &ring, type: 4, sector: 0, length: 0, dataWritable: false).0 == 0)
    }

    /// Writes queued together, contiguous or not, with a bad one among them: each lands where it
    /// should and each gets its own status (merging must not blur either).
    @Test func servesABatchOfWritesWithOneBadRequestAmongThem() throws {
        let disk = Disk(sectors: 64)
        let device = try VirtioBlock(path: disk.path, readOnly: false)
        var ring = try TestRing(size: 64)
        // sectors 4, 5, 6 (contiguous), 200 (past the end), 7 (contiguous again), 20
        let sectors: [UInt64] = [4, 5, 6, 200, 7, 20]
        for (i, sector) in sectors.enumerated() {
            let header = GuestAddress(0x8000 + UInt64(i) * 0x100), data = GuestAddress(0x20000 + UInt64(i) * 0x200)
            let status = GuestAddress(0x9000 + UInt64(i))
            try ring.memory.write(UInt32(1), at: header)
            try ring.memory.write(sector, at: GuestAddress(header.raw + 8))
            try ring.memory.write([UInt8](repeating: UInt8(i + 1), count: 512), at: data)
            try ring.memory.write(UInt8(0xee), at: status)
            let d = UInt16(i * 3)
            try ring.setDescriptor(d, address: header.raw, length: 16, flags: Flag.next, next: d + 1)
            try ring.setDescriptor(d + 1, address: data.raw, length: 512, flags: Flag.next, next: d + 2)
            try ring.setDescriptor(d + 2, address: status.raw, length: 1, flags: Flag.write)
            try ring.offer(d)
        }
        let queue = try ring.queue()
        try device.process(queue: 0, context: VirtioQueueContext(negotiatedFeatures: 0, queues: [queue]) { _ in })
        #expect(try ring.usedIndex() == 6)
        let statuses = try (0..<6).map { try ring.memory.read(UInt8.self, at: GuestAddress(0x9000 + UInt64($0))) }
        #expect(statuses == [0, 0, 0, 1, 0, 0])
        for (i, sector) in sectors.enumerated() where sector < 64 {
            #expect(disk.bytes(at: Int(sector) * 512, count: 512) == [UInt8](repeating: UInt8(i + 1), count: 512))
        }
        let heads = try (0..<6).map { try ring.usedEntry(UInt16($0)).id }
        #expect(Set(heads) == Set([0, 3, 6, 9, 12, 15]))
    }

    @Test func answersGetIDWithItsSerial() throws {
        let disk = Disk(sectors: 8)
        let device = try VirtioBlock(path: disk.path, readOnly: false)
        var ring = try TestRing()
        let (status, used) = try request(device, ring: &ring, type: 8, sector: 0, length: 20, dataWritable: true)
        #expect(status == 0 && used == 21)
        let id = try ring.memory.read(20, at: Self.data)
        #expect(String(decoding: id, as: UTF8.self) == "malvvm-malvvm-blk-te")  // "malvvm-" + file name, cut at 20 bytes
    }

    static let outside: [(UInt64, UInt32)] = [
        (8, 512),  // starts at the end
        (7, 1024),  // runs past the end
        (UInt64.max, 512),  // sector + count overflows
        (0, 100),  // not whole sectors
    ]

    @Test(arguments: outside)
    func refusesReadsOutsideTheDisk(sector: UInt64, length: UInt32) throws {
        let disk = Disk(sectors: 8)
        let device = try VirtioBlock(path: disk.path, readOnly: false)
        var ring = try TestRing()
        #expect(try request(device, ring: &ring, type: 0, sector: sector, length: length, dataWritable: true).0 == 1)
    }

    @Test func refusesWritesToAReadOnlyDiskAndUnknownRequests() throws {
        let disk = Disk(sectors: 8)
        let device = try VirtioBlock(path: disk.path, readOnly: true)
        #expect(device.offeredFeatures & VirtioBlock.Feature.readOnly != 0)
        var ring = try TestRing()
        try ring.memory.fill(0xaa, at: Self.data, length: 512)
        #expect(try request(device, ring: &ring, type: 1, sector: 0, length: 512, dataWritable: false).0 == 1)
        #expect(disk.bytes(at: 0, count: 512) == [UInt8](repeating: 0, count: 512))
        #expect(try request(device, ring: &ring, type: 99, sector: 0, length: 0, dataWritable: false).0 == 2)
    }

    @Test func aChainWithoutAStatusByteIsReturnedEmpty() throws {
        let disk = Disk(sectors: 8)
        let device = try VirtioBlock(path: disk.path, readOnly: false)
        var ring = try TestRing()
        try ring.setDescriptor(0, address: Self.header.raw, length: 16, flags: 0)
        try ring.offer(0)
        let queue = try ring.queue()
        try device.process(queue: 0, context: VirtioQueueContext(negotiatedFeatures: 0, queues: [queue]) { _ in })
        #expect(try ring.usedEntry(0) == (0, 0))
    }

    @Test func reportsCapacityAndBlockSizeInItsConfiguration() throws {
        let disk = Disk(sectors: 80)
        let device = try VirtioBlock(path: disk.path, readOnly: false)
        var config = [UInt8](repeating: 0, count: 24)
        config.withUnsafeMutableBytes { device.readConfiguration(offset: 0, into: $0) }
        #expect(config[0] == 80 && config[1] == 0)
        #expect(config[20] == 0x00 && config[21] == 0x02)  // blk_size 512
        #expect(throws: HypervisorError.self) { try VirtioBlock(path: "/nonexistent.img", readOnly: false) }
    }
}

@Suite(.serialized) struct MSIXTests {
    func table() throws -> (MSIXTable, KVMVirtualMachine) {
        let vm = try KVMSystem().createVM()
        try vm.createIRQChip()
        let router = try InterruptRouter(vm: vm)
        return (try MSIXTable(vectorCount: 3, vm: vm, router: router), vm)
    }

    func pendingBits(_ table: MSIXTable) -> UInt8 {
        var byte: [UInt8] = [0]
        byte.withUnsafeMutableBytes { table.readPendingBits(offset: 0, data: $0) }
        return byte[0]
    }

    func program(_ table: MSIXTable, vector: Int, masked: Bool) {
        for (word, value) in [(0, UInt32(0xfee0_0000)), (1, 0), (2, UInt32(0x40 + vector)), (3, masked ? 1 : 0)] {
            var bytes: [UInt8] = []
            bytes.appendLittleEndian(value)
            bytes.withUnsafeBytes { table.writeTable(offset: UInt64(vector * 16 + word * 4), data: $0) }
        }
    }

    @Test func holdsMaskedVectorsPendingUntilUnmasked() throws {
        let (table, _) = try table()
        table.setControl(0x8000)
        program(table, vector: 1, masked: true)
        table.signal(vector: 1)
        #expect(pendingBits(table) == 0b010)
        program(table, vector: 1, masked: false)  // unmasking delivers and clears
        #expect(pendingBits(table) == 0)
    }

    /// A device in another process (the GPU daemon) writes the vector's eventfd itself: while
    /// the vector is masked that write is held as its pending bit too, and unmasking delivers it;
    /// while MSI-X is disabled it is dropped.
    @Test func remoteSignalsRespectTheMaskToo() throws {
        let (table, _) = try table()
        table.setControl(0x8000)
        program(table, vector: 2, masked: true)
        table.eventFD(vector: 2)!.signal()
        #expect(pendingBits(table) == 0b100)
        program(table, vector: 2, masked: false)
        #expect(pendingBits(table) == 0)
        #expect(table.eventFD(vector: 2)!.drain() == 0, "KVM took the delivery (the irqfd is attached again)")
        table.setControl(0)
        table.eventFD(vector: 2)!.signal()
        table.setControl(0x8000)
        #expect(pendingBits(table) == 0, "a write while MSI-X was disabled is dropped")
    }

    @Test func functionMaskHoldsEveryVector() throws {
        let (table, _) = try table()
        program(table, vector: 0, masked: false)
        program(table, vector: 2, masked: false)
        table.setControl(0x8000 | 0x4000)
        table.signal(vector: 0)
        table.signal(vector: 2)
        #expect(pendingBits(table) == 0b101)
        table.setControl(0x8000)
        #expect(pendingBits(table) == 0)
    }

    @Test func ignoresSignalsWhileDisabledAndVectorsOutOfRange() throws {
        let (table, _) = try table()
        program(table, vector: 0, masked: true)
        table.signal(vector: 0)
        table.signal(vector: 0xffff)
        table.signal(vector: -1)
        #expect(pendingBits(table) == 0)
    }

    @Test func readsBackProgrammedEntriesAndFloatsOutsideTheTable() throws {
        let (table, _) = try table()
        program(table, vector: 2, masked: true)
        var word: [UInt8] = [0, 0, 0, 0]
        word.withUnsafeMutableBytes { table.readTable(offset: 2 * 16 + 8, data: $0) }
        #expect(word == [0x42, 0, 0, 0])
        word.withUnsafeMutableBytes { table.readTable(offset: 3 * 16, data: $0) }
        #expect(word == [0xff, 0xff, 0xff, 0xff])
        word.withUnsafeMutableBytes { table.readTable(offset: 0 * 16 + 12, data: $0) }
        #expect(word == [1, 0, 0, 0])  // entries start masked
    }
}
