// `prefetch`'s parameters (configure, or `malvvm run --mlaas-config prefetch:…`): ASCII,
// comma-separated key=value, all optional; a bad one is one line back, nothing changes.

/// How reads are predicted. Both feed the same read-ahead path, so an A/B between them
/// measures the prediction and nothing else.
enum PrefetchPolicy: String, Sendable {
    /// A Markov chain of order K over the ids of the reads (as Lynx does).
    case markov
    /// The next `window` reads are taken to follow this one on the disk, each as long.
    case sequential
}

struct PrefetchParameters: Equatable, Sendable {
    /// The VM's disk to watch (its --disk position).
    var disk = 0
    var policy = PrefetchPolicy.markov
    /// The chain's order: how many past reads name the state (1-4).
    var order = 2
    /// Reads predicted ahead of each read (1-1024).
    var window = 8
    /// A read's id is its first byte's block: offset / block (512 B - 1 MiB, a multiple of 512).
    /// With 512, every read of a dataset whose records exceed a sector has an id of its own.
    var block = 512
    /// The most states the chain keeps (1 - 1,048,576); the oldest goes first.
    var table = 65536

    static let keys = "disk, policy, order, window, block, table"

    /// Parses `text` over the defaults; `disks`: how many disks the VM granted.
    static func parse(_ text: String, disks: Int) -> Result<PrefetchParameters, ParameterError> {
        var parameters = PrefetchParameters()
        var seen = Set<Substring>()
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { return .failure(.init("'\(item)' is not key=value")) }
            guard seen.insert(parts[0]).inserted else { return .failure(.init("\(parts[0]) is given twice")) }
            let key = parts[0], value = parts[1]
            if key == "policy" {
                guard let policy = PrefetchPolicy(rawValue: String(value)) else {
                    return .failure(.init("policy must be markov or sequential, not '\(value)'"))
                }
                parameters.policy = policy
                continue
            }
            guard let number = Int(value) else { return .failure(.init("\(key) must be an integer, not '\(value)'")) }
            switch key {
            case "disk": parameters.disk = number
            case "order": parameters.order = number
            case "window": parameters.window = number
            case "block": parameters.block = number
            case "table": parameters.table = number
            default: return .failure(.init("unknown key '\(key)' (known: \(keys))"))
            }
        }
        guard (0 ..< disks).contains(parameters.disk) else {
            return .failure(.init("disk \(parameters.disk) is not granted to this service (the VM has \(disks) disk\(disks == 1 ? "" : "s"))"))
        }
        guard (1 ... 4).contains(parameters.order) else { return .failure(.init("order must be 1...4, not \(parameters.order)")) }
        guard (1 ... 1024).contains(parameters.window) else { return .failure(.init("window must be 1...1024, not \(parameters.window)")) }
        guard (512 ... 1 << 20).contains(parameters.block), parameters.block % 512 == 0 else {
            return .failure(.init("block must be a multiple of 512 from 512 to 1048576, not \(parameters.block)"))
        }
        guard (1 ... 1 << 20).contains(parameters.table) else { return .failure(.init("table must be 1...1048576, not \(parameters.table)")) }
        return .success(parameters)
    }
}

struct ParameterError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
