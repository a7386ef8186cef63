/// The contents of one G-VMCS: every component's current value.
///
/// A value type, so a hypervisor (or a test) can build one, copy it and compare it; the unit
/// keeps one per G-VMCS region, the analogue of the VMCS data a processor caches for a region.
/// Software outside the unit never changes a live one except through `gvmwrite`, which is where
/// read-only fields are protected; the unit itself writes exit information through the
/// unrestricted subscript.
public struct GVMControlStructure: Hashable, Sendable {
    private var values: [GVMCSField: UInt64] = [:]

    /// A G-VMCS with every field zero, as `gvmclear` leaves a region it initialises.
    public init() {}

    /// The field's value, truncated to its width on store as VMWRITE truncates.
    public subscript(field: GVMCSField) -> UInt64 {
        get { values[field] ?? 0 }
        set { values[field] = newValue & field.width.mask }
    }

    // MARK: Typed views used by the entry checks and the run step.

    public var executionControls: GVMExecutionControls {
        get { GVMExecutionControls(rawValue: UInt32(self[.gpuExecutionControls])) }
        set { self[.gpuExecutionControls] = UInt64(newValue.rawValue) }
    }

    public var exitControls: GVMExitControls {
        get { GVMExitControls(rawValue: UInt32(self[.exitControls])) }
        set { self[.exitControls] = UInt64(newValue.rawValue) }
    }

    public var entryControls: GVMEntryControls {
        get { GVMEntryControls(rawValue: UInt32(self[.entryControls])) }
        set { self[.entryControls] = UInt64(newValue.rawValue) }
    }

    public var eventInjection: GVMEventInjection {
        get { GVMEventInjection(rawValue: UInt32(self[.entryEventInjection])) }
        set { self[.entryEventInjection] = UInt64(newValue.rawValue) }
    }

    public var geptPointer: GEPTPointer {
        get { GEPTPointer(rawValue: self[.geptPointer]) }
        set { self[.geptPointer] = newValue.rawValue }
    }

    var ringSize: UInt32 { UInt32(self[.commandRingSize]) }
    var ringHead: UInt32 { UInt32(self[.commandRingHead]) }
    var ringTail: UInt32 { UInt32(self[.commandRingTail]) }
}
