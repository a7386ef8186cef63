#include "malv/pci.h"

#include "malv/acpi.h"
#include "malv/bootinfo.h"
#include "malv/paging.h"
#include "malv/string.h"
#include "malv/x86.h"

struct pci_state pci;

#define CONF1_ADDR 0xcf8
#define CONF1_DATA 0xcfc
#define DEFAULT_WINDOW_BASE 0xc0000000ull
#define DEFAULT_WINDOW_END  0xe0000000ull

static volatile uint8_t *ecam_ptr(const struct pci_function *f, unsigned off)
{
    return pci.ecam_virt + ((uintptr_t)f->bus << 20) + ((uintptr_t)f->dev << 15) +
           ((uintptr_t)f->fn << 12) + off;
}

static uint32_t conf1_select(const struct pci_function *f, unsigned off)
{
    return 0x80000000u | (uint32_t)f->bus << 16 | (uint32_t)f->dev << 11 | (uint32_t)f->fn << 8 |
           (off & 0xfc);
}

/* Config space is 4 KiB with ECAM, 256 bytes with conf1; beyond it reads as all ones. */
static bool in_range(unsigned off, unsigned size)
{
    return off % size == 0 && off + size <= (pci.ecam ? 4096u : 256u);
}

uint8_t pci_read8(const struct pci_function *f, unsigned off)
{
    if (!in_range(off, 1))
        return 0xff;
    if (pci.ecam)
        return *ecam_ptr(f, off);
    outl(CONF1_ADDR, conf1_select(f, off));
    return inb(CONF1_DATA + (off & 3));
}

uint16_t pci_read16(const struct pci_function *f, unsigned off)
{
    if (!in_range(off, 2))
        return 0xffff;
    if (pci.ecam)
        return *(volatile uint16_t *)ecam_ptr(f, off);
    outl(CONF1_ADDR, conf1_select(f, off));
    return inw(CONF1_DATA + (off & 2));
}

uint32_t pci_read32(const struct pci_function *f, unsigned off)
{
    if (!in_range(off, 4))
        return 0xffffffff;
    if (pci.ecam)
        return *(volatile uint32_t *)ecam_ptr(f, off);
    outl(CONF1_ADDR, conf1_select(f, off));
    return inl(CONF1_DATA);
}

void pci_write16(const struct pci_function *f, unsigned off, uint16_t v)
{
    if (!in_range(off, 2))
        return;
    if (pci.ecam) {
        *(volatile uint16_t *)ecam_ptr(f, off) = v;
        return;
    }
    outl(CONF1_ADDR, conf1_select(f, off));
    outw(CONF1_DATA + (off & 2), v);
}

void pci_write32(const struct pci_function *f, unsigned off, uint32_t v)
{
    if (!in_range(off, 4))
        return;
    if (pci.ecam) {
        *(volatile uint32_t *)ecam_ptr(f, off) = v;
        return;
    }
    outl(CONF1_ADDR, conf1_select(f, off));
    outl(CONF1_DATA, v);
}

/* ---- BARs ---- */

static bool power_of_two(uint64_t v)
{
    return v && !(v & (v - 1));
}

/*
 * Sizes BARs the classic way: write all ones, read the mask back, restore.
 * Decoding is off meanwhile, so a BAR briefly at 0xfffff000 claims nothing.
 */
