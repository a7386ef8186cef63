/*
 * PCI: config space through ECAM (from ACPI's MCFG) or, without an MCFG, the
 * conf1 ports 0xcf8/0xcfc. Each ECAM access is one MMIO exit (~27 us here),
 * each conf1 access two port exits, so config space is for setup only.
 *
 * pci_init() enumerates bus 0 and the buses behind bridges the firmware has
 * numbered (bounded), sizes every BAR and walks every capability list.
 * BARs are used where the platform put them; a memory BAR that reads 0 is
 * given an address from a fallback window (cmdline `pci_window=BASE-LAST`,
 * default 0xc0000000-0xdfffffff minus the ECAM range, which is QEMU
 * microvm's 32-bit PCIe window); 64-bit BARs come from `pci_window64=BASE-LAST`
 * first if that is given.
 *
 * Command line: `pci=conf1` forces conf1; `pci_ecam=BASE[:LASTBUS]` gives an
 * ECAM base where there is no MCFG (microvm: pci_ecam=0xe0000000).
 */
#ifndef MALV_PCI_H
#define MALV_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_MAX_FUNCTIONS 64
#define PCI_MAX_BUSES 16
#define PCI_MAX_CAPS 24
#define PCI_MAX_EXT_CAPS 16

/* Config registers */
#define PCI_VENDOR_ID       0x00
#define PCI_DEVICE_ID       0x02
#define PCI_COMMAND         0x04
#define PCI_STATUS          0x06
#define PCI_REVISION        0x08
#define PCI_HEADER_TYPE     0x0e
#define PCI_BAR0            0x10
#define PCI_PRIMARY_BUS     0x18
#define PCI_SECONDARY_BUS   0x19
#define PCI_SUBORDINATE_BUS 0x1a
#define PCI_MEMORY_BASE     0x20
#define PCI_MEMORY_LIMIT    0x22
#define PCI_PREF_BASE       0x24
#define PCI_PREF_BASE_UPPER 0x28
#define PCI_PREF_LIMIT_UPPER 0x2c
#define PCI_SUBSYS_VENDOR   0x2c
#define PCI_SUBSYS_ID       0x2e
#define PCI_CAP_PTR         0x34

#define PCI_CMD_IO          (1u << 0)
#define PCI_CMD_MEMORY      (1u << 1)
#define PCI_CMD_MASTER      (1u << 2)
#define PCI_CMD_INTX_OFF    (1u << 10)
#define PCI_STATUS_CAPS     (1u << 4)

#define PCI_CAP_MSI         0x05
#define PCI_CAP_VENDOR      0x09
#define PCI_CAP_PCIE        0x10
#define PCI_CAP_MSIX        0x11

enum pci_bar_kind { PCI_BAR_NONE, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64, PCI_BAR_UPPER };

struct pci_bar {
    enum pci_bar_kind kind;  /* PCI_BAR_UPPER: the high half of the previous 64-bit BAR */
    bool prefetchable;
    bool assigned_by_guest;  /* read 0; we gave it an address from the fallback window */
    bool bad;                /* size not a power of two, or unassignable */
    uint64_t addr, size;
};

struct pci_cap {
    uint16_t offset;
    uint16_t id;
    uint8_t version;         /* extended capabilities only */
};

struct pci_function {
    uint8_t bus, dev, fn;
    uint16_t vendor, device;
    uint8_t class_code, subclass, prog_if, revision;
    uint8_t header_type;     /* without the multi-function bit */
    uint16_t subsys_vendor, subsys_id;
    uint8_t secondary_bus;   /* bridges (header type 1) */
    uint8_t subordinate_bus;
    uint64_t mem_window_base, mem_window_end;  /* bridges: open memory window [base, end), else 0 */
    unsigned bar_count;      /* 6 for endpoints, 2 for bridges, 0 otherwise */
    struct pci_bar bars[6];
    struct pci_cap caps[PCI_MAX_CAPS];
    unsigned cap_count;
    struct pci_cap ext_caps[PCI_MAX_EXT_CAPS];  /* ECAM only */
    unsigned ext_cap_count;
    const char *cap_error;   /* loop, bad pointer or too many, else NULL */
};

struct pci_window {
    uint64_t base, end, next;   /* [base, end); next: first unused address */
};

