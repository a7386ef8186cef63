import CKVM

/// Where KVM delivers a global system interrupt (GSI): an irqchip pin or an MSI message.
public enum InterruptRoute: Equatable, Sendable {
    public enum Chip: UInt32, Sendable {
        case picMaster = 0, picSlave = 1, ioapic = 2
    }

    case irqchip(gsi: UInt32, chip: Chip, pin: UInt32)
    case msi(gsi: UInt32, address: UInt64, data: UInt32)

    public var gsi: UInt32 {
        switch self {
        case let .irqchip(gsi, _, _), let .msi(gsi, _, _): return gsi
        }
    }

    var flattened: ckvm_irq_route {
        switch self {
        case let .irqchip(gsi, chip, pin):
            return ckvm_irq_route(gsi: gsi, type: UInt32(KVM_IRQ_ROUTING_IRQCHIP), irqchip: chip.rawValue, pin: pin,
                                  address_lo: 0, address_hi: 0, data: 0)
        case let .msi(gsi, address, data):
            return ckvm_irq_route(gsi: gsi, type: UInt32(KVM_IRQ_ROUTING_MSI), irqchip: 0, pin: 0,
                                  address_lo: UInt32(truncatingIfNeeded: address),
                                  address_hi: UInt32(truncatingIfNeeded: address >> 32), data: data)
        }
    }

    /// The PC's ISA wiring: GSI 0-15 on the two 8259s, and on the IOAPIC with IRQ 0 (the PIT)
    /// on pin 2, the interrupt source override every PC firmware (and QEMU) declares.
    /// KVM's own default puts GSI 0 on IOAPIC pin 0, which a PC guest never looks at.
    public static let pcLegacy: [InterruptRoute] = {
        var routes: [InterruptRoute] = []
        for irq in UInt32(0)..<16 where irq != 2 {
            routes.append(.irqchip(gsi: irq, chip: irq < 8 ? .picMaster : .picSlave, pin: irq % 8))
        }
        for gsi in UInt32(0)..<24 where gsi != 2 {
            routes.append(.irqchip(gsi: gsi, chip: .ioapic, pin: gsi == 0 ? 2 : gsi))
        }
        return routes
    }()
}
