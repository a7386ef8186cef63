import Dispatch
import Logging
import Synchronization

/// Register offsets and bits of the PCI Express capability (PCIe base spec §7.5.3) that a root
/// port with a hot-plug slot uses; offsets are from the capability's start.
public enum PCIExpress {
    public static let capabilityID: UInt8 = 0x10
    public static let capabilitySize = 0x3c  // version 2, with the slot and root registers

    public static let flags = 0x02, deviceCapabilities = 0x04, deviceControl = 0x08, deviceStatus = 0x0a
    public static let linkCapabilities = 0x0c, linkControl = 0x10, linkStatus = 0x12
    public static let slotCapabilities = 0x14, slotControl = 0x18, slotStatus = 0x1a
    public static let rootControl = 0x1c, rootStatus = 0x20
    public static let linkCapabilities2 = 0x2c, linkControl2 = 0x30

    public static let flagsVersion2: UInt16 = 0x2
    public static let flagsTypeRootPort: UInt16 = 0x4 << 4
    public static let flagsSlotImplemented: UInt16 = 0x100

    public static let linkCapabilitiesDLLLARC: UInt32 = 1 << 20
    public static let linkStatusDLLLA: UInt16 = 1 << 13

    public enum SlotCapabilities {
        public static let attentionButton: UInt32 = 0x1
        public static let powerController: UInt32 = 0x2
        public static let attentionIndicator: UInt32 = 0x8
        public static let powerIndicator: UInt32 = 0x10
        public static let hotPlugSurprise: UInt32 = 0x20
        public static let hotPlugCapable: UInt32 = 0x40
        public static let noCommandCompleted: UInt32 = 0x40000
        public static let physicalSlotShift: UInt32 = 19
    }

    public enum SlotControl {
        public static let attentionButtonEnable: UInt16 = 0x1
        public static let powerFaultEnable: UInt16 = 0x2
        public static let mrlSensorEnable: UInt16 = 0x4
        public static let presenceDetectEnable: UInt16 = 0x8
        public static let commandCompletedEnable: UInt16 = 0x10
        public static let hotPlugInterruptEnable: UInt16 = 0x20
        public static let attentionIndicator: UInt16 = 0xc0
        public static let attentionIndicatorOff: UInt16 = 0xc0
        public static let powerIndicator: UInt16 = 0x300
        public static let powerIndicatorOn: UInt16 = 0x100
        public static let powerIndicatorOff: UInt16 = 0x300
        /// Power Controller Control: 1 is *off*.
        public static let powerOff: UInt16 = 0x400
        public static let linkStateEnable: UInt16 = 0x1000
        /// Every bit the guest may write (Electromechanical Interlock Control is absent).
        public static let writable: UInt16 = 0x17ff
    }

    public enum SlotStatus {
        public static let attentionButtonPressed: UInt16 = 0x1
        public static let powerFault: UInt16 = 0x2
        public static let mrlSensorChanged: UInt16 = 0x4
        public static let presenceDetectChanged: UInt16 = 0x8
        public static let commandCompleted: UInt16 = 0x10
        public static let presenceDetect: UInt16 = 0x40
        public static let linkStateChanged: UInt16 = 0x100
        /// The event bits, each write-1-to-clear.
        public static let events: UInt16 = 0x011f
    }
}

/// A PCI Express root port on bus 0 with one native hot-plug slot (PCIe base spec §6.7), shaped
/// the way Linux's pciehp drives one: a type-1 bridge header whose bus numbers and windows the
/// guest programs, a PCIe capability of type root port with Slot Implemented, an attention
/// button, a power controller and indicators, Data Link Layer Active reporting, command
/// completion, and the hot-plug interrupt by MSI.
///
/// The VMM side: `cardInserted`/`cardRemoved` change presence and link state and raise Presence
/// Detect Changed and Data Link Layer State Changed; `requestRelease` presses the attention button
/// and waits for the guest to turn slot power off, which is how pciehp (after its 5 s grace) and
/// our test guest say they let go of the device. The card's link is up whenever it is present,
/// as in QEMU: with an attention button pciehp listens to link and button events only, so a link
/// that waited for slot power would leave a hot-added card unnoticed.
///
/// The hot-plug interrupt follows §6.7.3.4 for MSI: a message each time "HPIE and some enabled
/// event bit set" goes from false to true, so software clears every event before the next one.
public final class PCIeRootPort: PCIDevice, Sendable {
    /// What firmware would reserve behind each port for hot-added BARs (windows have 1 MiB
    /// granularity): 32-bit memory for non-prefetchable BARs, 64-bit prefetchable for the rest.
    public static let memoryWindowSize: UInt64 = 2 << 20
    public static let prefetchableWindowSize: UInt64 = 256 << 20

