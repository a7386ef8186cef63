/// A PCI function the VM plugs into a slot. The root complex handles configuration cycles
/// through `configuration` and routes BAR accesses here; the device never touches the bus.
public protocol PCIDevice: AnyObject, Sendable {
    var configuration: PCIConfiguration { get }
    func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer)
    func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer)
    /// A guest configuration write landed at `offset` (after the generic handling), for
    /// capabilities with side effects such as MSI-X enable.
    func configurationWritten(offset: Int, size: Int)
    /// Lets a device answer a configuration read itself (a window onto its BARs); nil: the
    /// configuration space's own bytes.
    func configurationRead(offset: Int, size: Int) -> UInt32?
    /// BAR `index` now decodes at `address` (nil: not decoded); devices with ioeventfds move them.
    func barMapped(_ index: Int, at address: UInt64?)
}

extension PCIDevice {
    public func configurationWritten(offset: Int, size: Int) {}
    public func configurationRead(offset: Int, size: Int) -> UInt32? { nil }
    public func barMapped(_ index: Int, at address: UInt64?) {}
}

/// The host bridge at 00:00.0: identity only, as firmware and guests expect to find one.
final class PCIHostBridge: PCIDevice {
    // The identity Cloud Hypervisor also uses: an Intel host bridge with no BARs.
    let configuration = PCIConfiguration(
        identity: PCIIdentity(vendorID: 0x8086, deviceID: 0x0d57, classCode: 0x06, subclass: 0x00), bars: [])

    func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {}
    func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {}
}
