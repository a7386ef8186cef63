import Hypervisor

/// Builds small bzImages in memory: a setup header as Documentation/arch/x86/boot.rst lays it
/// out, no real-mode code, and a protected-mode kernel whose 64-bit entry (offset 0x200) is
/// `code`, so loader tests control every field they feed in.
struct TestBzImage {
    var version: UInt16 = 0x020f
    var setupSectors: UInt8 = 1
    var loadFlags: UInt8 = 0x01  // LOADED_HIGH
    var xloadflags: UInt16 = 0x03  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
    var relocatable: UInt8 = 1
    var kernelAlignment: UInt32 = 0x20_0000
    var minimumAlignmentShift: UInt8 = 21
    var preferredAddress: UInt64 = 0x100_0000
    var initSize: UInt32 = 0x40_0000
    var initrdAddressMax: UInt32 = 0x7fff_ffff
    var commandLineSize: UInt32 = 2047
    var code: [UInt8] = [0xf4]

    var protectedModeOffset: Int { (Int(setupSectors) + 1) * 512 }

    func build() -> [UInt8] {
        var image = [UInt8](repeating: 0, count: protectedModeOffset)
        var kernel = [UInt8](repeating: 0x90, count: 0x200) + code
        kernel += [UInt8](repeating: 0, count: (16 - kernel.count % 16) % 16)
        image[0x1f1] = setupSectors
        image.patchLE(UInt32(kernel.count / 16), at: 0x1f4)  // syssize
        image.patchLE(UInt16(0xaa55), at: 0x1fe)
        image[0x200] = 0xeb  // jmp: its displacement says where the header ends (0x26c)
        image[0x201] = 0x6a
        image.patchLE(UInt32(0x5372_6448), at: 0x202)  // "HdrS"
        image.patchLE(version, at: 0x206)
        image[0x211] = loadFlags
        image.patchLE(UInt32(0x10_0000), at: 0x214)  // code32_start
        image.patchLE(initrdAddressMax, at: 0x22c)
        image.patchLE(kernelAlignment, at: 0x230)
        image[0x234] = relocatable
        image[0x235] = minimumAlignmentShift
        image.patchLE(xloadflags, at: 0x236)
        image.patchLE(commandLineSize, at: 0x238)
        image.patchLE(preferredAddress, at: 0x258)
        image.patchLE(initSize, at: 0x260)
        return image + kernel
    }
}