static void size_bars(struct pci_function *f)
{
    uint16_t cmd = pci_read16(f, PCI_COMMAND);
    pci_write16(f, PCI_COMMAND, cmd & ~(PCI_CMD_IO | PCI_CMD_MEMORY));
    for (unsigned i = 0; i < f->bar_count; i++) {
        struct pci_bar *b = &f->bars[i];
        unsigned off = PCI_BAR0 + 4 * i;
        uint32_t orig = pci_read32(f, off);
        pci_write32(f, off, 0xffffffff);
        uint32_t mask = pci_read32(f, off);
        pci_write32(f, off, orig);
        if (mask == 0 || mask == 0xffffffff)
            continue;   /* not implemented (or the function vanished) */
        if (mask & 1) {
            b->kind = PCI_BAR_IO;
            b->addr = orig & ~3u;
            b->size = (uint16_t)(~(mask & ~3u) + 1);
        } else if (((orig >> 1) & 3) == 2 && i + 1 < f->bar_count) {
            uint32_t orig_hi = pci_read32(f, off + 4);
            pci_write32(f, off + 4, 0xffffffff);
            uint32_t mask_hi = pci_read32(f, off + 4);
            pci_write32(f, off + 4, orig_hi);
            b->kind = PCI_BAR_MEM64;
            b->prefetchable = orig & 8;
            b->addr = (uint64_t)orig_hi << 32 | (orig & ~0xfu);
            b->size = ~((uint64_t)mask_hi << 32 | (mask & ~0xfu)) + 1;
            f->bars[++i].kind = PCI_BAR_UPPER;
        } else {
            /* Type 1 (below 1 MiB) and reserved types are treated as 32-bit. */
            b->kind = PCI_BAR_MEM32;
            b->prefetchable = orig & 8;
            b->addr = orig & ~0xfu;
            b->size = (uint32_t)(~(mask & ~0xfu) + 1);
        }
        b->bad = !power_of_two(b->size);
    }
    pci_write16(f, PCI_COMMAND, cmd);
}

static bool overlaps(uint64_t a, uint64_t a_size, uint64_t b, uint64_t b_size)
{
    return a < b + b_size && b < a + a_size;
}

/*
 * The first naturally aligned gap of `size` in window `w`, or 0. Other
 * functions' BARs and bridges' open memory windows are obstacles, except the
 * window of `inside` (the bridge whose window `w` is).
 */
static uint64_t window_alloc_in(struct pci_window *w, uint64_t size, const struct pci_function *inside)
{
    uint64_t addr = (w->next + size - 1) & ~(size - 1);
    while (addr >= w->next && addr + size > addr && addr + size <= w->end) {
        uint64_t bump = 0;
        if (pci.ecam && overlaps(addr, size, pci.ecam_base, (uint64_t)(pci.bus_end + 1) << 20))
            bump = pci.ecam_base + ((uint64_t)(pci.bus_end + 1) << 20);
        for (unsigned i = 0; i < pci.count && !bump; i++)
            for (unsigned j = 0; j < pci.fns[i].bar_count; j++) {
                const struct pci_bar *b = &pci.fns[i].bars[j];
                if ((b->kind == PCI_BAR_MEM32 || b->kind == PCI_BAR_MEM64) && b->addr &&
                    overlaps(addr, size, b->addr, b->size))
                    bump = b->addr + b->size;
            }
        for (unsigned i = 0; i < pci.count && !bump; i++) {
            const struct pci_function *br = &pci.fns[i];
            if (br != inside && br->mem_window_end > br->mem_window_base &&
                overlaps(addr, size, br->mem_window_base, br->mem_window_end - br->mem_window_base))
                bump = br->mem_window_end;
        }
        if (!bump) {
            w->next = addr + size;
            return addr;
        }
        addr = (bump + size - 1) & ~(size - 1);
    }
    return 0;
}

static uint64_t window_alloc(struct pci_window *w, uint64_t size)
{
    return window_alloc_in(w, size, NULL);
}

uint64_t pci_window_alloc(struct pci_window *w, uint64_t size)
{
    return power_of_two(size) ? window_alloc(w, size) : 0;
}

/* Writes a memory BAR and reads back where it landed. */
static uint64_t place_bar(struct pci_function *f, unsigned i, uint64_t addr)
{
    struct pci_bar *b = &f->bars[i];
    unsigned off = PCI_BAR0 + 4 * i;
    pci_write32(f, off, (uint32_t)addr | (pci_read32(f, off) & 0xf));
    if (b->kind == PCI_BAR_MEM64)
        pci_write32(f, off + 4, (uint32_t)(addr >> 32));
    uint64_t back = pci_read32(f, off) & ~0xfu;
    if (b->kind == PCI_BAR_MEM64)
        back |= (uint64_t)pci_read32(f, off + 4) << 32;
    return back;
}

/*
 * Memory BARs the platform left at 0 get an address from a fallback window:
 * 64-bit BARs from pci_window64 when given, everything else from pci_window
 * (whose addresses above 4 GiB a 32-bit BAR cannot take).
 */
