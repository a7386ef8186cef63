import CMLaaS
import Foundation
import Glibc
import Hypervisor
@testable import MLaaS
import Testing

/// The host table's `block` capability: what a service may ask of a VM's virtio-blk, checked
/// against its grants; the hooks end with the VM. Real devices on real files, no guest.
@Suite struct BlockHookTests {
    /// Observer calls land here (a C function pointer cannot capture).
    final class Seen: @unchecked Sendable {
        var reads: [[UInt64]] = []
    }

    static let observer: malv_mlaas_block_observer = { cookie, range, offset, length in
        Unmanaged<Seen>.fromOpaque(cookie!).takeUnretainedValue().reads.append([range, offset, length])
    }

    @Test func theTableIsAVersionedCapabilityInTheReservedSlot() {
        let context = HostContext(serviceName: "test", scheduling: nil)
        let table = context.makeTable()
        defer { table.deallocate() }
        // The ABI version did not move: modules built before the capability keep loading.
        #expect(table.pointee.abi_version == 2)
        let block = table.pointee.block
        #expect(block?.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_block>.size))
        #expect(block?.pointee.version == 1 && block?.pointee.granule_bytes == 4096)
        #expect(block?.pointee.cache_bytes == BlockWatches.cacheBytes && block?.pointee.max_read_ahead_bytes == BlockWatches.maxReadAheadBytes)
        #expect(table.pointee.scheduler == nil, "no scheduler in this process: no scheduler table")
    }

    @Test func readAheadStaysInsideTheGrantAndTheHookEndsWithTheVM() throws {
        let path = try Modules.dataset(records: 128, bytesPerImage: 127)  // 16 KiB
        defer { unlink(path) }
        let device = try VirtioBlock(path: path, readOnly: true)
        let context = HostContext(serviceName: "test", scheduling: nil)
        let table = context.makeTable()
        defer { table.deallocate() }
        let block = try #require(table.pointee.block)
        let host = table.pointee.host_context
        // Bytes 512 ..< 8704 of the disk are granted as range 77; range 78 has no device behind it.
        context.attach(vm: 5, name: "vm5", grants: [
            try OpenGrant(handle: 77, grant: DiskGrant(diskIndex: 0, path: path, offset: 512, length: 8192, device: device)),
            try OpenGrant(handle: 78, grant: DiskGrant(diskIndex: 1, path: path, offset: 0, length: 512)),
        ])
        let seen = Seen()
        let cookie = Unmanaged.passUnretained(seen).toOpaque()
        func readAhead(vm: UInt64 = 5, range: UInt64 = 77, _ offset: UInt64, _ length: UInt64) -> Int32 {
            block.pointee.read_ahead!(host, vm, range, offset, length)
        }

        #expect(readAhead(0, 4096) == MALV_MLAAS_E_INVALID)  // not watched yet
        #expect(block.pointee.watch!(host, 5, 78, Self.observer, cookie) == MALV_MLAAS_E_UNSUPPORTED)
        #expect(block.pointee.watch!(host, 5, 79, Self.observer, cookie) == MALV_MLAAS_E_NOT_FOUND)
        #expect(block.pointee.watch!(host, 6, 77, Self.observer, cookie) == MALV_MLAAS_E_NOT_FOUND)
        #expect(block.pointee.watch!(host, 5, 77, nil, cookie) == MALV_MLAAS_E_INVALID)
        #expect(block.pointee.watch!(host, 5, 77, Self.observer, cookie) == MALV_MLAAS_OK)
        #expect(block.pointee.watch!(host, 5, 77, Self.observer, cookie) == MALV_MLAAS_E_INVALID)  // one hook a disk

        #expect(readAhead(0, 8192) == MALV_MLAAS_OK)
        #expect(readAhead(8191, 1) == MALV_MLAAS_OK)
        #expect(readAhead(0, 0) == MALV_MLAAS_OK)
        // Outside the grant, however it is spelt: refused before anything is read.
        #expect(readAhead(8191, 2) == MALV_MLAAS_E_RANGE)
        #expect(readAhead(8193, 0) == MALV_MLAAS_E_RANGE)
        #expect(readAhead(UInt64.max, 2) == MALV_MLAAS_E_RANGE)
        #expect(readAhead(1, UInt64.max) == MALV_MLAAS_E_RANGE)
        #expect(readAhead(0, BlockWatches.maxReadAheadBytes + 1) == MALV_MLAAS_E_RANGE)
        #expect(readAhead(vm: 6, 0, 1) == MALV_MLAAS_E_NOT_FOUND)
        #expect(readAhead(range: 78, 0, 1) == MALV_MLAAS_E_INVALID)
        // What was asked for arrives: the grant's 8 KiB from byte 512 cover granules 0-2.
        for _ in 0 ..< 500 where device.readStatistics.readAheadBytes < 12288 { usleep(2000) }
        #expect(device.readStatistics.readAheadBytes == 12288, "\(device.readStatistics)")

        // Detaching the VM ends its hook: the disk takes another, read_ahead says detached.
        context.detach(vm: 5)
        #expect(readAhead(0, 1) == MALV_MLAAS_E_DETACHED)
        let other = try device.watchReads(cacheBytes: 1 << 20) { _, _ in }
        device.unwatchReads(other)
        block.pointee.unwatch!(host, 5, 77)  // after the host ended it: nothing happens
    }
}
