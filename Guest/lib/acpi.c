#include "malv/acpi.h"

#include "malv/bootinfo.h"
#include "malv/paging.h"
#include "malv/string.h"

#define SDT_HEADER_LEN 36
/* Bounds on what we accept from the firmware, to stop a bad table early. */
#define SDT_MAX_LEN (1u << 20)
#define SDT_MAX_ENTRIES 256
#define MCFG_ENTRY_OFFSET 44    /* header + 8 reserved bytes */
#define MCFG_ENTRY_LEN 16

struct __attribute__((packed)) rsdp {
    char signature[8];          /* "RSD PTR " */
    uint8_t checksum;           /* over the first 20 bytes */
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt;
    /* revision >= 2 */
    uint32_t length;
    uint64_t xsdt;
    uint8_t ext_checksum;       /* over `length` bytes */
    uint8_t reserved[3];
};

static uint8_t sum_bytes(const void *p, uint32_t len)
{
    const uint8_t *b = p;
    uint8_t s = 0;
    while (len--)
        s = (uint8_t)(s + *b++);
    return s;
}

/* A pointer to `len` bytes at `paddr`, or NULL if they cannot be mapped. */
static const uint8_t *map(uint64_t paddr, uint64_t len)
{
    if (paddr == 0)
        return NULL;
    return phys_map(paddr, len);
}

static bool rsdp_valid(const struct rsdp *r)
{
    if (memcmp(r->signature, "RSD PTR ", 8) != 0 || sum_bytes(r, 20) != 0)
        return false;
    if (r->revision >= 2)
        return r->length >= sizeof *r && r->length <= 4096 && map((uintptr_t)r, r->length) &&
               sum_bytes(r, r->length) == 0;
    return true;
}

/* The legacy search: 16-byte boundaries of the BIOS area 0xe0000-0xfffff. */
static const struct rsdp *scan_bios_area(void)
{
    for (uint64_t a = 0xe0000; a + sizeof(struct rsdp) <= 0x100000; a += 16) {
        const struct rsdp *r = (const void *)(uintptr_t)a;
        if (rsdp_valid(r))
            return r;
    }
    return NULL;
}

/* Maps a whole system description table after checking its header and checksum. */
static const uint8_t *map_table(uint64_t paddr, const char *signature)
{
    const uint8_t *h = map(paddr, SDT_HEADER_LEN);
    if (!h)
        return NULL;
    uint32_t len;
    memcpy(&len, h + 4, 4);
    if (len < SDT_HEADER_LEN || len > SDT_MAX_LEN)
        return NULL;
    const uint8_t *t = map(paddr, len);
    if (!t || (signature && memcmp(t, signature, 4) != 0) || sum_bytes(t, len) != 0)
        return NULL;
    return t;
}

static uint32_t table_len(const uint8_t *t)
{
    uint32_t len;
    memcpy(&len, t + 4, 4);
    return len;
}

/*
 * Finds the root table (XSDT, else RSDT) and fills the RSDP fields of `out`.
 * Returns why not, or NULL.
 */
static const char *find_root(struct acpi_info *out, const uint8_t **root, unsigned *entry_size)
{
    memset(out, 0, sizeof *out);
    const struct rsdp *r = NULL;
    uint64_t given = boot_info.start_info.rsdp_paddr;
    if (given) {
        r = (const void *)map(given, sizeof *r);
        if (r && !rsdp_valid(r))
            return "start_info.rsdp_paddr points at no valid RSDP";
    } else {
        r = scan_bios_area();
        out->from_scan = r != NULL;
    }
    if (!r)
        return "no RSDP";
    out->rsdp = (uintptr_t)r;
    out->revision = r->revision;

    /* ACPI 2.0+ with a nonzero XSDT: 64-bit entries; otherwise the RSDT's 32-bit ones. */
    bool x = r->revision >= 2 && r->xsdt != 0;
    *root = map_table(x ? r->xsdt : r->rsdt, x ? "XSDT" : "RSDT");
    if (!*root)
        return x ? "XSDT missing or bad checksum" : "RSDT missing or bad checksum";
    *entry_size = x ? 8 : 4;
    return NULL;
}

/* The physical address of the first table with `signature` the root lists, or 0. */
static uint64_t find_table(const uint8_t *root, unsigned entry_size, const char *signature)
{
    uint32_t entries = (table_len(root) - SDT_HEADER_LEN) / entry_size;
    if (entries > SDT_MAX_ENTRIES)
        entries = SDT_MAX_ENTRIES;
    for (uint32_t i = 0; i < entries; i++) {
        uint64_t paddr = 0;
        memcpy(&paddr, root + SDT_HEADER_LEN + i * entry_size, entry_size);
        const uint8_t *sig = map(paddr, 4);
        if (sig && memcmp(sig, signature, 4) == 0)
            return paddr;
    }
    return 0;
}

const char *acpi_find_mcfg(struct acpi_info *out)
{
    const uint8_t *root;
    unsigned entry_size;
    const char *why = find_root(out, &root, &entry_size);
    if (why)
        return why;
    uint64_t paddr = find_table(root, entry_size, "MCFG");
    if (!paddr)
        return "no MCFG";
    const uint8_t *mcfg = map_table(paddr, "MCFG");
    if (!mcfg)
        return "MCFG with bad length or checksum";
    uint32_t len = table_len(mcfg);
    for (uint32_t off = MCFG_ENTRY_OFFSET; off + MCFG_ENTRY_LEN <= len; off += MCFG_ENTRY_LEN) {
        uint64_t base;
        uint16_t segment;
        memcpy(&base, mcfg + off, 8);
        memcpy(&segment, mcfg + off + 8, 2);
        uint8_t start = mcfg[off + 10], end = mcfg[off + 11];
        if (segment != 0 || start > end || base == 0 || (base & 0xfffff))
            continue;   /* other segments are unreachable without them; bad entries ignored */
        out->has_mcfg = true;
        out->mcfg = (struct acpi_mcfg_info){ base, start, end };
        return NULL;
    }
    return "MCFG has no usable entry for segment 0";
}

/* MADT: 36-byte header, local APIC address (4), flags (4), then type/length records. */
#define MADT_RECORDS_OFFSET 44
#define MADT_LOCAL_APIC 0
#define MADT_LOCAL_APIC_ENABLED 1u

const char *acpi_list_cpus(uint8_t *apic_ids, unsigned max, unsigned *count)
{
    *count = 0;
    struct acpi_info info;
    const uint8_t *root;
    unsigned entry_size;
    const char *why = find_root(&info, &root, &entry_size);
    if (why)
        return why;
    uint64_t paddr = find_table(root, entry_size, "APIC");
    if (!paddr)
        return "no MADT";
    const uint8_t *madt = map_table(paddr, "APIC");
    if (!madt)
        return "MADT with bad length or checksum";
    uint32_t len = table_len(madt);
    for (uint32_t off = MADT_RECORDS_OFFSET; off + 2 <= len;) {
        uint8_t type = madt[off], record_len = madt[off + 1];
        if (record_len < 2 || off + record_len > len)
            return "MADT record runs past the table";
        if (type == MADT_LOCAL_APIC && record_len >= 8) {
            uint32_t flags;
            memcpy(&flags, madt + off + 4, 4);
            if (flags & MADT_LOCAL_APIC_ENABLED) {
                if (*count >= max)
                    return "more CPUs in the MADT than the guest supports";
                apic_ids[(*count)++] = madt[off + 3];
            }
        }
        off += record_len;
    }
    return *count ? NULL : "MADT lists no enabled CPU";
}