    public let configuration: PCIConfiguration
    /// The slot number the guest sees in Slot Capabilities (and the one `HotplugSlotID` names).
    public let physicalSlot: Int
    let msi: MSICapability
    /// Offset of the PCI Express capability.
    public let express: Int

    struct State {
        var interruptAsserted = false
        var slotControl: UInt16
        var releaseWaiter: DispatchSemaphore?
        var commands: UInt64 = 0
    }

    private let state: Mutex<State>
    private let logger: Logger

    public init(physicalSlot: Int, vm: KVMVirtualMachine, router: InterruptRouter,
                logger: Logger = Logger(label: "malvvm.pcie-port")) throws(HypervisorError) {
        precondition((1...0x1fff).contains(physicalSlot))
        self.physicalSlot = physicalSlot
        self.logger = logger
        // QEMU's generic root port identity (Red Hat 1b36:000c): guests know it as a plain
        // PCIe root port and apply no vendor quirks to it.
        configuration = PCIConfiguration(
            identity: PCIIdentity(vendorID: 0x1b36, deviceID: 0x000c, classCode: 0x06, subclass: 0x04),
            bars: [], headerType: .bridge)
        Self.setUpBridgeHeader(configuration)

        let initialControl = PCIExpress.SlotControl.attentionIndicatorOff | PCIExpress.SlotControl.powerIndicatorOff
            | PCIExpress.SlotControl.powerOff
        var cap = [UInt8](repeating: 0, count: PCIExpress.capabilitySize)
        func put16(_ at: Int, _ v: UInt16) { cap[at] = UInt8(v & 0xff); cap[at + 1] = UInt8(v >> 8) }
        func put32(_ at: Int, _ v: UInt32) { for i in 0..<4 { cap[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
        put16(PCIExpress.flags, PCIExpress.flagsVersion2 | PCIExpress.flagsTypeRootPort | PCIExpress.flagsSlotImplemented)
        put32(PCIExpress.deviceCapabilities, 0x8000)  // role-based error reporting; 128-byte payloads
        // 2.5 GT/s, x1, DLL Link Active Reporting Capable, port number = the slot.
        put32(PCIExpress.linkCapabilities, 0x1 | 0x1 << 4 | PCIExpress.linkCapabilitiesDLLLARC | UInt32(physicalSlot & 0xff) << 24)
        put16(PCIExpress.linkStatus, 0x1 | 0x1 << 4)
        put32(PCIExpress.slotCapabilities, PCIExpress.SlotCapabilities.attentionButton | PCIExpress.SlotCapabilities.powerController
            | PCIExpress.SlotCapabilities.attentionIndicator | PCIExpress.SlotCapabilities.powerIndicator
            | PCIExpress.SlotCapabilities.hotPlugCapable | UInt32(physicalSlot) << PCIExpress.SlotCapabilities.physicalSlotShift)
        put16(PCIExpress.slotControl, initialControl)
        put32(PCIExpress.linkCapabilities2, 0x2)  // supported speeds: 2.5 GT/s
        put16(PCIExpress.linkControl2, 0x1)
        express = configuration.addCapability(id: PCIExpress.capabilityID, body: Array(cap[2...]))
        let x = express
        configuration.setWriteMasks(at: x + PCIExpress.deviceControl, writable: [0xff, 0x78], clearable: [])
        configuration.setWriteMasks(at: x + PCIExpress.deviceStatus, writable: [0, 0], clearable: [0x0f, 0])
        configuration.setWriteMasks(at: x + PCIExpress.linkControl, writable: [0xc3, 0x00])
        configuration.setWriteMasks(at: x + PCIExpress.slotControl,
                                    writable: [UInt8(PCIExpress.SlotControl.writable & 0xff), UInt8(PCIExpress.SlotControl.writable >> 8)])
        configuration.setWriteMasks(at: x + PCIExpress.slotStatus, writable: [0, 0],
                                    clearable: [UInt8(PCIExpress.SlotStatus.events & 0xff), UInt8(PCIExpress.SlotStatus.events >> 8)])
        configuration.setWriteMasks(at: x + PCIExpress.rootControl, writable: [0x0f, 0])
        configuration.setWriteMasks(at: x + PCIExpress.rootStatus, writable: [0, 0, 0, 0], clearable: [0, 0, 0x01, 0])
        configuration.setWriteMasks(at: x + PCIExpress.linkControl2, writable: [0x0f, 0])
        msi = try MSICapability(configuration: configuration, vm: vm, router: router, logger: logger)
        state = Mutex(State(slotControl: initialControl))
    }

    private static func setUpBridgeHeader(_ c: PCIConfiguration) {
        // Bus numbers and secondary latency; no I/O window (base/limit read 0, so the guest
        // sees none); memory and 64-bit prefetchable windows at 1 MiB granularity.
        c.setWriteMasks(at: 0x18, writable: [0xff, 0xff, 0xff, 0xff])
        c.setBytes([0x01, 0x00, 0x01, 0x00], at: 0x24)  // prefetchable base/limit: 64-bit
        c.setWriteMasks(at: 0x20, writable: [0xf0, 0xff, 0xf0, 0xff, 0xf0, 0xff, 0xf0, 0xff])
        c.setWriteMasks(at: 0x28, writable: [UInt8](repeating: 0xff, count: 8))
        // Bridge control: parity, SERR, ISA, VGA, VGA 16-bit, master abort, secondary bus reset.
        c.setWriteMasks(at: 0x3e, writable: [0x7f, 0x00])
        // Windows closed (base above limit) until firmware or the guest opens them.
        c.setBytes([0xf0, 0xff, 0x00, 0x00], at: 0x20)
        c.setBytes([0xf1, 0xff, 0x01, 0x00], at: 0x24)
    }

    // MARK: Bridge state the root complex routes by

    public var secondaryBus: Int { Int(configuration.bytes(at: 0x19, count: 1)[0]) }
    public var subordinateBus: Int { Int(configuration.bytes(at: 0x1a, count: 1)[0]) }

    /// The non-prefetchable memory window [base, end), nil when closed.
    public var memoryWindow: Range<UInt64>? {
        let base = UInt64(configuration.value16(at: 0x20) & 0xfff0) << 16
        let limit = UInt64(configuration.value16(at: 0x22) & 0xfff0) << 16 | 0xfffff
        return base <= limit ? base..<(limit + 1) : nil
    }

    /// The prefetchable window [base, end), nil when closed.
    public var prefetchableWindow: Range<UInt64>? {
        let base = UInt64(configuration.value32(at: 0x28)) << 32 | UInt64(configuration.value16(at: 0x24) & 0xfff0) << 16
        let limit = UInt64(configuration.value32(at: 0x2c)) << 32 | UInt64(configuration.value16(at: 0x26) & 0xfff0) << 16 | 0xfffff
        return base <= limit ? base..<(limit + 1) : nil
    }

    /// Opens the windows, as firmware does before the guest runs.
    func programWindows(memory: Range<UInt64>?, prefetchable: Range<UInt64>?) {
        if let memory {
            let base = UInt16(truncatingIfNeeded: memory.lowerBound >> 16) & 0xfff0
            let limit = UInt16(truncatingIfNeeded: (memory.upperBound - 1) >> 16) & 0xfff0
            configuration.setBytes([UInt8(base & 0xff), UInt8(base >> 8), UInt8(limit & 0xff), UInt8(limit >> 8)], at: 0x20)
        }
        if let prefetchable {
            let base = UInt16(truncatingIfNeeded: prefetchable.lowerBound >> 16) & 0xfff0 | 0x1
            let limit = UInt16(truncatingIfNeeded: (prefetchable.upperBound - 1) >> 16) & 0xfff0 | 0x1
            configuration.setBytes([UInt8(base & 0xff), UInt8(base >> 8), UInt8(limit & 0xff), UInt8(limit >> 8)], at: 0x24)
            var upper: [UInt8] = []
            upper.appendLittleEndian(UInt32(truncatingIfNeeded: prefetchable.lowerBound >> 32))
            upper.appendLittleEndian(UInt32(truncatingIfNeeded: (prefetchable.upperBound - 1) >> 32))
            configuration.setBytes(upper, at: 0x28)
        }
    }

    /// Whether the port passes memory requests for [address, address + size) to its secondary bus.
    public func forwards(_ address: UInt64, size: UInt64) -> Bool {
        guard configuration.command & PCIConfiguration.commandMemorySpace != 0 else { return false }
        let (end, overflow) = address.addingReportingOverflow(size)
        guard !overflow else { return false }
        for window in [memoryWindow, prefetchableWindow] {
            if let window, window.lowerBound <= address, end <= window.upperBound { return true }
        }
        return false
    }

    // MARK: Slot state

    public var slotStatus: UInt16 { configuration.value16(at: express + PCIExpress.slotStatus) }
    public var slotControl: UInt16 { configuration.value16(at: express + PCIExpress.slotControl) }
    /// Slot power as the guest's Power Controller Control leaves it.
    public var isPowered: Bool { slotControl & PCIExpress.SlotControl.powerOff == 0 }
    public var isOccupied: Bool { slotStatus & PCIExpress.SlotStatus.presenceDetect != 0 }
    /// Slot Control writes the guest has made (each one a command that completed at once).
    public var commandCount: UInt64 { state.withLock { $0.commands } }

    /// A card is in the slot: presence and link up, and the events that tell the guest.
    func cardInserted() {
        configuration.update16(at: express + PCIExpress.linkStatus) { $0 | PCIExpress.linkStatusDLLLA }
        raise(PCIExpress.SlotStatus.presenceDetectChanged | PCIExpress.SlotStatus.linkStateChanged,
              setting: PCIExpress.SlotStatus.presenceDetect)
    }

    /// The card is gone: presence and link down, and the events that tell the guest.
    func cardRemoved() {
        configuration.update16(at: express + PCIExpress.linkStatus) { $0 & ~PCIExpress.linkStatusDLLLA }
        configuration.update16(at: express + PCIExpress.slotStatus) { $0 & ~PCIExpress.SlotStatus.presenceDetect }
        raise(PCIExpress.SlotStatus.presenceDetectChanged | PCIExpress.SlotStatus.linkStateChanged)
        state.withLock { s in
            s.releaseWaiter?.signal()
            s.releaseWaiter = nil
        }
    }

    /// Presses the attention button and waits until the guest turns slot power off, or
    /// `timeout` passes. True when power is off (at once if the guest never turned it on).
    func requestRelease(timeout: Duration) -> Bool {
        let waiter = DispatchSemaphore(value: 0)
        let poweredOff = state.withLock { s -> Bool in
            if !isPowered { return true }
            s.releaseWaiter = waiter
            return false
        }
        if poweredOff { return true }
        raise(PCIExpress.SlotStatus.attentionButtonPressed)
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) * 1e-18
        _ = waiter.wait(timeout: .now() + min(max(seconds, 0), 1e6))
        return state.withLock { s in
            s.releaseWaiter = nil
            return !isPowered
        }
    }

    /// Sets event bits (and `setting`, plain state bits) in Slot Status and interrupts if that
    /// makes the hot-plug interrupt condition true.
    private func raise(_ events: UInt16, setting: UInt16 = 0) {
        configuration.update16(at: express + PCIExpress.slotStatus) { $0 | events | setting }
        updateInterrupt()
    }

    /// §6.7.3.4: with MSI, a message on each false → true transition of the interrupt condition.
    private func updateInterrupt() {
        let send = state.withLock { s -> Bool in
            let control = slotControl, status = slotStatus
            var enabledEvents = control & 0x1f & PCIExpress.SlotStatus.events
            if control & PCIExpress.SlotControl.linkStateEnable != 0 { enabledEvents |= PCIExpress.SlotStatus.linkStateChanged }
            let asserted = control & PCIExpress.SlotControl.hotPlugInterruptEnable != 0 && status & enabledEvents != 0
            defer { s.interruptAsserted = asserted }
            return asserted && !s.interruptAsserted
        }
        if send { msi.signal() }
    }

    // MARK: PCIDevice

    public func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        for i in data.indices { data[i] = 0xff }
    }

    public func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {}

    public func configurationWritten(offset: Int, size: Int) {
        msi.configurationWritten(offset: offset, size: size)
        let control = express + PCIExpress.slotControl
        let status = express + PCIExpress.slotStatus
        if offset < control + 2 && offset + size > control {
            // Every Slot Control write is a command, and ours complete at once.
            let new = slotControl
            let old = state.withLock { s -> UInt16 in
                defer { s.slotControl = new; s.commands += 1 }
                return s.slotControl
            }
            if old & PCIExpress.SlotControl.powerOff == 0 && new & PCIExpress.SlotControl.powerOff != 0 {
                logger.debug("slot powered off", metadata: ["slot": "\(physicalSlot)"])
                state.withLock { s in
                    s.releaseWaiter?.signal()
                    s.releaseWaiter = nil
                }
            }
            raise(PCIExpress.SlotStatus.commandCompleted)
        } else if offset < status + 2 && offset + size > status {
            updateInterrupt()
        }
    }
}
