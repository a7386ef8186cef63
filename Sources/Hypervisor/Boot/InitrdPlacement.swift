/// Where an initrd goes: as high in low RAM as the kernel reads it (under its
/// `initrd_addr_max`, below the 32-bit MMIO hole), page-aligned, and above the kernel's own
/// footprint, as Linux boot loaders place it. Both boot protocols use this.
public enum InitrdPlacement {
    public struct Placed: Sendable, Equatable {
        public let address: UInt64
        public let size: UInt64
    }

    public static func address(size: UInt64, kernel: LoadedKernel, memory: GuestMemory) throws(BootError) -> UInt64 {
        guard size > 0 else { throw .emptyInitrd }
        let lowRAMEnd = memory.regions.first?.end ?? 0
        let top = min(lowRAMEnd, kernel.initrdLimit &+ 1 == 0 ? UInt64.max : kernel.initrdLimit + 1)
        let floor = (kernel.end + 4095) & ~4095
        guard top > floor, top - floor >= size else {
            throw .initrdDoesNotFit(size: size, space: top > floor ? top - floor : 0)
        }
        return (top - size) & ~4095
    }

    /// Places `bytes` and returns where they went.
    public static func place(_ bytes: [UInt8], kernel: LoadedKernel, memory: GuestMemory) throws(BootError) -> Placed {
        let size = UInt64(bytes.count)
        let address = try address(size: size, kernel: kernel, memory: memory)
        do { try memory.write(bytes, at: GuestAddress(address)) } catch {
            throw .initrdDoesNotFit(size: size, space: 0)
        }
        return Placed(address: address, size: size)
    }
}
