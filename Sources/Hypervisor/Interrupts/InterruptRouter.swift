import Synchronization

/// Owns the VM's GSI routing table: the fixed PC ISA routes plus one MSI route per device
/// interrupt vector. KVM takes the table whole, so every change commits all of it.
public final class InterruptRouter: Sendable {
    /// GSIs 0-23 are the IOAPIC pins; message-signalled interrupts are numbered after them.
    static let firstMSIGSI: UInt32 = 24
    static let gsiLimit: UInt32 = 1024

    struct State {
        var msiRoutes: [UInt32: InterruptRoute] = [:]
        var freeGSIs: [UInt32] = []
        var nextGSI = InterruptRouter.firstMSIGSI
    }

    private let vm: KVMVirtualMachine
    private let state = Mutex(State())

    init(vm: KVMVirtualMachine) throws(SystemError) {
        self.vm = vm
        try vm.setInterruptRoutes(InterruptRoute.pcLegacy)
    }

    /// Reserves a GSI for one MSI vector; it routes nowhere until `setMSI` gives it a message.
    public func allocateGSI() throws(HypervisorError) -> UInt32 {
        let gsi: UInt32? = state.withLock { s in
            if let reused = s.freeGSIs.popLast() { return reused }
            guard s.nextGSI < Self.gsiLimit else { return nil }
            defer { s.nextGSI += 1 }
            return s.nextGSI
        }
        guard let gsi else { throw .configuration("out of interrupt routes (\(Self.gsiLimit) GSIs)") }
        return gsi
    }

    public func releaseGSI(_ gsi: UInt32) throws(SystemError) {
        try update { s in
            s.msiRoutes[gsi] = nil
            s.freeGSIs.append(gsi)
        }
    }

    /// Points `gsi` at an MSI message (address/data as the guest programmed them); nil removes it.
    public func setMSI(gsi: UInt32, address: UInt64, data: UInt32) throws(SystemError) {
        try update { s in s.msiRoutes[gsi] = .msi(gsi: gsi, address: address, data: data) }
    }

    public func clearMSI(gsi: UInt32) throws(SystemError) {
        try update { s in s.msiRoutes[gsi] = nil }
    }

    private func update(_ change: (inout State) -> Void) throws(SystemError) {
        // The lock is held across the ioctl so two vCPUs' updates reach KVM in order.
        let result: SystemError? = state.withLock { s in
            change(&s)
            let routes = InterruptRoute.pcLegacy + s.msiRoutes.keys.sorted().compactMap { s.msiRoutes[$0] }
            do throws(SystemError) { try vm.setInterruptRoutes(routes) } catch { return error }
            return nil
        }
        if let result { throw result }
    }
}