static void assign_bars(struct pci_function *f)
{
    for (unsigned i = 0; i < f->bar_count; i++) {
        struct pci_bar *b = &f->bars[i];
        if ((b->kind != PCI_BAR_MEM32 && b->kind != PCI_BAR_MEM64) || b->addr != 0 || b->bad)
            continue;
        /* At least a page, so no two BARs share one. */
        uint64_t size = b->size < 4096 ? 4096 : b->size;
        uint64_t addr = 0;
        if (b->kind == PCI_BAR_MEM64 && pci.window64.end)
            addr = window_alloc(&pci.window64, size);
        if (!addr)
            addr = window_alloc(&pci.window, size);
        if (!addr || (b->kind == PCI_BAR_MEM32 && addr + size > IDENTITY_MAP_LIMIT)) {
            b->bad = true;
            continue;
        }
        uint64_t back = place_bar(f, i, addr);
        b->addr = back;
        b->assigned_by_guest = true;
        b->bad = back != addr;
    }
}

/* ---- capabilities ---- */

static void walk_caps(struct pci_function *f)
{
    if (!(pci_read16(f, PCI_STATUS) & PCI_STATUS_CAPS))
        return;
    /* One bit per dword of the 256-byte space, to catch a list that loops. */
    uint64_t seen = 0;
    unsigned ptr = pci_read8(f, PCI_CAP_PTR) & 0xfc;
    while (ptr) {
        if (ptr < 0x40) {
            f->cap_error = "capability pointer into the header";
            return;
        }
        if (seen & (1ull << (ptr >> 2))) {
            f->cap_error = "capability list loops";
            return;
        }
        seen |= 1ull << (ptr >> 2);
        if (f->cap_count == PCI_MAX_CAPS) {
            f->cap_error = "too many capabilities";
            return;
        }
        uint16_t head = pci_read16(f, ptr);     /* id and next in one access */
        f->caps[f->cap_count++] = (struct pci_cap){ .offset = (uint16_t)ptr, .id = head & 0xff };
        ptr = (head >> 8) & 0xfc;
    }

    /* Extended capabilities exist only for PCIe functions and only through ECAM. */
    if (!pci.ecam || !pci_find_cap(f, PCI_CAP_PCIE))
        return;
    uint64_t ext_seen[16] = { 0 };
    unsigned off = 0x100;
    while (off) {
        if (off < 0x100 || off > 0xffc) {
            f->cap_error = "extended capability pointer out of range";
            return;
        }
        unsigned bit = (off - 0x100) >> 2;
        if (ext_seen[bit / 64] & (1ull << (bit % 64))) {
            f->cap_error = "extended capability list loops";
            return;
        }
        ext_seen[bit / 64] |= 1ull << (bit % 64);
        uint32_t h = pci_read32(f, off);
        if (h == 0 || h == 0xffffffff)
            return;     /* no extended capabilities */
        if (f->ext_cap_count == PCI_MAX_EXT_CAPS) {
            f->cap_error = "too many extended capabilities";
            return;
        }
        f->ext_caps[f->ext_cap_count++] =
            (struct pci_cap){ .offset = (uint16_t)off, .id = h & 0xffff, .version = (h >> 16) & 0xf };
        off = (h >> 20) & 0xffc;
    }
}

const struct pci_cap *pci_find_cap(const struct pci_function *f, uint8_t id)
{
    for (unsigned i = 0; i < f->cap_count; i++)
        if (f->caps[i].id == id)
            return &f->caps[i];
    return NULL;
}

/* ---- enumeration ---- */

