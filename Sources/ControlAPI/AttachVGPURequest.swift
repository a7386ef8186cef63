import FullVGPU
import VGPUAssembly
import VGPUCore

/// POST /v1/vgpus: the vGPU to hot-plug, as JSON fields (snake_case on the wire). The command
/// line's `--vgpu` mini-language stays on the command line: `malvvm vgpu attach` parses it and
/// sends these fields.
public struct AttachVGPURequest: Codable, Sendable, Equatable {
    /// A named profile (`1g.1gb`, `2g.2gb`, `4g.4gb`, `8g.8gb`, or their former names `1g`…`8g`;
    /// a daemon's own names with `gpud`).
    public var profile: String
    /// Overrides of the named profile's GPU memory quota, weight and context limit (not with
    /// `gpud`: the daemon's operator sets what a profile gets).
    public var memoryBytes: Int?
    public var weight: Double?
    public var contexts: Int?
    /// "para" (default) or "full" (docs/fullvgpu.md).
    public var kind: String?
    /// The GPU daemon's socket, to make the vGPU its client; absent: the VM's embedded scheduler.
    public var gpud: String?
    /// The full-vGPU's G-VMCS controls (kind "full" only; docs/fullvgpu.md).
    public var doorbellExiting: Bool?
    public var mmioBitmap: Bool?
    public var nestedPaging: Bool?
    public var postedCompletions: Bool?

    public init(profile: String, memoryBytes: Int? = nil, weight: Double? = nil, contexts: Int? = nil, kind: String? = nil,
                gpud: String? = nil, doorbellExiting: Bool? = nil, mmioBitmap: Bool? = nil, nestedPaging: Bool? = nil,
                postedCompletions: Bool? = nil) {
        self.profile = profile
        self.memoryBytes = memoryBytes
        self.weight = weight
        self.contexts = contexts
        self.kind = kind
        self.gpud = gpud
        self.doorbellExiting = doorbellExiting
        self.mmioBitmap = mmioBitmap
        self.nestedPaging = nestedPaging
        self.postedCompletions = postedCompletions
    }

    /// The request for a vGPU as `--vgpu` describes it: every field the specification sets.
    public init(_ specification: VGPUSpecification) {
        switch specification.placement {
        case let .embedded(profile):
            // A custom profile goes as a named base with every field overridden.
            let isNamed = VGPUProfile.named[profile.name] == profile
            self.init(profile: isNamed ? profile.name : VGPUProfile.defaultName)
            if !isNamed {
                memoryBytes = profile.memoryBytes
                weight = profile.weight
                contexts = profile.maxContexts
            }
        case let .daemon(socket, name):
            self.init(profile: name, gpud: socket)
        }
        if case let .full(controls) = specification.kind {
            kind = "full"
            doorbellExiting = controls.doorbellExiting
            mmioBitmap = controls.mmioBitmap
            nestedPaging = controls.nestedPaging
            postedCompletions = controls.postedCompletions
        }
    }

    /// What the request asks for, or a 400 that names the field at fault.
    public func specification() throws(APIError) -> VGPUSpecification {
        let controlFields: [(String, Bool?)] = [("doorbell_exiting", doorbellExiting), ("mmio_bitmap", mmioBitmap),
                                                ("nested_paging", nestedPaging), ("posted_completions", postedCompletions)]
        let isFull: Bool
        switch kind {
        case nil, "para": isFull = false
        case "full": isFull = true
        case let kind?: throw .badRequest("unknown vGPU kind '\(kind)' (known: para, full)")
        }
        if !isFull, let (field, _) = controlFields.first(where: { $0.1 != nil }) {
            throw .badRequest("'\(field)' is a full-vGPU control: add \"kind\": \"full\"")
        }
        let placement: VGPUSpecification.Placement
        if let gpud {
            guard !gpud.isEmpty else { throw .badRequest("gpud must be a socket path") }
            guard !isFull else { throw .badRequest("a full-vGPU runs in the VM's process: gpud is for para-vGPUs") }
            if let (field, _) = [("memory_bytes", memoryBytes != nil), ("weight", weight != nil), ("contexts", contexts != nil)]
                .first(where: { $0.1 }) {
                throw .badRequest("'\(field)' of a gpud vGPU is the daemon operator's to set: name a profile the daemon offers")
            }
            guard VGPUProfile.isPlainName(profile) else { throw .badRequest("bad profile name '\(profile)'") }
            placement = .daemon(socket: gpud, profile: profile.lowercased())
        } else {
            guard var chosen = VGPUProfile.resolve(profile) else {
                throw .badRequest("unknown vGPU profile '\(profile)' (known: \(VGPUProfile.named.keys.sorted().joined(separator: ", ")))")
            }
            if let memoryBytes {
                guard VGPUProfile.isValid(memoryBytes: memoryBytes) else { throw .badRequest("memory_bytes must be positive") }
                chosen.memoryBytes = memoryBytes
            }
            if let weight {
                guard VGPUProfile.isValid(weight: weight) else { throw .badRequest("weight must be a positive number") }
                chosen.weight = weight
            }
            if let contexts {
                guard VGPUProfile.contextLimits.contains(contexts) else {
                    throw .badRequest("contexts must be \(VGPUProfile.contextLimits.lowerBound)-\(VGPUProfile.contextLimits.upperBound)")
                }
                chosen.maxContexts = contexts
            }
            if memoryBytes != nil || weight != nil || contexts != nil { chosen.name = "custom" }
            placement = .embedded(chosen)
        }
        guard isFull else { return VGPUSpecification(kind: .para, placement: placement) }
        var controls = FullVGPUControls()
        if let doorbellExiting { controls.doorbellExiting = doorbellExiting }
        if let mmioBitmap { controls.mmioBitmap = mmioBitmap }
        if let nestedPaging { controls.nestedPaging = nestedPaging }
        if let postedCompletions { controls.postedCompletions = postedCompletions }
        return VGPUSpecification(kind: .full(controls), placement: placement)
    }
}
