/// Names a hot-plug slot: the physical slot number its root port reports in Slot Capabilities
/// (1, 2, …), stable for the life of the VM. A slot holds at most one device at a time.
public struct HotplugSlotID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(_ rawValue: Int) { self.rawValue = rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "slot \(rawValue)" }
}

/// Why a hot-plug or hot-unplug request was refused; each reads as one line.
public enum HotplugError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Every hot-plug slot holds a device (or the VM has none: `MachineConfiguration.hotplugSlots`).
    case noFreeSlot(slots: Int)
    /// No root port has this slot number.
    case unknownSlot(HotplugSlotID)
    /// The slot is empty: nothing to detach (a second detach of the same device lands here).
    case slotEmpty(HotplugSlotID)
    case slotOccupied(HotplugSlotID)
    /// Another detach of this slot is waiting for the guest.
    case detachInProgress(HotplugSlotID)
    /// The attention button was pressed but the guest did not turn slot power off in time; the
    /// device stays attached and usable.
    case guestDidNotRelease(HotplugSlotID, timeout: Duration)
    /// No hot-plugged device has this name.
    case unknownDevice(String)
    case duplicateName(String)

    public var description: String {
        switch self {
        case let .noFreeSlot(slots):
            return slots == 0 ? "this VM has no hot-plug slots" : "no free hot-plug slot (all \(slots) in use)"
        case let .unknownSlot(id): return "no hot-plug \(id) in this VM"
        case let .slotEmpty(id): return "hot-plug \(id) is empty (already detached?)"
        case let .slotOccupied(id): return "hot-plug \(id) already holds a device"
        case let .detachInProgress(id): return "a detach of hot-plug \(id) is already in progress"
        case let .guestDidNotRelease(id, timeout):
            return "the guest did not release the device in hot-plug \(id) within \(timeout) (it stays attached)"
        case let .unknownDevice(name): return "no hot-plugged device named '\(name)'"
        case let .duplicateName(name): return "a device named '\(name)' is already attached"
        }
    }
}