static bool add_function(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t *buses, unsigned *bus_count)
{
    if (pci.count == PCI_MAX_FUNCTIONS) {
        pci.truncated = true;
        return false;
    }
    struct pci_function *f = &pci.fns[pci.count];
    memset(f, 0, sizeof *f);
    f->bus = bus, f->dev = dev, f->fn = fn;
    uint32_t id = pci_read32(f, PCI_VENDOR_ID);
    if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
        return false;
    f->vendor = id & 0xffff;
    f->device = id >> 16;
    uint32_t class_rev = pci_read32(f, PCI_REVISION);
    f->revision = class_rev & 0xff;
    f->prog_if = (class_rev >> 8) & 0xff;
    f->subclass = (class_rev >> 16) & 0xff;
    f->class_code = class_rev >> 24;
    f->header_type = pci_read8(f, PCI_HEADER_TYPE) & 0x7f;
    pci.count++;

    if (f->header_type == 0) {
        f->bar_count = 6;
        uint32_t ss = pci_read32(f, PCI_SUBSYS_VENDOR);
        f->subsys_vendor = ss & 0xffff;
        f->subsys_id = ss >> 16;
    } else if (f->header_type == 1) {
        f->bar_count = 2;
        f->secondary_bus = pci_read8(f, PCI_SECONDARY_BUS);
        f->subordinate_bus = pci_read8(f, PCI_SUBORDINATE_BUS);
        pci_bridge_read_window(f);
        /* Only forward: a secondary bus at or below ours would be a loop. */
        uint8_t sec = f->secondary_bus;
        bool known = false;
        for (unsigned i = 0; i < *bus_count; i++)
            known |= buses[i] == sec;
        if (sec > bus && sec >= pci.bus_start && sec <= pci.bus_end && !known) {
            if (*bus_count < PCI_MAX_BUSES)
                buses[(*bus_count)++] = sec;
            else
                pci.truncated = true;
        }
    }
    size_bars(f);
    walk_caps(f);
    return true;
}

/* `KEY=BASE-LAST` (inclusive) into w; false if absent or malformed. */
static bool parse_window(const char *key, struct pci_window *w)
{
    char arg[48];
    uint64_t base, last;
    const char *p;
    if (!cmdline_get(key, arg, sizeof arg) || !parse_u64(arg, &base, &p) || *p != '-' ||
        !parse_u64(p + 1, &last, &p) || *p != '\0' || last <= base || last == UINT64_MAX)
        return false;
    *w = (struct pci_window){ base, last + 1, base };
    return true;
}

/*
 * Command-line overrides: `pci=conf1` ignores any MCFG; `pci_ecam=BASE[:LASTBUS]`
 * supplies one where the platform has ECAM but no MCFG (QEMU's microvm with
 * pcie=on describes its ECAM at 0xe0000000 only in the DSDT's AML).
 */
static void ecam_override(struct acpi_info *acpi)
{
    char arg[48];
    if (cmdline_get("pci", arg, sizeof arg) && strcmp(arg, "conf1") == 0) {
        acpi->has_mcfg = false;
        pci.mcfg_why = "pci=conf1 on the command line";
        return;
    }
    if (!cmdline_get("pci_ecam", arg, sizeof arg))
        return;
    uint64_t base, last = 255;
    const char *p;
    if (!parse_u64(arg, &base, &p) || (*p == ':' && !parse_u64(p + 1, &last, &p)) || *p != '\0' ||
        last > 255 || base == 0 || (base & 0xfffff)) {
        acpi->has_mcfg = false;
        pci.mcfg_why = "bad pci_ecam= on the command line";
        return;
    }
    acpi->has_mcfg = true;
    acpi->mcfg = (struct acpi_mcfg_info){ base, 0, (uint8_t)last };
    pci.ecam_from_cmdline = true;
}

