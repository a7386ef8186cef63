import CKVM

/// A change to one CPUID register of one leaf, in Firecracker's custom-template terms: bits
/// forced to 1, bits forced to 0, the rest passed through from what the host's KVM supports.
public struct CPUIDModifier: Sendable, Equatable {
    public enum Register: String, Sendable, CaseIterable { case eax, ebx, ecx, edx }

    public var leaf: UInt32
    public var subleaf: UInt32
    public var register: Register
    public var set: UInt32
    public var clear: UInt32

    public init(leaf: UInt32, subleaf: UInt32 = 0, register: Register, set: UInt32 = 0, clear: UInt32 = 0) {
        self.leaf = leaf
        self.subleaf = subleaf
        self.register = register
        self.set = set
        self.clear = clear
    }

    /// Firecracker's bitmap: "0b" and 32 characters, bit 31 first; '1' sets, '0' clears, 'x'
    /// keeps the host's bit.
    public init(leaf: UInt32, subleaf: UInt32, register: Register, bitmap: String) throws(CPUTemplateError) {
        let characters = Array(bitmap.utf8)
        guard characters.count == 34, characters.starts(with: Array("0b".utf8)) else {
            throw .badBitmap(bitmap, "'0b' and 32 of 0, 1, x expected")
        }
        var set: UInt32 = 0, clear: UInt32 = 0
        for (index, character) in characters.dropFirst(2).enumerated() {
            let bit = UInt32(1) << (31 - index)
            switch character {
            case UInt8(ascii: "1"): set |= bit
            case UInt8(ascii: "0"): clear |= bit
            case UInt8(ascii: "x"), UInt8(ascii: "X"): break
            default: throw .badBitmap(bitmap, "'0b' and 32 of 0, 1, x expected")
            }
        }
        self.init(leaf: leaf, subleaf: subleaf, register: register, set: set, clear: clear)
    }
}

public enum CPUTemplateError: Error, Equatable, CustomStringConvertible, Sendable {
    case unknown(String)
    case badBitmap(String, String)
    case badFile(path: String, String)

    public var description: String {
        switch self {
        case let .unknown(name):
            return "unknown CPU template '\(name)'; built in: \(CPUTemplate.builtIn.map(\.name).joined(separator: ", ")), or a FILE.json"
        case let .badBitmap(bitmap, why):
            return "bad CPUID bitmap '\(bitmap)': \(why)"
        case let .badFile(path, why):
            return "CPU template '\(path)': \(why)"
        }
    }
}

/// What the guest's CPUID says, as Firecracker's CPU templates shape it: the leaves the host's
/// KVM supports, then the template's modifiers. `host` changes nothing; `no-cx16-xsave` hides
/// the two features whose instructions this host's software KVM cannot emulate in ring 0
/// (`lock cmpxchg16b`, `xrstor`), which stop a stock Linux kernel early here (docs/linux.md).
public struct CPUTemplate: Sendable, Equatable {
    public let name: String
    public let modifiers: [CPUIDModifier]

    public init(name: String, modifiers: [CPUIDModifier]) {
        self.name = name
        self.modifiers = modifiers
    }

    public static let host = CPUTemplate(name: "host", modifiers: [])

    /// CX16 (1.ECX[13]), XSAVE and OSXSAVE (1.ECX[26:27]) and AVX (1.ECX[28], unusable without
    /// XSAVE) cleared, and the XSAVE leaf 0xD emptied, as QEMU's `-cpu host,-cx16,-xsave` does.
    public static let noCX16XSAVE = CPUTemplate(name: "no-cx16-xsave", modifiers: [
        CPUIDModifier(leaf: 1, register: .ecx, clear: 1 << 13 | 1 << 26 | 1 << 27 | 1 << 28),
    ] + [0, 1].flatMap { subleaf in
        CPUIDModifier.Register.allCases.map { CPUIDModifier(leaf: 0xd, subleaf: subleaf, register: $0, clear: .max) }
    })

    public static let builtIn: [CPUTemplate] = [host, noCX16XSAVE]

    public static func named(_ name: String) -> CPUTemplate? { builtIn.first { $0.name == name } }

    /// Applies the modifiers to KVM's CPUID entries; a subleaf matters only for leaves KVM marks
    /// as indexed. A leaf the host does not have stays absent.
    public func apply(to entries: inout [kvm_cpuid_entry2]) {
        let indexed: UInt32 = 1  // KVM_CPUID_FLAG_SIGNIFCANT_INDEX
        for modifier in modifiers {
            for index in entries.indices where entries[index].function == modifier.leaf
                && (entries[index].flags & indexed == 0 || entries[index].index == modifier.subleaf) {
                func change(_ value: inout UInt32) { value = (value & ~modifier.clear) | modifier.set }
                switch modifier.register {
                case .eax: change(&entries[index].eax)
                case .ebx: change(&entries[index].ebx)
                case .ecx: change(&entries[index].ecx)
                case .edx: change(&entries[index].edx)
                }
            }
        }
    }
}
