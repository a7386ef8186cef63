/// The parts of a Linux bzImage's `setup_header` (Documentation/arch/x86/boot.rst) a loader
/// needs, read and checked before anything is loaded.
///
/// A bzImage is the real-mode setup code (`setup_sects` + 1 sectors of 512 bytes, the header at
/// 0x1f1 inside the first) followed by the protected-mode kernel. malvvm enters the protected-mode
/// kernel at its 64-bit entry, so the setup code is never run: only its header is read.
public struct BzImage: Sendable {
    /// Offsets inside the image (and inside `boot_params`, which embeds the header at 0x1f1).
    enum Offset {
        static let setupSects: UInt64 = 0x1f1
        static let sysSize: UInt64 = 0x1f4
        static let bootFlag: UInt64 = 0x1fe
        static let jump: UInt64 = 0x200
        static let headerMagic: UInt64 = 0x202
        static let version: UInt64 = 0x206
        static let typeOfLoader: UInt64 = 0x210
        static let loadFlags: UInt64 = 0x211
        static let code32Start: UInt64 = 0x214
        static let ramdiskImage: UInt64 = 0x218
        static let ramdiskSize: UInt64 = 0x21c
        static let cmdLinePointer: UInt64 = 0x228
        static let initrdAddressMax: UInt64 = 0x22c
        static let kernelAlignment: UInt64 = 0x230
        static let relocatableKernel: UInt64 = 0x234
        static let minimumAlignment: UInt64 = 0x235
        static let xloadflags: UInt64 = 0x236
        static let cmdlineSize: UInt64 = 0x238
        static let preferredAddress: UInt64 = 0x258
        static let initSize: UInt64 = 0x260
    }

    static let headerMagic: UInt32 = 0x5372_6448  // "HdrS"
    static let bootFlag: UInt16 = 0xaa55
    /// 2.06 is the first version with `cmdline_size`; older kernels are a decade and more gone.
    public static let minimumVersion: UInt16 = 0x0206
    static let loadedHigh: UInt8 = 1 << 0
    static let xlfKernel64: UInt16 = 1 << 0
    /// Where the 64-bit entry (`startup_64`) sits inside the protected-mode kernel.
    public static let entry64Offset: UInt64 = 0x200
    /// Protocol 2.02's default for `initrd_addr_max`, for kernels too old to state one.
    static let defaultInitrdAddressMax: UInt32 = 0x37ff_ffff

    /// The whole image; `protectedModeKernel` is the part loaded into guest memory.
    let bytes: [UInt8]
    /// The setup header as it must be copied into boot_params: 0x1f1 up to its stated end.
    public let setupHeader: ArraySlice<UInt8>
    public let version: UInt16
    public let setupSectors: Int
    public let loadFlags: UInt8
    public let xloadflags: UInt16
    public let code32Start: UInt32
    public let initrdAddressMax: UInt32
    public let kernelAlignment: UInt32
    public let relocatable: Bool
    /// log2 of the alignment the kernel requires (2.10+); 0 when the header predates it.
    public let minimumAlignmentShift: UInt8
    /// The longest command line the kernel accepts, without its NUL.
    public let commandLineLimit: UInt32
    /// 0 when the header predates 2.10.
    public let preferredAddress: UInt64
    /// Memory the kernel needs from its load address before it can read the memory map (2.10+);
    /// 0 when the header predates it.
    public let initSize: UInt32

    /// Whether `bytes` carries a setup header at all: how a loader tells a bzImage from an ELF.
    public static func isBzImage(_ bytes: [UInt8]) -> Bool {
        (try? ByteReader(bytes).u32(Offset.headerMagic)) == headerMagic
    }