const char *pci_init(void)
{
    if (pci.ready)
        return NULL;

    struct acpi_info acpi;
    pci.mcfg_why = acpi_find_mcfg(&acpi);
    ecam_override(&acpi);
    if (acpi.has_mcfg) {
        uint64_t first = acpi.mcfg.base + ((uint64_t)acpi.mcfg.start_bus << 20);
        uint64_t size = (uint64_t)(acpi.mcfg.end_bus - acpi.mcfg.start_bus + 1) << 20;
        volatile uint8_t *mapped = phys_map(first, size);
        if (mapped) {
            pci.ecam = true;
            pci.ecam_virt = mapped - ((uintptr_t)acpi.mcfg.start_bus << 20);
            pci.ecam_base = acpi.mcfg.base;
            pci.bus_start = acpi.mcfg.start_bus;
            pci.bus_end = acpi.mcfg.end_bus;
        } else {
            pci.mcfg_why = "ECAM range cannot be mapped";
        }
    }
    if (!pci.ecam) {
        pci.bus_start = 0;
        pci.bus_end = 255;
    }
    if (!parse_window("pci_window", &pci.window))
        pci.window = (struct pci_window){ DEFAULT_WINDOW_BASE, DEFAULT_WINDOW_END, DEFAULT_WINDOW_BASE };
    parse_window("pci_window64", &pci.window64);

    /* Breadth-first over bus 0 (or the first ECAM bus) and what bridges lead to. */
    uint8_t buses[PCI_MAX_BUSES] = { pci.bus_start };
    unsigned bus_count = 1;
    for (unsigned b = 0; b < bus_count; b++) {
        for (uint8_t dev = 0; dev < 32; dev++) {
            struct pci_function probe = { .bus = buses[b], .dev = dev };
            uint16_t vendor = pci_read16(&probe, PCI_VENDOR_ID);
            if (vendor == 0xffff || vendor == 0)
                continue;
            uint8_t fns = pci_read8(&probe, PCI_HEADER_TYPE) & 0x80 ? 8 : 1;
            for (uint8_t fn = 0; fn < fns; fn++)
                add_function(buses[b], dev, fn, buses, &bus_count);
        }
    }
    for (unsigned i = 0; i < pci.count; i++)
        assign_bars(&pci.fns[i]);
    pci.ready = true;
    return NULL;
}

