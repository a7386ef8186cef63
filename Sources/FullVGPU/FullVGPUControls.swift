import GVMCS

/// Which G-VMCS controls a full-vGPU runs with (docs/fullvgpu.md, "Controls"): the knobs of
/// the ablation that measures what each proposed hardware field buys. The defaults are the
/// proposed hardware: doorbells and completions without exits, only setup registers trapped,
/// nested paging for isolation.
public struct FullVGPUControls: Hashable, Sendable, Codable, CustomStringConvertible {
    public var doorbellExiting = false
    public var mmioBitmap = true
    public var nestedPaging = true
    public var postedCompletions = true

    public init(doorbellExiting: Bool = false, mmioBitmap: Bool = true, nestedPaging: Bool = true,
                postedCompletions: Bool = true) {
        self.doorbellExiting = doorbellExiting
        self.mmioBitmap = mmioBitmap
        self.nestedPaging = nestedPaging
        self.postedCompletions = postedCompletions
    }

    /// The `--vgpu kind=full` keys, in the order the docs list them.
    public static let keys = ["doorbell-exiting", "mmio-bitmap", "nested-paging", "posted-completions"]

    /// Sets the control named by `key` from "on" or "off"; false for an unknown key or value.
    public mutating func set(_ key: String, _ value: String) -> Bool {
        let on: Bool
        switch value.lowercased() {
        case "on", "true", "1": on = true
        case "off", "false", "0": on = false
        default: return false
        }
        switch key.lowercased() {
        case "doorbell-exiting": doorbellExiting = on
        case "mmio-bitmap": mmioBitmap = on
        case "nested-paging": nestedPaging = on
        case "posted-completions": postedCompletions = on
        default: return false
        }
        return true
    }

    /// The GPU-execution controls field these choices make (the preemption timer is always on).
    var executionControls: GVMExecutionControls {
        var controls: GVMExecutionControls = [.activatePreemptionTimer]
        if doorbellExiting { controls.insert(.doorbellExiting) }
        if mmioBitmap { controls.insert(.useMMIOBitmap) }
        if nestedPaging { controls.insert(.nestedPaging) }
        if postedCompletions { controls.insert(.postedCompletions) }
        return controls
    }

    public var description: String {
        func word(_ on: Bool) -> String { on ? "on" : "off" }
        return "doorbell-exiting=\(word(doorbellExiting)),mmio-bitmap=\(word(mmioBitmap)),"
            + "nested-paging=\(word(nestedPaging)),posted-completions=\(word(postedCompletions))"
    }
}
