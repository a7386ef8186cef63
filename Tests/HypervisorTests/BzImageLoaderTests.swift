import Testing
@testable import Hypervisor

/// The bzImage loader on hand-built images: header checks, where the kernel goes, and where an
/// initrd goes.
@Suite struct BzImageLoaderTests {
    func memory(_ size: UInt64 = 64 << 20) throws -> GuestMemory {
        try GuestMemory(layout: X86BootLayout.ramLayout(size: size))
    }

    @Test func loadsAtThePreferredAddressAndEntersAt0x200() throws {
        let image = TestBzImage(code: [0xaa, 0xbb])
        let ram = try memory()
        let loaded = try KernelImage.loader(bytes: image.build()).load(into: ram)
        guard case let .linux64(entry, loadAddress, header) = loaded.bootProtocol else {
            Issue.record("expected the 64-bit Linux protocol, got \(loaded.bootProtocol)")
            return
        }
        #expect(loadAddress == 0x100_0000)
        #expect(entry == 0x100_0200)
        #expect(try ram.read(2, at: GuestAddress(entry)) == [0xaa, 0xbb])
        #expect(loaded.end == 0x100_0000 + 0x40_0000)
        #expect(loaded.initrdLimit == 0x7fff_ffff)
        #expect(header.count == 0x26c - 0x1f1)
        #expect(Array(header[0x11..<0x15]) == Array("HdrS".utf8))
    }

    @Test func aRelocatableKernelMovesDownWhenThePreferredAddressDoesNotFit() throws {
        var image = TestBzImage()
        image.preferredAddress = 0x100_0000
        image.initSize = 0x20_0000
        // 16 MiB of RAM: 16 MiB + 2 MiB does not fit, 2 MiB (min_alignment 2^21) does.
        let loaded = try KernelImage.loader(bytes: image.build()).load(into: try memory(16 << 20))
        #expect(loaded.bootProtocol.loadAddress == 0x20_0000)
        image.minimumAlignmentShift = 12
        let lower = try KernelImage.loader(bytes: image.build()).load(into: try memory(16 << 20))
        #expect(lower.bootProtocol.loadAddress == 0x10_0000)
    }

