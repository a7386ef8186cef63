/*
 * test=pci: every PCI function with its BARs and capabilities, as the guest
 * finds them (ECAM through ACPI's MCFG, else conf1). Deterministic for a
 * given VMM configuration: no timings.
 */
#include "malv/console.h"
#include "malv/pci.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/virtio.h"

static const char *bar_kind(const struct pci_bar *b)
{
    switch (b->kind) {
    case PCI_BAR_IO: return "io";
    case PCI_BAR_MEM32: return "mem32";
    case PCI_BAR_MEM64: return "mem64";
    default: return "?";
    }
}

static const char *virtio_cfg_name(uint8_t type)
{
    switch (type) {
    case 1: return "common";
    case 2: return "notify";
    case 3: return "isr";
    case 4: return "device";
    case 5: return "pci-cfg";
    case 8: return "shared-memory";
    case 9: return "vendor";
    default: return "unknown";
    }
}

static void print_cap(const struct pci_function *f, const struct pci_cap *c)
{
    printf("  cap 0x%02x %s", c->offset, pci_cap_name(c->id));
    if (c->id == PCI_CAP_MSIX) {
        uint16_t ctrl = pci_read16(f, c->offset + 2);
        uint32_t table = pci_read32(f, c->offset + 4), pba = pci_read32(f, c->offset + 8);
        printf(" entries %u table bar%u+0x%x pba bar%u+0x%x%s", (ctrl & 0x7ff) + 1, table & 7,
               table & ~7u, pba & 7, pba & ~7u, ctrl & 0x8000 ? " enabled" : "");
    } else if (c->id == PCI_CAP_VENDOR && f->vendor == VIRTIO_PCI_VENDOR) {
        uint8_t len = pci_read8(f, c->offset + 2);
        uint8_t type = pci_read8(f, c->offset + 3);
        printf(" virtio %s bar%u+0x%x len 0x%x", virtio_cfg_name(type), pci_read8(f, c->offset + 4),
               pci_read32(f, c->offset + 8), pci_read32(f, c->offset + 12));
        if (type == 2 && len >= 20)
            printf(" multiplier %u", pci_read32(f, c->offset + 16));
    } else if (c->id == PCI_CAP_PCIE) {
        static const char *const types[16] = {
            "endpoint", "legacy-endpoint", "?", "?", "root-port", "upstream-port",
            "downstream-port", "pcie-to-pci-bridge", "pci-to-pcie-bridge", "integrated-endpoint",
            "event-collector",
        };
        uint16_t flags = pci_read16(f, c->offset + 2);
        const char *t = types[(flags >> 4) & 0xf];
        printf(" %s", t ? t : "?");
    } else if (c->id != PCI_CAP_VENDOR && strcmp(pci_cap_name(c->id), "unknown") == 0) {
        printf("(0x%02x)", c->id);
    }
    printf("\n");
}

int test_pci(void)
{
    const char *why = pci_init();
    if (why) {
        printf("pci: FAIL %s\n", why);
        return 1;
    }
    if (pci.ecam)
        printf("pci: ECAM at 0x%llx, buses %u-%u (from %s)\n", (unsigned long long)pci.ecam_base,
               pci.bus_start, pci.bus_end, pci.ecam_from_cmdline ? "pci_ecam=" : "ACPI MCFG");
    else
        printf("pci: conf1 ports 0xcf8/0xcfc (%s)\n", pci.mcfg_why);

    for (unsigned i = 0; i < pci.count; i++) {
        const struct pci_function *f = &pci.fns[i];
        const char *name = pci_class_name(f->class_code, f->subclass);
        if (f->vendor == VIRTIO_PCI_VENDOR && f->device >= VIRTIO_PCI_MODERN_DEVICE_BASE)
            name = virtio_type_name(f->device - VIRTIO_PCI_MODERN_DEVICE_BASE);
        else if (f->vendor == VIRTIO_PCI_VENDOR && f->device >= 0x1000 && f->device < 0x1040)
            name = "virtio (transitional)";
        printf("pci %02x:%02x.%u %04x:%04x class %02x:%02x:%02x %s\n", f->bus, f->dev, f->fn,
               f->vendor, f->device, f->class_code, f->subclass, f->prog_if, name);
        if (f->header_type == 1)
            printf("  bridge to bus %02x\n", f->secondary_bus);
        else if (f->header_type > 1)
            printf("  header type %u\n", f->header_type);
        for (unsigned j = 0; j < f->bar_count; j++) {
            const struct pci_bar *b = &f->bars[j];
            if (b->kind == PCI_BAR_NONE || b->kind == PCI_BAR_UPPER)
                continue;
            printf("  bar%u %s%s 0x%llx size 0x%llx%s%s\n", j, bar_kind(b),
                   b->prefetchable ? " pref" : "", (unsigned long long)b->addr,
                   (unsigned long long)b->size, b->assigned_by_guest ? " (assigned by guest)" : "",
                   b->bad ? " (unusable)" : b->addr == 0 ? " (unassigned)" : "");
        }
        for (unsigned j = 0; j < f->cap_count; j++)
            print_cap(f, &f->caps[j]);
        for (unsigned j = 0; j < f->ext_cap_count; j++)
            printf("  ext-cap 0x%03x %s(0x%04x) v%u\n", f->ext_caps[j].offset,
                   pci_ext_cap_name(f->ext_caps[j].id), f->ext_caps[j].id, f->ext_caps[j].version);
        if (f->cap_error)
            printf("  capability list: %s\n", f->cap_error);
    }
    printf("pci: %u functions%s\n", pci.count, pci.truncated ? " (truncated)" : "");
    return 0;
}