void pci_enable(const struct pci_function *f)
{
    uint16_t cmd = pci_read16(f, PCI_COMMAND);
    pci_write16(f, PCI_COMMAND, cmd | PCI_CMD_MEMORY | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
}

void *pci_bar_map(const struct pci_function *f, unsigned bar, uint64_t offset, uint64_t len)
{
    if (bar >= f->bar_count)
        return NULL;
    const struct pci_bar *b = &f->bars[bar];
    if ((b->kind != PCI_BAR_MEM32 && b->kind != PCI_BAR_MEM64) || b->bad || b->addr == 0)
        return NULL;
    if (len == 0 || offset >= b->size || len > b->size - offset)
        return NULL;
    uint8_t *base = phys_map(b->addr, b->size);
    return base ? base + offset : NULL;
}

/* ---- MSI-X ---- */

#define MSIX_CTRL 2
#define MSIX_TABLE 4
#define MSIX_PBA 8
#define MSIX_ENABLE (1u << 15)
#define MSIX_FUNCTION_MASK (1u << 14)
#define MSIX_ENTRY_MASKED 1u

const char *pci_msix_init(const struct pci_function *f, struct pci_msix *m)
{
    memset(m, 0, sizeof *m);
    const struct pci_cap *cap = pci_find_cap(f, PCI_CAP_MSIX);
    if (!cap)
        return "no MSI-X capability";
    m->fn = f;
    m->cap = cap->offset;
    uint16_t ctrl = pci_read16(f, m->cap + MSIX_CTRL);
    uint32_t table = pci_read32(f, m->cap + MSIX_TABLE);
    uint32_t pba = pci_read32(f, m->cap + MSIX_PBA);
    m->entries = (ctrl & 0x7ff) + 1;
    m->table_bar = table & 7;
    m->table_offset = table & ~7u;
    m->pba_bar = pba & 7;
    m->pba_offset = pba & ~7u;
    m->table = pci_bar_map(f, m->table_bar, m->table_offset, (uint64_t)m->entries * 16);
    if (!m->table)
        return "MSI-X table outside its BAR (or the BAR is not memory)";
    if (!pci_bar_map(f, m->pba_bar, m->pba_offset, ((m->entries + 63) / 64) * 8ull))
        return "MSI-X PBA outside its BAR";
    return NULL;
}

bool pci_msix_set(struct pci_msix *m, unsigned entry, uint8_t vector, uint8_t apic_id)
{
    if (!m->table || entry >= m->entries)
        return false;
    volatile uint32_t *e = m->table + entry * 4;
    e[3] = MSIX_ENTRY_MASKED;                   /* complete the entry before it can fire */
    e[0] = 0xfee00000u | (uint32_t)apic_id << 12;
    e[1] = 0;
    e[2] = vector;                              /* fixed delivery, edge */
    e[3] = 0;
    return true;
}

void pci_msix_mask(struct pci_msix *m, unsigned entry)
{
    if (m->table && entry < m->entries)
        m->table[entry * 4 + 3] = MSIX_ENTRY_MASKED;
}

void pci_msix_enable(struct pci_msix *m, bool on)
{
    if (!m->fn)
        return;
    uint16_t ctrl = pci_read16(m->fn, m->cap + MSIX_CTRL);
    ctrl = on ? (uint16_t)((ctrl | MSIX_ENABLE) & ~MSIX_FUNCTION_MASK) : (uint16_t)(ctrl & ~MSIX_ENABLE);
    pci_write16(m->fn, m->cap + MSIX_CTRL, ctrl);
}

/* ---- bridges and hot-plug ---- */

void pci_bridge_read_window(struct pci_function *f)
{
    uint16_t base = pci_read16(f, PCI_MEMORY_BASE), limit = pci_read16(f, PCI_MEMORY_LIMIT);
    uint64_t b = (uint64_t)(base & 0xfff0) << 16, l = (uint64_t)(limit & 0xfff0) << 16 | 0xfffff;
    f->mem_window_base = b <= l ? b : 0;
    f->mem_window_end = b <= l ? l + 1 : 0;
}

bool pci_bridge_set_buses(struct pci_function *f, uint8_t primary, uint8_t secondary, uint8_t subordinate)
{
    uint32_t v = pci_read32(f, PCI_PRIMARY_BUS);
    v = (v & 0xff000000u) | (uint32_t)subordinate << 16 | (uint32_t)secondary << 8 | primary;
    pci_write32(f, PCI_PRIMARY_BUS, v);
    f->secondary_bus = pci_read8(f, PCI_SECONDARY_BUS);
    f->subordinate_bus = pci_read8(f, PCI_SUBORDINATE_BUS);
    return f->secondary_bus == secondary && f->subordinate_bus == subordinate;
}

bool pci_bridge_set_window(struct pci_function *f, uint64_t base, uint64_t size)
{
    if (size < (1u << 20) || (base & 0xfffff) || (size & 0xfffff) || base + size > IDENTITY_MAP_LIMIT)
        return false;
    uint64_t last = base + size - 1;
    pci_write32(f, PCI_MEMORY_BASE, (uint32_t)(base >> 16 & 0xfff0) | (uint32_t)(last >> 16 & 0xfff0) << 16);
    /* Close the prefetchable window (base above limit): nothing we place needs it. */
    pci_write32(f, PCI_PREF_BASE, 0x0000fff0u);
    pci_write32(f, PCI_PREF_BASE_UPPER, 0);
    pci_write32(f, PCI_PREF_LIMIT_UPPER, 0);
    pci_bridge_read_window(f);
    return f->mem_window_base == base && f->mem_window_end == base + size;
}

struct pci_function *pci_probe(uint8_t bus, uint8_t dev)
{
    uint8_t buses[PCI_MAX_BUSES];
    unsigned bus_count = 0;
    unsigned before = pci.count;
    if (!add_function(bus, dev, 0, buses, &bus_count) || pci.count == before)
        return NULL;
    return &pci.fns[pci.count - 1];
}

bool pci_assign_bars_in(struct pci_function *f, const struct pci_function *bridge)
{
    struct pci_window w = { bridge->mem_window_base, bridge->mem_window_end, bridge->mem_window_base };
    if (w.end <= w.base)
        return false;
    uint16_t cmd = pci_read16(f, PCI_COMMAND);
    pci_write16(f, PCI_COMMAND, cmd & ~(PCI_CMD_IO | PCI_CMD_MEMORY));
    bool ok = true;
    for (unsigned i = 0; i < f->bar_count; i++) {
        struct pci_bar *b = &f->bars[i];
        if (b->kind != PCI_BAR_MEM32 && b->kind != PCI_BAR_MEM64)
            continue;
        if (b->bad) {
            ok = false;
            continue;
        }
        /* A BAR already inside the window (the platform placed it) stays. */
        if (b->addr && b->addr >= w.base && b->addr + b->size <= w.end && b->addr + b->size > b->addr)
            continue;
        uint64_t size = b->size < 4096 ? 4096 : b->size;
        uint64_t saved = b->addr;
        b->addr = 0;    /* not an obstacle to itself */
        uint64_t addr = window_alloc_in(&w, size, bridge);
        if (!addr) {
            b->addr = saved;
            b->bad = true;
            ok = false;
            continue;
        }
        b->addr = place_bar(f, i, addr);
        b->assigned_by_guest = true;
        b->bad = b->addr != addr;
        ok &= !b->bad;
    }
    pci_write16(f, PCI_COMMAND, cmd);
    return ok;
}

void pci_forget(const struct pci_function *f)
{
    unsigned i = (unsigned)(f - pci.fns);
    if (i >= pci.count)
        return;
    for (; i + 1 < pci.count; i++)
        pci.fns[i] = pci.fns[i + 1];
    pci.count--;
}

/* ---- MSI ---- */

#define MSI_CTRL 2
#define MSI_ENABLE 1u
#define MSI_64BIT (1u << 7)
#define MSI_MASKABLE (1u << 8)

const char *pci_msi_enable(const struct pci_function *f, uint8_t vector, uint8_t apic_id)
{
    const struct pci_cap *cap = pci_find_cap(f, PCI_CAP_MSI);
    if (!cap)
        return "no MSI capability";
    unsigned c = cap->offset;
    uint16_t ctrl = pci_read16(f, c + MSI_CTRL);
    pci_write16(f, c + MSI_CTRL, ctrl & ~(MSI_ENABLE | 0x70));  /* off, one message */
    pci_write32(f, c + 4, 0xfee00000u | (uint32_t)apic_id << 12);
    unsigned data = c + 8;
    if (ctrl & MSI_64BIT) {
        pci_write32(f, c + 8, 0);
        data = c + 12;
    }
    pci_write16(f, data, vector);   /* fixed delivery, edge */
    if (ctrl & MSI_MASKABLE)
        pci_write32(f, data + 4, 0);
    pci_write16(f, c + MSI_CTRL, (ctrl & ~0x70) | MSI_ENABLE);
    if (!(pci_read16(f, c + MSI_CTRL) & MSI_ENABLE))
        return "MSI enable did not stick";
    return NULL;
}

/* ---- names ---- */

const char *pci_class_name(uint8_t c, uint8_t s)
{
    switch (c << 8 | s) {
    case 0x0100: return "SCSI controller";
    case 0x0101: return "IDE controller";
    case 0x0106: return "SATA controller";
    case 0x0108: return "NVMe controller";
    case 0x0200: return "Ethernet controller";
    case 0x0300: return "VGA controller";
    case 0x0380: return "display controller";
    case 0x0403: return "audio device";
    case 0x0600: return "host bridge";
    case 0x0601: return "ISA bridge";
    case 0x0604: return "PCI bridge";
    case 0x0680: return "bridge";
    case 0x0780: return "communication controller";
    case 0x0880: return "system peripheral";
    case 0x0c03: return "USB controller";
    case 0x0c05: return "SMBus controller";
    case 0x0ff0: return "unclassified";
    }
    switch (c) {
    case 0x00: return "unclassified";
    case 0x01: return "storage controller";
    case 0x02: return "network controller";
    case 0x03: return "display controller";
    case 0x06: return "bridge";
    case 0xff: return "vendor-specific";
    default: return "other";
    }
}

const char *pci_cap_name(uint16_t id)
{
    switch (id) {
    case 0x01: return "power-management";
    case 0x05: return "msi";
    case 0x09: return "vendor";
    case 0x0d: return "bridge-subsystem-id";
    case 0x10: return "pcie";
    case 0x11: return "msix";
    case 0x12: return "sata";
    case 0x13: return "advanced-features";
    default: return "unknown";
    }
}

const char *pci_ext_cap_name(uint16_t id)
{
    switch (id) {
    case 0x0001: return "aer";
    case 0x0002: return "virtual-channel";
    case 0x0003: return "serial-number";
    case 0x000b: return "vendor";
    case 0x000d: return "acs";
    case 0x000e: return "ari";
    case 0x0010: return "sr-iov";
    case 0x0018: return "ltr";
    case 0x001e: return "l1-pm-substates";
    default: return "unknown";
    }
}