    @Test func aKernelThatCannotRelocateGoesOnlyWhereItAsks() throws {
        var image = TestBzImage()
        image.relocatable = 0
        image.preferredAddress = 0x100_0000
        image.initSize = 0x20_0000
        #expect(throws: BootError.kernelDoesNotFit(address: 0x100_0000, size: 0x20_0000, memory: 16 << 20)) {
            try KernelImage.loader(bytes: image.build()).load(into: try memory(16 << 20))
        }
        let loaded = try KernelImage.loader(bytes: image.build()).load(into: try memory(32 << 20))
        #expect(loaded.bootProtocol.loadAddress == 0x100_0000)
    }

    @Test func refusesAKernelTooBigForMemory() throws {
        var image = TestBzImage()
        image.initSize = 64 << 20
        #expect(throws: BootError.kernelDoesNotFit(address: 0x20_0000, size: 64 << 20, memory: 32 << 20)) {
            try KernelImage.loader(bytes: image.build()).load(into: try memory(32 << 20))
        }
    }

    @Test func refusesProtocolsOlderThan2_06() {
        var image = TestBzImage()
        image.version = 0x0205
        #expect(throws: BootError.bzImageProtocolTooOld(version: 0x0205)) { try BzImage(bytes: image.build()) }
        #expect(BootError.bzImageProtocolTooOld(version: 0x0205).description
            == "bzImage uses boot protocol 2.05; malvvm needs 2.06 or later")
    }

    @Test func refusesAKernelWithoutA64BitEntry() {
        var image = TestBzImage()
        image.xloadflags = 0
        #expect(throws: BootError.bzImageWithout64BitEntry(version: 0x020f)) { try BzImage(bytes: image.build()) }
        // Protocol 2.06-2.11 has no xloadflags, so no kernel of theirs promises startup_64.
        image.xloadflags = 1
        image.version = 0x0209
        #expect(throws: BootError.bzImageWithout64BitEntry(version: 0x0209)) { try BzImage(bytes: image.build()) }
    }

    @Test func refusesAZImage() {
        var image = TestBzImage()
        image.loadFlags = 0
        #expect(throws: BootError.bzImageNotLoadedHigh) { try BzImage(bytes: image.build()) }
    }

    @Test func refusesTruncatedImages() {
        let whole = TestBzImage(code: [UInt8](repeating: 0xcc, count: 4096)).build()
        // Inside the header, inside the setup sectors, before the 64-bit entry, inside the kernel.
        for length in [0x204, 0x300, 1024 + 0x100, whole.count - 512] {
            #expect(throws: BootError.self) { try KernelImage.loader(bytes: Array(whole.prefix(length))) }
        }
        #expect(throws: BootError.truncatedBzImage("the protected-mode kernel has 4096 bytes; its header says 4608")) {
            try BzImage(bytes: Array(whole.prefix(whole.count - 512)))
        }
    }

    @Test func refusesFilesThatAreNoKernel() {
        #expect(throws: BootError.notAKernel) { try KernelImage.loader(bytes: Array("#!/bin/sh\necho hi\n".utf8)) }
        #expect(throws: BootError.notAKernel) { try KernelImage.loader(bytes: []) }
        var noBootFlag = TestBzImage().build()
        noBootFlag.patchLE(UInt16(0), at: 0x1fe)
        #expect(throws: BootError.notAKernel) { try KernelImage.loader(bytes: noBootFlag) }
    }

    @Test func anELFStillGoesThroughPVH() throws {
        let loader = try KernelImage.loader(bytes: TestELF.kernel([0xf4]))
        #expect(try loader.load(into: try memory()).bootProtocol == .pvh(entry: 0x10_0000))
    }

    // MARK: initrd

    @Test func placesTheInitrdAtTheTopOfLowRAM() throws {
        let ram = try memory(64 << 20)
        let kernel = try KernelImage.loader(bytes: TestBzImage().build()).load(into: ram)
        let placed = try InitrdPlacement.place([1, 2, 3], kernel: kernel, memory: ram)
        #expect(placed == InitrdPlacement.Placed(address: (64 << 20) - 4096, size: 3))
        #expect(try ram.read(3, at: GuestAddress(placed.address)) == [1, 2, 3])
    }

    @Test func keepsTheInitrdUnderInitrdAddrMax() throws {
        var image = TestBzImage()
        image.initrdAddressMax = 0x1fff_ffff  // 512 MiB - 1
        let ram = try memory(1 << 30)
        let kernel = try KernelImage.loader(bytes: image.build()).load(into: ram)
        let placed = try InitrdPlacement.place([UInt8](repeating: 7, count: 10000), kernel: kernel, memory: ram)
        #expect(placed.address + placed.size <= 0x2000_0000)
        #expect(placed.address == (0x2000_0000 - 10000) & ~4095)
    }

    @Test func keepsTheInitrdBelowTheMMIOHole() throws {
        // 4 GiB of RAM: 3 GiB below the hole, 1 GiB above 4 GiB that a 32-bit ramdisk_image cannot name.
        let kernel = LoadedKernel(bootProtocol: .pvh(entry: 0x10_0000), end: 0x20_0000)
        let ram = try memory(4 << 30)
        #expect(try InitrdPlacement.address(size: 4096, kernel: kernel, memory: ram) == X86BootLayout.mmioHoleStart - 4096)
    }

    @Test func refusesAnInitrdThatDoesNotFitAboveTheKernel() throws {
        let ram = try memory(32 << 20)
        let kernel = try KernelImage.loader(bytes: TestBzImage().build()).load(into: ram)  // 16 MiB..20 MiB
        #expect(throws: BootError.initrdDoesNotFit(size: 13 << 20, space: 12 << 20)) {
            try InitrdPlacement.place([UInt8](repeating: 0, count: 13 << 20), kernel: kernel, memory: ram)
        }
        #expect(throws: BootError.emptyInitrd) { try InitrdPlacement.place([], kernel: kernel, memory: ram) }
    }

    // MARK: boot_params

    @Test func writesTheZeroPage() throws {
        let ram = try memory()
        let image = TestBzImage()
        let kernel = try KernelImage.loader(bytes: image.build()).load(into: ram)
        guard case let .linux64(_, loadAddress, header) = kernel.bootProtocol else { return }
        let map = X86BootLayout.memoryMap(ram: ram.regions)
        try LinuxBoot.writeBootInformation(into: ram, LinuxBoot.Parameters(
            loadAddress: loadAddress, setupHeader: header, commandLine: "console=ttyS0", memoryMap: map,
            rsdp: ACPITables.rsdpAddress, initrd: InitrdPlacement.Placed(address: 0x300_0000, size: 0x1234)))
        let zeroPage = X86BootLayout.bootParams.raw
        func u32(_ offset: UInt64) throws -> UInt32 { try ram.read(UInt32.self, at: GuestAddress(zeroPage + offset)) }
        #expect(try u32(0x202) == 0x5372_6448)
        #expect(try ram.read(UInt8.self, at: GuestAddress(zeroPage + 0x210)) == 0xff)
        #expect(try u32(0x228) == UInt32(X86BootLayout.commandLine.raw))
        #expect(try ram.read(13, at: X86BootLayout.commandLine) == Array("console=ttyS0".utf8))
        #expect(try u32(0x218) == 0x300_0000)
        #expect(try u32(0x21c) == 0x1234)
        #expect(try ram.read(UInt64.self, at: GuestAddress(zeroPage + 0x70)) == ACPITables.rsdpAddress.raw)
        #expect(try ram.read(UInt8.self, at: GuestAddress(zeroPage + 0x1e8)) == UInt8(map.count))
        for (index, entry) in map.enumerated() {
            let slot = zeroPage + 0x2d0 + UInt64(index) * 20
            #expect(try ram.read(UInt64.self, at: GuestAddress(slot)) == entry.start)
            #expect(try ram.read(UInt64.self, at: GuestAddress(slot + 8)) == entry.size)
            #expect(try ram.read(UInt32.self, at: GuestAddress(slot + 16)) == entry.kind.rawValue)
        }
        // The identity map: PML4[0] → PDPT, PDPT[3] → the fourth directory, whose last entry maps 4 GiB - 2 MiB.
        let pml4 = X86BootLayout.pageTables.raw
        #expect(try ram.read(UInt64.self, at: GuestAddress(pml4)) == (pml4 + 0x1000) | 3)
        #expect(try ram.read(UInt64.self, at: GuestAddress(pml4 + 0x1000 + 24)) == (pml4 + 0x5000) | 3)
        #expect(try ram.read(UInt64.self, at: GuestAddress(pml4 + 0x5000 + 511 * 8)) == (0xffe0_0000 | 0x83))
    }

    @Test func refusesACommandLineLongerThanTheKernelTakes() throws {
        var image = TestBzImage()
        image.commandLineSize = 10
        let ram = try memory()
        let kernel = try KernelImage.loader(bytes: image.build()).load(into: ram)
        guard case let .linux64(_, loadAddress, header) = kernel.bootProtocol else { return }
        #expect(throws: BootError.commandLineTooLong(length: 11, limit: 10)) {
            try LinuxBoot.writeBootInformation(into: ram, LinuxBoot.Parameters(
                loadAddress: loadAddress, setupHeader: header, commandLine: "01234567890", memoryMap: []))
        }
    }
}

extension BootProtocol {
    var loadAddress: UInt64? {
        if case let .linux64(_, address, _) = self { return address }
        return nil
    }
}