struct pci_state {
    bool ready;
    bool ecam;               /* else conf1 */
    uint64_t ecam_base;
    volatile uint8_t *ecam_virt;  /* where bus 0 would be mapped (see phys_map) */
    uint8_t bus_start, bus_end;
    const char *mcfg_why;    /* why not ECAM (no MCFG, ...), if ecam is false */
    bool ecam_from_cmdline;
    struct pci_window window, window64;  /* fallback BAR windows (window64 optional) */
    unsigned count;
    bool truncated;          /* more functions or buses than we keep */
    struct pci_function fns[PCI_MAX_FUNCTIONS];
};

extern struct pci_state pci;

/* Discovers config access and enumerates; safe to call again (no-op). NULL on success. */
const char *pci_init(void);

uint8_t pci_read8(const struct pci_function *f, unsigned off);
uint16_t pci_read16(const struct pci_function *f, unsigned off);
uint32_t pci_read32(const struct pci_function *f, unsigned off);
void pci_write16(const struct pci_function *f, unsigned off, uint16_t v);
void pci_write32(const struct pci_function *f, unsigned off, uint32_t v);

/* Memory space and bus mastering on; INTx off (we use MSI-X or polling). */
void pci_enable(const struct pci_function *f);

/* The first capability with `id` (standard list), or NULL. */
const struct pci_cap *pci_find_cap(const struct pci_function *f, uint8_t id);

/*
 * A pointer to [offset, offset + len) of memory BAR `bar`, mapping it first
 * if it lies above 4 GiB. NULL if the BAR is not memory, or the range does
 * not fit inside it.
 */
void *pci_bar_map(const struct pci_function *f, unsigned bar, uint64_t offset, uint64_t len);

const char *pci_class_name(uint8_t class_code, uint8_t subclass);
const char *pci_cap_name(uint16_t id);
const char *pci_ext_cap_name(uint16_t id);

/* ---- bridges and hot-plug (lib/pci.c; tests/hotplug.c drives them) ---- */

/* Re-reads a bridge's memory window into f. */
void pci_bridge_read_window(struct pci_function *f);
/* Programs bus numbers; true if they read back. */
bool pci_bridge_set_buses(struct pci_function *f, uint8_t primary, uint8_t secondary, uint8_t subordinate);
/* Opens the memory window [base, base + size) (1 MiB granularity, below 4 GiB) and closes the prefetchable one. */
bool pci_bridge_set_window(struct pci_function *f, uint64_t base, uint64_t size);
/* A naturally aligned range from a fallback window, clear of BARs and bridge windows; 0 if none. */
uint64_t pci_window_alloc(struct pci_window *w, uint64_t size);
/* Probes bus:dev.0 and appends it to pci.fns (BARs sized, capabilities walked). NULL if absent or full. */
struct pci_function *pci_probe(uint8_t bus, uint8_t dev);
/* Moves every memory BAR of f that is not inside `bridge`'s window into it; false if one did not fit. */
bool pci_assign_bars_in(struct pci_function *f, const struct pci_function *bridge);
/* Drops f from pci.fns (a removed device); later entries move down one. */
void pci_forget(const struct pci_function *f);

/* Single-message MSI to `vector` on LAPIC `apic_id` (fixed, edge), unmasked and enabled. NULL on success. */
const char *pci_msi_enable(const struct pci_function *f, uint8_t vector, uint8_t apic_id);

/* ---- MSI-X ---- */

struct pci_msix {
    const struct pci_function *fn;
    uint16_t cap;            /* config offset of the capability */
    uint16_t entries;        /* table size */
    volatile uint32_t *table;
    uint8_t table_bar, pba_bar;
    uint32_t table_offset, pba_offset;
};

/* Finds the capability and maps its table; NULL on success, else why not. */
const char *pci_msix_init(const struct pci_function *f, struct pci_msix *m);
/* Programs entry to deliver `vector` to LAPIC `apic_id` (fixed, edge) and unmasks it. */
bool pci_msix_set(struct pci_msix *m, unsigned entry, uint8_t vector, uint8_t apic_id);
void pci_msix_mask(struct pci_msix *m, unsigned entry);
/* Enable: function mask off, enable bit on. Disable: enable bit off. */
void pci_msix_enable(struct pci_msix *m, bool on);

#endif
