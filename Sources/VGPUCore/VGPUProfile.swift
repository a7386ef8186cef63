import GPUHost

/// What one para-vGPU is allowed, in the terms operators know from NVIDIA vGPU profiles
/// (`A100-4C`: a 4 GB framebuffer, a share of the time slices): a GPU memory quota, a share
/// weight for the fixed-share policy, and how many compute contexts the guest may open.
///
/// Each context becomes one scheduler client with `weight` and a quota of `memoryBytes`;
/// the device also caps the sum over all its contexts at `memoryBytes`, so opening more
/// contexts never buys a guest more memory than its profile.
public struct VGPUProfile: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    /// GPU memory the vGPU may hold across all its contexts.
    public var memoryBytes: Int
    /// Share weight of each context under fixed share (ignored by the other policies).
    public var weight: Double
    /// Compute contexts the guest may have open at once.
    public var maxContexts: Int

    public static let gibibyte = 1 << 30

    /// The named profiles, `Ng.Mgb`: N units of compute (share weight N) and M GiB of GPU
    /// memory, in the order and form of NVIDIA's MIG profiles (`1g.10gb`: one compute slice,
    /// 10 GB), so a MIG user's reading is right: here a "compute unit" is a weight under the
    /// fixed-share policy (time slices, not SMs), and memory is a quota, not a partition. On a
    /// fixed-share scheduler with total weight 8, an 8 GiB GPU holds eight `1g.1gb`, four
    /// `2g.2gb` or two `4g.4gb` vGPUs (docs/gpud.md, "Profiles").
    public static let named: [String: VGPUProfile] = [
        "1g.1gb": VGPUProfile(name: "1g.1gb", memoryBytes: 1 * gibibyte, weight: 1),
        "2g.2gb": VGPUProfile(name: "2g.2gb", memoryBytes: 2 * gibibyte, weight: 2),
        "4g.4gb": VGPUProfile(name: "4g.4gb", memoryBytes: 4 * gibibyte, weight: 4),
        "8g.8gb": VGPUProfile(name: "8g.8gb", memoryBytes: 8 * gibibyte, weight: 8),
    ]

    /// The profile a VM gets when it names none.
    public static let defaultName = "1g.1gb"

    /// The names earlier releases used (`4g`, which read as "4 GiB" to some and as "4 compute
    /// slices" to MIG users; it meant both): still accepted, as the profile they named.
    public static let formerNames: [String: String] = ["1g": "1g.1gb", "2g": "2g.2gb", "4g": "4g.4gb", "8g": "8g.8gb"]

    /// The profile `name` means in `catalog` (an operator's profiles by name): its own entry, or
    /// the one a former name stands for; nil for neither.
    public static func resolve(_ name: String, in catalog: [String: VGPUProfile] = named) -> VGPUProfile? {
        let key = name.lowercased()
        return catalog[key] ?? formerNames[key].flatMap { catalog[$0] }
    }

    public static let defaultMaxContexts = 16

    public init(name: String = "custom", memoryBytes: Int, weight: Double = 1,
                maxContexts: Int = VGPUProfile.defaultMaxContexts) {
        self.name = name
        self.memoryBytes = memoryBytes
        self.weight = weight
        self.maxContexts = maxContexts
    }

    public var description: String {
        "\(name) (memory \(memoryBytes >> 20) MiB, weight \(weight), contexts \(maxContexts))"
    }

    /// The scheduler client a context of this profile becomes.
    public func clientConfiguration(name clientName: String, owner: ClientOwner) -> ClientConfiguration {
        ClientConfiguration(name: clientName, owner: owner, weight: weight, memoryQuotaBytes: memoryBytes)
    }

    public enum ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        case unknownProfile(String, known: [String])
        case unknownKey(String)
        case badValue(key: String, value: String)
        case duplicateKey(String)
        /// Keys that cannot go together (a full-vGPU on the GPU daemon, a control on a para-vGPU).
        case conflict(String)

        public var description: String {
            switch self {
            case let .unknownProfile(name, known): return "unknown vGPU profile '\(name)' (known: \(known.joined(separator: ", ")))"
            case let .unknownKey(key): return "unknown vGPU profile key '\(key)' (profile, memory, weight, contexts)"
            case let .badValue(key, value): return "bad value '\(value)' for vGPU profile key '\(key)'"
            case let .duplicateKey(key): return "vGPU profile key '\(key)' given twice"
            case let .conflict(reason): return reason
            }
        }
    }

    /// Parses "profile=4g.4gb,weight=2", "memory=512m,contexts=4" or a bare "2g.2gb". A named
    /// profile is the starting point (1g.1gb when none is named); the other keys override its fields.
    /// Memory takes a byte count with an optional k/m/g suffix (binary units).
    public init(parsing text: String) throws(ParseError) {
        var fields: [String: String] = [:]
        for item in text.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1).map { String($0).trimmingSpaces }
            let (key, value) = parts.count == 2 ? (parts[0].lowercased(), parts[1]) : ("profile", parts[0])
            guard fields[key] == nil else { throw .duplicateKey(key) }
            fields[key] = value
        }
        let baseName = fields.removeValue(forKey: "profile") ?? Self.defaultName
        guard var profile = Self.resolve(baseName) else {
            throw .unknownProfile(baseName, known: Self.named.keys.sorted())
        }
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "memory":
                guard let bytes = Self.parseBytes(value), Self.isValid(memoryBytes: bytes) else { throw .badValue(key: key, value: value) }
                profile.memoryBytes = bytes
            case "weight":
                guard let weight = Double(value), Self.isValid(weight: weight) else { throw .badValue(key: key, value: value) }
                profile.weight = weight
            case "contexts":
                guard let count = Int(value), Self.contextLimits.contains(count) else { throw .badValue(key: key, value: value) }
                profile.maxContexts = count
            default:
                throw .unknownKey(key)
            }
            profile.name = "custom"
        }
        self = profile
    }

    /// What a profile override may be, wherever it comes from (`--vgpu`, an operator's
    /// `--profile` definition, the API's attach fields): a positive memory quota, a positive
    /// finite weight, 1-1024 contexts.
    public static func isValid(memoryBytes: Int) -> Bool { memoryBytes > 0 }
    public static func isValid(weight: Double) -> Bool { weight.isFinite && weight > 0 }
    public static let contextLimits = 1 ... 1024

    /// A profile name an operator may define and a VM may ask for: 1-32 letters, digits, '-',
    /// '_' or '.'.
    public static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 32 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    /// An operator's profile definition, `NAME:SPEC` (`heavy:profile=4g.4gb,weight=8`): SPEC as
    /// `init(parsing:)` takes it, under the name NAME.
    public init(definition text: String) throws(ParseError) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, Self.isPlainName(parts[0]) else {
            throw .badValue(key: "profile definition", value: text)
        }
        self = try VGPUProfile(parsing: parts[1])
        name = parts[0].lowercased()
    }

    package static func parseBytes(_ text: String) -> Int? {
        let lower = text.lowercased()
        let shifts: [Character: Int] = ["k": 10, "m": 20, "g": 30]
        var digits = Substring(lower)
        var shift = 0
        if let last = lower.last, let s = shifts[last] {
            shift = s
            digits = digits.dropLast()
        }
        guard let value = Int(digits), value >= 0 else { return nil }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : bytes
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

extension VGPUProfile: Codable {}
