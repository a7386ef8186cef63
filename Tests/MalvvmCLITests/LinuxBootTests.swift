import Foundation
import Testing

/// `malvvm run` with a bzImage and `--initrd`, end to end: hand-built images boot through the
/// 64-bit boot protocol, and every image or initrd it cannot use is one line and exit 70.
@Suite struct LinuxBootTests {
    /// A bzImage of a setup header and a protected-mode kernel whose 64-bit entry is `code`
    /// (the layout of Documentation/arch/x86/boot.rst; no real-mode code, which malvvm never runs).
    static func bzImage(_ code: [UInt8], version: UInt16 = 0x020f, initSize: UInt32 = 0x40_0000) -> [UInt8] {
        func patch<T: FixedWidthInteger>(_ bytes: inout [UInt8], _ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
        }
        var image = [UInt8](repeating: 0, count: 1024)  // setup_sects 1
        var kernel = [UInt8](repeating: 0x90, count: 0x200) + code
        kernel += [UInt8](repeating: 0, count: (16 - kernel.count % 16) % 16)
        image[0x1f1] = 1
        patch(&image, UInt32(kernel.count / 16), at: 0x1f4)
        patch(&image, UInt16(0xaa55), at: 0x1fe)
        image[0x200] = 0xeb
        image[0x201] = 0x6a
        patch(&image, UInt32(0x5372_6448), at: 0x202)
        patch(&image, version, at: 0x206)
        image[0x211] = 1  // LOADED_HIGH
        patch(&image, UInt32(0x10_0000), at: 0x214)
        patch(&image, UInt32(0x7fff_ffff), at: 0x22c)
        patch(&image, UInt32(0x20_0000), at: 0x230)
        image[0x234] = 1
        image[0x235] = 21
        patch(&image, UInt16(3), at: 0x236)  // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
        patch(&image, UInt32(2047), at: 0x238)
        patch(&image, UInt64(0x100_0000), at: 0x258)
        patch(&image, initSize, at: 0x260)
        return image + kernel
    }

    static func file(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "malvvm-linux-\(getpid())-\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// mov dx, 0x3f8 ; mov al, 'O' ; out dx, al ; mov al, 'K' ; out dx, al ; mov al, 10 ; out dx, al
    static let printOK: [UInt8] = [0x66, 0xba, 0xf8, 0x03, 0xb0, 0x4f, 0xee, 0xb0, 0x4b, 0xee, 0xb0, 0x0a, 0xee]
    /// mov eax, [rsi + 0x218] (ramdisk_image) ; mov eax, [rax] (the initrd's first word) ; out 0xf4, eax
    static let exitWithInitrdWord: [UInt8] = [0x8b, 0x86, 0x18, 0x02, 0, 0, 0x8b, 0x00, 0xe7, 0xf4, 0xf4]

    @Test func bootsABzImageWithAnInitrd() throws {
        let kernel = try Self.file(Self.bzImage(Self.printOK + Self.exitWithInitrdWord), "ok.bzImage")
        let initrd = try Self.file([7, 0, 0, 0] + [UInt8](repeating: 0xee, count: 5000), "initrd")
        defer { for path in [kernel, initrd] { try? FileManager.default.removeItem(atPath: path) } }
        let result = try Harness.malvvm(["run", "--kernel", kernel, "--initrd", initrd, "--api-socket", "none"])
        #expect(result.status == 7, "\(result.stderr)")
        #expect(result.stdout == "OK\n")
    }

    @Test func thePVHGuestSeesTheInitrdAsAModule() throws {
        let initrd = try Self.file([UInt8](repeating: 0x5a, count: 3000), "pvh-initrd")
        defer { try? FileManager.default.removeItem(atPath: initrd) }
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--initrd", initrd, "--cmdline", "test=hello",
                                         "--api-socket", "none"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("modules 1"), "\(result.stdout)")
    }

    static let runtimeFailures: [(name: String, image: [UInt8], message: String)] = [
        ("old-protocol", bzImage([0xf4], version: 0x0205), "bzImage uses boot protocol 2.05; malvvm needs 2.06 or later"),
        ("truncated", Array(bzImage([UInt8](repeating: 0x90, count: 8192)).prefix(4096)), "bzImage is truncated or corrupt"),
        ("too-big", bzImage([0xf4], initSize: 512 << 20), "kernel needs 512 MiB from 0x200000"),
        ("not-a-kernel", Array("#!/bin/sh\n".utf8), "kernel is neither an ELF (PVH) nor a bzImage"),
    ]

    @Test(arguments: runtimeFailures.indices)
    func anImageMalvvmCannotBootIsOneLineAndExit70(index: Int) throws {
        let (name, image, message) = Self.runtimeFailures[index]
        let kernel = try Self.file(image, name)
        defer { try? FileManager.default.removeItem(atPath: kernel) }
        let result = try Harness.malvvm(["run", "--kernel", kernel, "--memory", "64M", "--api-socket", "none"])
        #expect(result.status == MalvvmExit.failure)
        #expect(result.stderrLines.count == 1 && result.stderr.contains(message), "\(name): \(result.stderr)")
    }

    @Test func anInitrdThatDoesNotFitOrCannotBeReadIsOneLineAndExit70() throws {
        let kernel = try Self.file(Self.bzImage([0xf4]), "fit.bzImage")
        let initrd = try Self.file([UInt8](repeating: 1, count: 13 << 20), "big-initrd")
        defer { for path in [kernel, initrd] { try? FileManager.default.removeItem(atPath: path) } }
        // 32 MiB of RAM: the kernel takes 16-20 MiB, 12 MiB remain above it.
        let big = try Harness.malvvm(["run", "--kernel", kernel, "--initrd", initrd, "--memory", "32M", "--api-socket", "none"])
        #expect(big.status == MalvvmExit.failure)
        #expect(big.stderrLines == ["malvvm: error: initrd of 13 MiB does not fit in the 12 MiB between the kernel and the highest address it reads an initrd from; give the VM more memory"])
        let missing = try Harness.malvvm(["run", "--kernel", kernel, "--initrd", "/nonexistent/initrd", "--api-socket", "none"])
        #expect(missing.status == MalvvmExit.failure)
        #expect(missing.stderrLines == ["malvvm: error: cannot read initrd '/nonexistent/initrd': No such file or directory"])
    }
}
