/// What one control field may hold, in the form of VMX's IA32_VMX_*_CTLS capability MSRs:
/// a bit set in `allowed0` must be 1 ("allowed 0-setting" is forbidden), a bit clear in
/// `allowed1` must be 0. A field is valid when `value & allowed0 == allowed0` and
/// `value & ~allowed1 == 0`.
public struct GVMControlCapability: Hashable, Sendable {
    public var allowed0: UInt32
    public var allowed1: UInt32

    public init(allowed0: UInt32, allowed1: UInt32) {
        self.allowed0 = allowed0
        self.allowed1 = allowed1
    }

    /// The 64-bit capability word as the MSR reports it: allowed-0 in 31:0, allowed-1 in 63:32.
    public var msrValue: UInt64 { UInt64(allowed1) << 32 | UInt64(allowed0) }

    public func permits(_ value: UInt32) -> Bool {
        value & allowed0 == allowed0 && value & ~allowed1 == 0
    }
}

/// The unit's capabilities: the analogue of the IA32_VMX_BASIC/CTLS/EPT_VPID_CAP MSRs. The
/// hypervisor reads them to build G-VMCSs the unit accepts; entry checks consult them.
public struct GVMCapabilities: Hashable, Sendable {
    /// Written by software at offset 0 of every G-VMCS region and checked by `gvmptrld`.
    /// 31 bits: bit 31 is reserved, as in VMX.
    public var revisionIdentifier: UInt32
    /// Width of host and guest-physical addresses. G-VMCS regions, bitmaps, descriptors and
    /// page tables must lie below 2^width.
    public var physicalAddressWidth: Int
    public var executionControls: GVMControlCapability
    public var exitControls: GVMControlCapability
    public var entryControls: GVMControlCapability
    /// G-EPT memory types the unit accepts in the G-EPT pointer (VMX: UC = 0, WB = 6).
    public var geptMemoryTypes: Set<UInt8>
    /// Preemption timer range in 1 µs ticks: NVIDIA vGPU's 1-30 ms time-slice range.
    public var preemptionTimerRange: ClosedRange<UInt32>
    /// Command ring sizes, in slots, that the front end can walk.
    public var commandRingSizeRange: ClosedRange<UInt32>
    /// Guest completion vectors (MSI-X table entries) events may target.
    public var completionVectorCount: Int
    /// Scheduler client ids the physical GPU's scheduler hands out.
    public var schedulerClientCount: UInt32
    /// Trapped register accesses a virtual GPU may have outstanding; one per vCPU in practice.
    public var pendingRegisterAccessLimit: Int

    public init(
        revisionIdentifier: UInt32 = 0x4756_4D01,
        physicalAddressWidth: Int = 46,
        executionControls: GVMControlCapability = .init(allowed0: 0, allowed1: 0x1F),
        exitControls: GVMControlCapability = .init(allowed0: 0, allowed1: 0x3),
        entryControls: GVMControlCapability = .init(allowed0: 0, allowed1: 0x1),
        geptMemoryTypes: Set<UInt8> = [0, 6],
        preemptionTimerRange: ClosedRange<UInt32> = 1_000...30_000,
        commandRingSizeRange: ClosedRange<UInt32> = 2...65_536,
        completionVectorCount: Int = 32,
        schedulerClientCount: UInt32 = 256,
        pendingRegisterAccessLimit: Int = 32
    ) {
        precondition(revisionIdentifier & 0x8000_0000 == 0, "bit 31 of the revision is reserved")
        precondition((32...52).contains(physicalAddressWidth))
        self.revisionIdentifier = revisionIdentifier
        self.physicalAddressWidth = physicalAddressWidth
        self.executionControls = executionControls
        self.exitControls = exitControls
        self.entryControls = entryControls
        self.geptMemoryTypes = geptMemoryTypes
        self.preemptionTimerRange = preemptionTimerRange
        self.commandRingSizeRange = commandRingSizeRange
        self.completionVectorCount = completionVectorCount
        self.schedulerClientCount = schedulerClientCount
        self.pendingRegisterAccessLimit = pendingRegisterAccessLimit
    }

    /// True when `address` fits the physical-address width.
    public func isPhysicalAddress(_ address: UInt64) -> Bool {
        address >> UInt64(physicalAddressWidth) == 0
    }

    /// Nanoseconds per preemption-timer tick; the unit is fixed at 1 µs so slices read in µs.
    public static let preemptionTimerTickNanoseconds: UInt64 = 1_000
}