    public init(bytes: [UInt8]) throws(BootError) {
        let reader = ByteReader(bytes)
        guard bytes.count > Int(Offset.headerMagic + 4) else { throw .notAKernel }
        guard try reader.u32(Offset.headerMagic) == Self.headerMagic,
              try reader.u16(Offset.bootFlag) == Self.bootFlag else { throw .notAKernel }
        version = try reader.u16(Offset.version)
        guard version >= Self.minimumVersion else { throw .bzImageProtocolTooOld(version: version) }

        // The header ends at 0x202 + the jump's 8-bit displacement (boot.rst, "the end of setup
        // header can be calculated as follows").
        let headerEnd = Offset.headerMagic + UInt64(try reader.value(Offset.jump + 1, as: UInt8.self))
        guard headerEnd >= Offset.initSize + 4 || version < 0x020a else {
            throw .truncatedBzImage("setup header ends at 0x\(String(headerEnd, radix: 16)), before the fields protocol \(Self.format(version)) has")
        }
        setupHeader = try reader.bytes(Offset.setupSects, count: headerEnd - Offset.setupSects)

        let sectors = Int(try reader.value(Offset.setupSects, as: UInt8.self))
        setupSectors = sectors == 0 ? 4 : sectors  // 0 means 4, for the oldest images
        let protectedModeOffset = (setupSectors + 1) * 512
        guard bytes.count > protectedModeOffset + Int(Self.entry64Offset) else {
            throw .truncatedBzImage("\(bytes.count) bytes, but the setup code alone takes \(protectedModeOffset) and the 64-bit entry lies 0x200 beyond")
        }

        // syssize (2.04+) is the protected-mode kernel in 16-byte paragraphs, rounded up.
        let stated = UInt64(try reader.u32(Offset.sysSize)) * 16
        let present = UInt64(bytes.count - protectedModeOffset)
        guard present + 15 >= stated else {
            throw .truncatedBzImage("the protected-mode kernel has \(present) bytes; its header says \(stated)")
        }

        loadFlags = try reader.value(Offset.loadFlags, as: UInt8.self)
        guard loadFlags & Self.loadedHigh != 0 else { throw .bzImageNotLoadedHigh }
        xloadflags = version >= 0x020c ? try reader.u16(Offset.xloadflags) : 0
        guard xloadflags & Self.xlfKernel64 != 0 else { throw .bzImageWithout64BitEntry(version: version) }

        code32Start = try reader.u32(Offset.code32Start)
        initrdAddressMax = try reader.u32(Offset.initrdAddressMax)
        kernelAlignment = try reader.u32(Offset.kernelAlignment)
        relocatable = try reader.value(Offset.relocatableKernel, as: UInt8.self) != 0
        commandLineLimit = try reader.u32(Offset.cmdlineSize)
        if version >= 0x020a {
            minimumAlignmentShift = try reader.value(Offset.minimumAlignment, as: UInt8.self)
            preferredAddress = try reader.u64(Offset.preferredAddress)
            initSize = try reader.u32(Offset.initSize)
        } else {
            minimumAlignmentShift = 0
            preferredAddress = 0
            initSize = 0
        }
        guard minimumAlignmentShift < 32 else { throw .truncatedBzImage("min_alignment 2^\(minimumAlignmentShift)") }
        self.bytes = bytes
    }

    /// The protected-mode kernel: everything after the setup sectors.
    public var protectedModeKernel: ArraySlice<UInt8> { bytes[((setupSectors + 1) * 512)...] }

    /// How much memory from the load address the kernel needs before it reads the memory map:
    /// `init_size` where the header has it, never less than the image itself.
    public var footprint: UInt64 { max(UInt64(initSize), UInt64(protectedModeKernel.count)) }

    /// The highest address an initrd's last byte may have.
    public var initrdLimit: UInt64 { UInt64(initrdAddressMax == 0 ? Self.defaultInitrdAddressMax : initrdAddressMax) }

    /// "2.15" for 0x020f.
    static func format(_ version: UInt16) -> String { "\(version >> 8).\(String(format2: version & 0xff))" }
}

private extension String {
    init(format2 value: UInt16) { self = value < 10 ? "0\(value)" : "\(value)" }
}
