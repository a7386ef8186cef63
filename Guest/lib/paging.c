#include "malv/paging.h"

#include <stdbool.h>

#include "malv/x86.h"

#define PTE_P   0x001ull
#define PTE_W   0x002ull
#define PTE_U   0x004ull
#define PTE_PWT 0x008ull
#define PTE_PCD 0x010ull
#define PTE_A   0x020ull
#define PTE_D   0x040ull
#define PTE_PS  0x080ull
#define PTE_ADDR 0x000ffffffffff000ull
#define LARGE_PAGE (2ull << 20)

extern uint64_t pml4[512];  /* boot/tables.S */

/* Zeroed with the rest of .bss at startup, so a fresh page is all not-present. */
static uint64_t spare_tables[PAGING_SPARE_PAGES][512] __attribute__((aligned(4096)));
static unsigned spare_used;

unsigned paging_spare_left(void)
{
    return PAGING_SPARE_PAGES - spare_used;
}

/* The highest physical address + 1 we may map: MAXPHYADDR. cpuid reports the
 * host's width here, which is at least the guest's. */
static uint64_t phys_limit(void)
{
    unsigned bits = 36;
    if (cpuid(0x80000000, 0).eax >= 0x80000008)
        bits = cpuid(0x80000008, 0).eax & 0xff;
    if (bits < 32 || bits > 52)
        bits = 36;
    return 1ull << bits;
}

/* Returns the table an entry points to, filling a not-present one from the spares. */
static uint64_t *next_level(uint64_t *entry)
{
    if (!(*entry & PTE_P)) {
        if (spare_used == PAGING_SPARE_PAGES)
            return NULL;
        uint64_t *table = spare_tables[spare_used++];
        /* Table contents are zero; make sure they are visible before the link. */
        compiler_barrier();
        *entry = (uintptr_t)table | PTE_P | PTE_W | PTE_U;
        return table;
    }
    if (*entry & PTE_PS)
        return NULL;    /* a 1 GiB page: we never make those, so not ours to split */
    return (uint64_t *)(uintptr_t)(*entry & PTE_ADDR);
}

/* Maps [virt, virt + len) to [phys, ...), both 2 MiB aligned. */
static bool map_range(uint64_t virt, uint64_t phys, uint64_t len)
{
    for (uint64_t off = 0; off < len; off += LARGE_PAGE) {
        uint64_t v = virt + off, want = (phys + off) | PTE_P | PTE_W | PTE_U | PTE_PS | PTE_PWT | PTE_PCD;
        uint64_t *pdpt = next_level(&pml4[(v >> 39) & 511]);
        uint64_t *pd = pdpt ? next_level(&pdpt[(v >> 30) & 511]) : NULL;
        if (!pd)
            return false;
        uint64_t *pde = &pd[(v >> 21) & 511];
        if (*pde & PTE_P) {
            /* Mapped by an earlier call: fine if it is the same mapping. */
            if ((*pde & ~(PTE_A | PTE_D)) != want)
                return false;
            continue;
        }
        *pde = want;
    }
    return true;
}

/* Ranges placed in the alias window, so a second request finds the first. */
#define ALIAS_MAX 8
static struct { uint64_t phys, len, virt; } aliases[ALIAS_MAX];
static unsigned alias_count;
static uint64_t alias_next = HIGH_ALIAS_BASE;

void *phys_map(uint64_t paddr, uint64_t size)
{
    if (size == 0 || paddr + size < paddr)
        return NULL;
    uint64_t end = paddr + size;
    if (end <= IDENTITY_MAP_LIMIT)
        return (void *)(uintptr_t)paddr;
    if (end > phys_limit())
        return NULL;
    uint64_t first = paddr & ~(LARGE_PAGE - 1);
    uint64_t len = ((end + LARGE_PAGE - 1) & ~(LARGE_PAGE - 1)) - first;

    if (end <= HIGH_ALIAS_BASE) {
        /* Identity; below 4 GiB boot/tables.S has it already. */
        if (first < IDENTITY_MAP_LIMIT) {
            len -= IDENTITY_MAP_LIMIT - first;
            first = IDENTITY_MAP_LIMIT;
        }
        return map_range(first, first, len) ? (void *)(uintptr_t)paddr : NULL;
    }

    for (unsigned i = 0; i < alias_count; i++)
        if (first >= aliases[i].phys && first + len <= aliases[i].phys + aliases[i].len)
            return (void *)(uintptr_t)(aliases[i].virt + (paddr - aliases[i].phys));
    if (alias_count == ALIAS_MAX || len > HIGH_ALIAS_END - alias_next)
        return NULL;
    if (!map_range(alias_next, first, len))
        return NULL;
    aliases[alias_count++] = (typeof(aliases[0])){ first, len, alias_next };
    alias_next += len;
    return (void *)(uintptr_t)(aliases[alias_count - 1].virt + (paddr - first));
}
