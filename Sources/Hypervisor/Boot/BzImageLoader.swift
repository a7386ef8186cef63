/// Loads a bzImage's protected-mode kernel where the boot protocol lets it go and hands back
/// the 64-bit entry (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol").
public struct BzImageLoader: KernelLoader {
    public let image: BzImage

    public init(image: BzImage) { self.image = image }

    /// Where the protected-mode kernel goes, in RAM of `memory`:
    /// - a kernel that cannot relocate runs only at `pref_address` (2.10+) or `code32_start`;
    /// - a relocatable one is best at `pref_address`, where it decompresses in place; where that
    ///   does not fit, at the lowest address from 1 MiB up aligned to what it requires
    ///   (`min_alignment`, else `kernel_alignment`), as the protocol allows.
    public func loadAddress(in memory: GuestMemory) throws(BootError) -> UInt64 {
        let footprint = image.footprint
        func fits(_ address: UInt64) -> Bool {
            address >= X86BootLayout.kernelAreaStart && memory.contains(GuestAddress(address), length: footprint)
        }
        let lowRAM = memory.regions.first.map { $0.end } ?? 0
        if !image.relocatable {
            let address = image.preferredAddress != 0 ? image.preferredAddress : UInt64(image.code32Start)
            guard fits(address) else { throw .kernelDoesNotFit(address: address, size: footprint, memory: lowRAM) }
            return address
        }
        if image.preferredAddress != 0 && fits(image.preferredAddress) { return image.preferredAddress }
        let alignment: UInt64 = image.minimumAlignmentShift != 0
            ? 1 << UInt64(image.minimumAlignmentShift)
            : max(UInt64(image.kernelAlignment), 4096)
        guard alignment.nonzeroBitCount == 1 else {
            throw .truncatedBzImage("kernel_alignment 0x\(String(alignment, radix: 16)) is not a power of two")
        }
        let address = (X86BootLayout.kernelAreaStart + alignment - 1) & ~(alignment - 1)
        guard fits(address) else { throw .kernelDoesNotFit(address: address, size: footprint, memory: lowRAM) }
        return address
    }

    public func load(into memory: GuestMemory) throws(BootError) -> LoadedKernel {
        let address = try loadAddress(in: memory)
        let kernel = image.protectedModeKernel
        do {
            let target = try memory.slice(at: GuestAddress(address), length: image.footprint)
            kernel.withUnsafeBytes { source in
                target.copyMemory(from: source)
                // init_size covers the kernel's bss and decompression buffer: start it zeroed.
                target[source.count...].initializeMemory(as: UInt8.self, repeating: 0)
            }
        } catch {
            throw .kernelDoesNotFit(address: address, size: image.footprint, memory: memory.regions.first?.end ?? 0)
        }
        return LoadedKernel(bootProtocol: .linux64(entry: address + BzImage.entry64Offset, loadAddress: address,
                                                   setupHeader: Array(image.setupHeader)),
                            end: address + image.footprint, initrdLimit: image.initrdLimit)
    }
}
